"""``no-learning`` (detectors/nosignal.py) on axolotl#2357 (round-6 dev): a loss and a gradient
norm of exactly 0.0 on every logged step. No finding at 2e63da8; near misses stay quiet."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.base import feed
from stabletrain.detectors.nosignal import NoLearningDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_axolotl_zero_loss_zero_grad_is_no_learning() -> None:
    report = diagnose(str(CORPUS / "axolotl_2357_zero_loss" / "console.txt"))
    f = next(f for f in report.findings if f.id == "no-learning")
    assert f.severity == "error"
    assert f.evidence == {"zero_grad_norms": 11, "losses": 11, "zero_losses": 11}


def _run(losses: list[float], norms: list[float | None], **kw: object) -> list[str]:
    recs = [
        StepRecord(step=i + 1, loss=x, grad_norm=g, **kw)  # type: ignore[arg-type]
        for i, (x, g) in enumerate(zip(losses, norms, strict=True))
    ]
    one, bulk = NoLearningDetector(), NoLearningDetector()
    for r in recs:
        one.update(r)
    feed(bulk, recs)
    assert one.state_dict() == bulk.state_dict()
    return [f.id for f in one.finish()]


def test_near_misses_are_quiet() -> None:
    zeros = [0.0] * 8
    assert _run(zeros, zeros) == ["no-learning"]
    assert _run([7.1] * 8, zeros) == ["no-learning"]  # frozen weights, loss unchanged
    # a falling loss with zero norms: the norm was not measured (a placeholder), not no learning
    assert _run([2.0 - 0.1 * i for i in range(8)], zeros) == []
    assert _run(zeros, [*zeros[:7], 0.3]) == []  # one positive norm
    assert _run(zeros, [*zeros[:7], float("nan")]) == []  # a non-finite norm is another finding
    assert _run(zeros[:4], zeros[:4]) == []  # too few records
    assert _run(zeros, [None] * 8) == []  # no norm logged: a loss of 0 alone may be a fit model
    assert _run(zeros, zeros, skipped=True) == []  # a scaler's skipped steps report 0
