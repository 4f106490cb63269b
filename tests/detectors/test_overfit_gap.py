"""Overfitting read from a gap too wide to be anything else (detectors/generalisation.py): the
eval loss stalled ≥ 3 evals after its best while the training loss fell, at ≥ 3x the training
loss."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.generalisation import EvalDetector
from stabletrain.detectors.registry import replay
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _run(train: list[float], val: list[float]) -> list[StepRecord]:
    out: list[StepRecord] = []
    for e, (t, v) in enumerate(zip(train, val, strict=True), start=1):
        out += [
            StepRecord(step=e, epoch=e, loss=t),
            StepRecord(step=e, kind="eval", epoch=e, eval_loss=v),
        ]
    return out


def test_real_keras_alexnet_gap_is_overfitting() -> None:
    # deep-learning-illustrated issue 15: train loss 0.10-0.25 (acc 0.94-0.97), val_loss 3.2-4.7
    # (val_acc 0.56-0.70); the eval curve rises then falls back, so the rising-eval rule misses it
    [f] = [
        f
        for f in diagnose(FIXTURES / "keras_alexnet_gap_dli15" / "console.txt").findings
        if f.id == "overfitting"
    ]
    assert f.severity == "warning" and f.epochs == [79, 80, 81, 82, 83, 84]
    assert f.evidence["eval_train_ratio_since_best"] > 10


def test_healthy_gaps_stay_quiet() -> None:
    # keras.io PatchConvNet epochs 21-30 (train 0.36 -> 0.22, val 0.50-0.53): stalled, but 2.3x
    conv = _run([0.3641, 0.3474, 0.3327, 0.3158, 0.2986, 0.2819, 0.2696, 0.2526, 0.2322, 0.2180],
                [0.5032, 0.5251, 0.5158, 0.5098, 0.5302, 0.5130, 0.5096, 0.4988, 0.5234, 0.5175])  # fmt: skip
    # a wide gap while the eval loss still improves is no stall
    improving = _run([0.3, 0.2, 0.15, 0.1, 0.08, 0.06], [3.0, 2.8, 2.6, 2.5, 2.4, 2.3])
    # a stalled eval at 4x a training loss that did not fall is no memorising
    flat_train = _run([0.5, 0.5, 0.5, 0.5, 0.5, 0.5], [2.0, 1.9, 2.05, 2.1, 2.0, 2.02])
    for recs in (conv, improving, flat_train):
        assert "overfitting" not in {f.id for f in replay(recs, None, [EvalDetector()])}


def test_bulk_stream_and_state_agree(scenarios) -> None:
    recs = _run([0.2306, 0.2370, 0.2234, 0.2291, 0.5044, 0.2572, 0.2419, 0.1991, 0.1001],
                [3.3835, 3.3218, 3.1847, 4.4569, 4.6910, 3.9741, 3.5022, 3.2057, 3.3824])  # fmt: skip
    scenarios.assert_bulk_and_state_agree(EvalDetector, recs)
    # the wide gap, and (judged apart) the stalled curve's own swings 3.18 -> 4.69 -> 3.21
    assert [f.id for f in replay(recs, None, [EvalDetector()])] == ["overfitting", "eval-unstable"]
