from __future__ import annotations

import json
from pathlib import Path

from stabletrain.detectors.evidence import TOO_FEW
from stabletrain.detectors.registry import replay
from stabletrain.detectors.restart import RunRestartDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

REPO = Path(__file__).parents[2]


def _run(first: int, last: int, scale: float = 1.0, **kw: object) -> list[StepRecord]:
    return [StepRecord(step=s, loss=scale * 2.0 / s**0.5, **kw) for s in range(first, last + 1)]  # type: ignore[arg-type]


def test_two_runs_appended_in_one_log() -> None:
    recs = _run(1, 200) + _run(1, 150, scale=0.9)
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.id == "run-restart" and f.severity == "warning"  # two runs mixed in one log
    assert f.steps == [1]
    segs = f.evidence["segments"]
    assert [(s["first_step"], s["last_step"]) for s in segs] == [(1, 200), (1, 150)]
    assert segs[1]["from_record"] == 200 and segs[1]["kind"] == "new run"
    assert "2 runs" in f.title


def test_a_resumed_run_logs_steps_again() -> None:
    recs = _run(1, 300) + _run(250, 600, scale=1.01)
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    seg = f.evidence["segments"][1]
    assert seg["kind"] == "resumed" and seg["first_step"] == 250
    assert f.severity == "info"  # resuming from a checkpoint is how runs survive crashes
    assert f.steps == [250] and "resumed at step 250 after step 300" in f.explanation


def test_an_excerpt_rolled_back_to_an_earlier_checkpoint_is_a_resume() -> None:
    # bigscience-like excerpt: 7000-7220, back to the checkpoint at 6900, later back to 8738
    recs = _run(7000, 7220) + _run(6900, 11448, scale=0.99) + _run(8738, 9027, scale=0.98)
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert [s["kind"] for s in f.evidence["segments"]] == ["first", "resumed", "resumed"]
    assert f.severity == "info"
    # a counter that goes back to ~0 is a new run, even in an excerpt
    [g] = replay(recs + _run(1, 50), None, [RunRestartDetector()], raw=recs + _run(1, 50))
    assert g.evidence["segments"][-1]["kind"] == "new run" and g.severity == "warning"


def test_a_resume_logged_by_every_rank_is_one_restart() -> None:
    recs = [
        StepRecord(step=s, loss=1.0 / s + 0.01 * r, rank=r) for s in range(1, 101) for r in range(4)
    ]
    recs += [
        StepRecord(step=s, loss=0.9 / s + 0.01 * r, rank=r)
        for s in range(60, 121)
        for r in range(4)
    ]
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.steps == [60] and f.evidence["segments"][1]["kind"] == "resumed"


def test_near_miss_rank_interleaved_copies_and_per_epoch_step_counters() -> None:
    # 2 ranks printing the same metrics, slightly out of order: copies, not a restart
    one = _run(1, 100)
    ranks = []
    for i in range(0, 100, 2):
        ranks += [one[i], one[i + 1], one[i]]
    assert replay(ranks, None, [RunRestartDetector()], raw=ranks) == []
    # the step counter is the batch index within each epoch (MetricLogger's [ 100/1251])
    epochs = [StepRecord(step=b, epoch=e, loss=1.0 / (1 + e + b / 100)) for e in range(5) for b in range(0, 100, 10)]  # fmt: skip
    assert replay(epochs, None, [RunRestartDetector()], raw=epochs) == []
    # 2 ranks printing their own (different) local losses, interleaved out of order
    local = []
    for s in range(1, 60, 2):
        for rank in (0, 1):
            local += [StepRecord(step=t, loss=1.0 / t + 0.01 * rank, rank=rank) for t in (s, s + 1)]
    assert replay(local, None, [RunRestartDetector()], raw=local) == []
    # cleaned records never restart: without raw the detector sees no reset
    assert replay(_run(1, 50), None, [RunRestartDetector()]) == []


def test_eval_records_do_not_cut_segments() -> None:
    recs = _run(1, 100)
    recs.insert(50, StepRecord(step=10, kind="eval", eval_loss=1.0))
    assert replay(recs, None, [RunRestartDetector()], raw=recs) == []


def test_state_dict_round_trip() -> None:
    recs = _run(1, 100) + _run(1, 80, scale=0.8) + _run(40, 120)
    a, b = RunRestartDetector(), RunRestartDetector()
    for r in recs[:130]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in recs[130:]:
        a.update(r)
        b.update(r)
    assert a.state_dict() == b.state_dict()
    assert [f.to_json() for f in a.finish()] == [f.to_json() for f in b.finish()]
    assert len(a.finish()[0].evidence["segments"]) == 3


# -- minimum evidence ---------------------------------------------------------------------------
def test_a_single_line_with_a_lower_step_is_only_a_note() -> None:
    # a stray line (a summary printed at step 0, a pasted fragment) after a 20-record run
    recs = [*_run(1, 20), StepRecord(step=1, loss=1.0)]
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.severity == "info" and TOO_FEW in f.title
    assert f.evidence["evidence_records"] == 1 and f.evidence["evidence_min_records"] == 3
    # two records, the second back at step 1: no run was seen on either side
    recs = [StepRecord(step=100, loss=2.0), StepRecord(step=1, loss=2.1)]
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.severity == "info" and TOO_FEW in f.title


def test_one_well_evidenced_new_run_among_thin_ones_is_a_warning() -> None:
    # 3, 2, 4 records (each run its own losses): each reset has a side of 2 records
    recs = _run(1, 3) + _run(1, 2, scale=0.9) + _run(1, 4, scale=0.8)
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.severity == "info"
    recs = _run(1, 3) + _run(1, 3, scale=0.9)  # 3 | 3: both counters ran
    [f] = replay(recs, None, [RunRestartDetector()], raw=recs)
    assert f.severity == "warning" and TOO_FEW not in f.title


def test_keras_csvlogger_four_fit_sessions_appended() -> None:
    # bench/doctor_corpus DEV log: epoch column 0..4, 0..3, 0..9, 0..4 in one CSV
    report = diagnose(
        REPO / "bench/doctor_corpus/keras_csvlogger_braintumor_append/training_log.csv"
    )
    [f] = [f for f in report.findings if f.id == "run-restart"]
    assert f.severity == "warning" and "4 runs" in f.title
    assert [s["records"] for s in f.evidence["segments"]] == [5, 4, 10, 5]
