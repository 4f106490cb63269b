"""LossScaleDetector: collapse → "switch to bf16" with evidence; settling backoffs ignored."""

from __future__ import annotations

import torch

from stabletrain.detectors.amp import LossScaleDetector
from stabletrain.records import ConfigFacts, StepRecord


def _scaler_trace(overflow_at: set[int], n: int, init: float = 65536.0) -> list[StepRecord]:
    """The loss_scale sequence of a real torch GradScaler (CPU) fed the given overflow steps."""
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=0.0)
    scaler = torch.amp.GradScaler("cpu", init_scale=init, growth_interval=10)
    out = []
    for i in range(n):
        scale_before = scaler.get_scale()
        loss = (p * (float("inf") if i in overflow_at else 1.0)).sum()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        opt.zero_grad()
        out.append(
            StepRecord(
                step=i,
                loss=1.0,
                grad_norm=float("inf") if i in overflow_at else 1.0,
                loss_scale=scale_before,
                skipped=i in overflow_at,
            )
        )
    return out


def test_initial_settling_is_not_a_problem() -> None:
    det = LossScaleDetector()
    for r in _scaler_trace({0, 1, 2, 3}, 60):
        assert det.update(r) is None
    assert det.finish() == []


def test_collapse_detected_with_bf16_fix() -> None:
    det = LossScaleDetector()
    hits = [r.step for r in _scaler_trace(set(range(5, 200)), 200) if det.update(r) is not None]
    assert len(hits) == 1  # one live finding
    found = {f.id: f for f in det.finish(ConfigFacts())}
    col = found["loss-scale-collapse"]
    assert col.severity == "error" and "bf16" in col.title
    assert col.evidence["min_scale"] <= 1.0
    assert col.evidence["overflow_rate"] > 0.9
    assert col.fixes[0].changes == {"precision": "bf16"}
    assert col.fixes[1].changes["loss_scale_init"] == 1024.0
    assert "fp16-overflow" in found


def test_frequent_late_overflows_warn() -> None:
    det = LossScaleDetector()
    for r in _scaler_trace({i for i in range(30, 300, 25)}, 300, init=2.0**10):
        det.update(r)
    found = {f.id: f for f in det.finish()}
    assert "loss-scale-collapse" not in found
    assert found["fp16-overflow"].severity == "warning"
    # each overflow counted once (the skipped step, not again for the lower scale after it)
    assert found["fp16-overflow"].steps == list(range(30, 300, 25))


def test_state_round_trip() -> None:
    recs = _scaler_trace(set(range(5, 80)), 80)
    a = LossScaleDetector()
    for r in recs[:40]:
        a.update(r)
    b = LossScaleDetector()
    b.load_state_dict(a.state_dict())
    for r in recs[40:]:
        assert (a.update(r) is None) == (b.update(r) is None)
    assert a.state_dict() == b.state_dict()


def test_constant_scale_of_one_is_bf16_not_a_collapse() -> None:
    # Megatron bf16 logs print "loss scale: 1.0" on every line; that is no scaling, not a floor.
    det = LossScaleDetector()
    for i in range(30):
        assert (
            det.update(StepRecord(step=5400 + i, loss=2.0, grad_norm=1.0, loss_scale=1.0)) is None
        )
    assert [f.id for f in det.finish()] == []


def test_a_scale_below_one_is_collapsed_not_unscaled() -> None:
    """A scale logged at 1.0 from the start is a bf16/fp32 run (no scaling); a scale of 0 (a
    GradScaler underflowed by halving: insightface#2262's ``Fp16 Grad Scale:  0``, round 4 DEV)
    is collapsed, from its first record."""
    zero = LossScaleDetector()
    live = [zero.update(StepRecord(step=s, loss=float("nan"), loss_scale=0.0)) for s in (1, 2, 3)]
    assert live[0] is not None and live[0].id == "loss-scale-collapse"
    one = LossScaleDetector()
    assert [one.update(StepRecord(step=s, loss=2.0, loss_scale=1.0)) for s in (1, 2, 3)] == [
        None
    ] * 3
    assert one.finish() == []
