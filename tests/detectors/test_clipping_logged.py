"""``clip-saturated`` from the share of updates a trainer says it clipped (fairseq's ``clip=100%``,
``metrics["clip_fraction"]``), and its minimum evidence."""

from __future__ import annotations

import json
from pathlib import Path

from stabletrain.detectors.base import feed
from stabletrain.detectors.clipping import ClippingDetector
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import TOO_FEW
from stabletrain.detectors.registry import replay
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

REPO = Path(__file__).parents[2]


def _run(shares: list[float], per_epoch: int = 5) -> list[StepRecord]:
    return [
        StepRecord(step=100 * (i + 1), epoch=i // per_epoch, loss=1.0, metrics={"clip_fraction": c})
        for i, c in enumerate(shares)
    ]


def test_fairseq_log_clipped_on_every_update_is_saturated() -> None:
    # bench/doctor_corpus DEV log (fairseq issue 301): clip=100% on all 10 intervals, no clip
    # value anywhere in the log
    report = diagnose(REPO / "bench/doctor_corpus/fairseq_py_301_clip100/train.log")
    [f] = [f for f in report.findings if f.id == "clip-saturated"]
    assert f.severity == "warning"
    assert f.evidence["logged_clip_fraction_late"] == 1.0 and f.evidence["logged_records"] == 10
    assert f.epochs == [10, 11]


def test_four_interval_excerpt_is_only_a_note() -> None:
    # the same issue's 4-line excerpt (tests/fixtures/logs): below the 5 intervals the rule needs
    report = diagnose(REPO / "tests/fixtures/logs/fairseq_clip_percent_301/log.txt")
    [f] = [f for f in report.findings if f.id == "clip-saturated"]
    assert f.severity == "info" and TOO_FEW in f.title
    assert f.evidence["evidence_records"] == 4 and f.evidence["evidence_min_records"] == 5


def test_clipping_a_third_of_updates_or_only_early_is_quiet() -> None:
    assert replay(_run([0.3] * 20), None, [ClippingDetector()]) == []
    # clipped while norms settle, then rarely: judged on the second half
    assert replay(_run([1.0] * 10 + [0.05] * 10), None, [ClippingDetector()]) == []


def test_saturated_late_is_a_warning() -> None:
    [f] = replay(_run([0.2] * 10 + [0.9] * 10), None, [ClippingDetector()])
    assert f.id == "clip-saturated" and f.severity == "warning"
    assert f.evidence["logged_clip_fraction_late"] == 0.9


def test_bulk_equals_per_record_and_state_round_trips() -> None:
    recs = _run([0.1, 0.5, float("nan"), 1.0] * 10)
    recs.append(StepRecord(step=5000, kind="eval", eval_loss=1.0, metrics={"clip_fraction": 1.0}))
    one, many = ClippingDetector(), ClippingDetector()
    for r in recs:
        one.update(r)
    feed(many, Batch(recs))
    assert json.dumps(one.state_dict()) == json.dumps(many.state_dict())
    back = ClippingDetector()
    back.load_state_dict(json.loads(json.dumps(one.state_dict())))
    assert [f.to_json() for f in back.finish()] == [f.to_json() for f in one.finish()]
    assert [f.id for f in one.finish()] == ["clip-saturated"]
