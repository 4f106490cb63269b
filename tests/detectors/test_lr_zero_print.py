"""``lr-zero`` and a fixed-decimal print: LLaMA2-Accessory#48 (round-4 held-out, development data
from session 5) prints ``lr: 0.000000`` on four warm-up records, then ``lr: 0.000003``. A warning
at 2e63da8; the zeros are any LR below 5e-7, so no finding. Zeros that are zeros stay found."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.base import feed
from stabletrain.detectors.schedules import LRScheduleDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_llama2_accessory_warmup_zeros_are_below_the_print() -> None:
    report = diagnose(str(CORPUS / "llama2acc_48_clean" / "train.log"))
    assert "lr-zero" not in {f.id for f in report.findings}


def _zero(lrs: list[float]) -> bool:
    recs = [StepRecord(step=10 * i, loss=1.0, lr=x) for i, x in enumerate(lrs)]
    one, bulk = LRScheduleDetector(), LRScheduleDetector()
    for r in recs:
        one.update(r)
    feed(bulk, recs)
    assert one.state_dict() == bulk.state_dict()
    return "lr-zero" in {f.id for f in one.finish()}


def test_zeros_that_are_zeros_are_still_found() -> None:
    assert not _zero([0.0] * 4 + [3e-6, 6e-6, 9e-6])  # a 6-decimal warm-up just visible
    assert _zero([0.0] * 8)  # never positive
    assert _zero([0.0] * 4 + [1.2345678901e-4, 2.3456789012e-4])  # printed in full: real zeros
    assert _zero([0.0] * 4 + [0.00123])  # 123 units of its last decimal: no ramp just visible
    assert _zero([1e-3] * 4 + [0.0] * 4 + [1e-3] * 4)  # zeros in the middle, not a warm-up
