from __future__ import annotations

import json

from stabletrain.detectors.logging import DuplicateLoggingDetector
from stabletrain.detectors.registry import replay
from stabletrain.records import StepRecord


def test_seed004_each_epoch_printed_four_times(scenarios) -> None:
    clean, raw, facts = scenarios.seed004()
    [f] = replay(clean, facts, [DuplicateLoggingDetector()], raw=raw)
    assert f.id == "duplicate-logging" and f.evidence["typical_copies"] == 4
    assert f.evidence["duplicated_records"] == 6 and f.evidence["extra_lines"] == 18
    assert f.steps == [1000, 2000, 3000, 4000, 5000, 6000]
    assert "rank" in f.fixes[0].code


def test_cleaned_records_alone_show_nothing(scenarios) -> None:
    clean, _raw, facts = scenarios.seed004()
    assert replay(clean, facts, [DuplicateLoggingDetector()]) == []


def test_near_miss_resume_repeats_one_line_and_rewinds_with_new_values() -> None:
    recs = [StepRecord(step=i, loss=1.0 / (i + 1)) for i in range(50)]
    recs.append(StepRecord(step=49, loss=1.0 / 50))  # the last line re-printed once on resume
    recs += [StepRecord(step=i, loss=0.9 / (i + 1)) for i in range(40, 60)]  # rewound, other values
    assert replay(recs, None, [DuplicateLoggingDetector()]) == []


def test_state_dict_round_trip(scenarios) -> None:
    _clean, raw, facts = scenarios.seed004()
    a, b = DuplicateLoggingDetector(), DuplicateLoggingDetector()
    for r in raw[:10]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in raw[10:]:
        a.update(r)
        b.update(r)
    assert [f.to_json() for f in a.finish(facts)] == [f.to_json() for f in b.finish(facts)]


def test_torchtitan_excerpt_one_step_from_seven_ranks_with_their_own_throughput() -> None:
    # 7 ranks print step 4 with the same loss and grad norm but their own tps/tflops; the
    # excerpt ends with one line of step 5: one record 7 times is several processes logging
    tps = [10050, 10050, 10050, 10050, 10049, 10050, 10049]
    recs = [StepRecord(step=4, loss=7.62585, grad_norm=26.625, metrics={"tps": t, "tflops": 314.7 + i / 100})
            for i, t in enumerate(tps)]  # fmt: skip
    recs.append(StepRecord(step=5, loss=7.07623, grad_norm=46.5, metrics={"tps": 10007.0}))
    [f] = replay(recs, None, [DuplicateLoggingDetector()], raw=recs)
    assert f.evidence["typical_copies"] == 7


def test_near_miss_same_step_without_training_values_differs_by_its_metrics() -> None:
    # records that measured no loss/grad/LR are told apart by their metrics: a re-logged step
    # with new values is not a copy
    recs = [StepRecord(step=s, metrics={"objective": 1.0 / (s + 1)}) for s in range(30)]
    recs += [StepRecord(step=s, metrics={"objective": 0.9 / (s + 1)}) for s in range(20, 30)]
    assert replay(recs, None, [DuplicateLoggingDetector()], raw=recs) == []
