"""Snapshots restore exactly and are not aliased; the conservative scaler; loss-scale collapse."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from stabletrain.guard.amp import conservative_scaler
from stabletrain.guard.guard import Guard
from stabletrain.guard.snapshots import SnapshotStore


def test_snapshot_restore_exact_and_reusable(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.StepLR(opt, 1, 0.9)
    store = SnapshotStore(keep=2)

    def train(n: int) -> None:
        for i in range(n):
            F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]).backward()
            opt.step()
            sched.step()
            opt.zero_grad()

    train(3)
    store.add(store.capture(3, model, opt, None, sched, {"k": 1}))
    saved = h.snapshot_state(model, opt)
    rng = torch.rand(3)
    for _ in range(2):  # restore twice: the first restore must not let training alias the snapshot
        train(5)
        store.restore(store.pick() or pytest.fail("no snapshot"), model, opt, None, sched)
        assert h.same(saved, h.snapshot_state(model, opt)) and sched.last_epoch == 3
        assert torch.equal(torch.rand(3), rng)  # RNG restored too
    other = SnapshotStore()
    other.load_state_dict(store.state_dict())
    assert h.same(other.state_dict(), store.state_dict())


def test_conservative_scaler_settings() -> None:
    s = conservative_scaler("cpu")
    assert s.get_scale() == 2.0**10
    assert s.get_growth_factor() == 2.0 and s.get_growth_interval() == 2000


def test_fp16_scale_collapse_says_switch_to_bf16(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    guard = Guard(model, opt, scaler=torch.amp.GradScaler("cpu", init_scale=4.0))
    for _ in range(6):  # activations so large that fp16 grads overflow even at scale 1
        with torch.autocast("cpu", dtype=torch.float16):
            logits = model(x[:64] * 3e3)
        guard.step(F.cross_entropy(logits.float(), y[:64], reduction="sum"))
    (collapse,) = [f for f in guard.findings if f.id == "loss-scale-collapse"]
    assert "bf16" in collapse.title and collapse.evidence["loss_scale"] <= 1.0
    assert collapse.steps == [2]  # scale 4 → 2 → 1: at its floor after two overflows
    (run_level,) = [f for f in guard.finish() if f.id == "loss-scale-collapse"]
    assert run_level.fixes[0].changes == {"precision": "bf16"}
