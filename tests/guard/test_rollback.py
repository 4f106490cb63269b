"""Rollback: which snapshot is the target, and when a snapshot becomes one."""

from __future__ import annotations

from types import SimpleNamespace

import torch
import torch.nn.functional as F

from stabletrain.guard import rollback
from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard


def test_a_twice_failed_snapshot_is_passed_over() -> None:
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    guard = Guard(model, opt)
    store = guard.snapshots
    old = store.add(store.capture(10, model, opt))
    new = store.add(store.capture(20, model, opt))
    assert rollback.rollback_target(guard) is new
    for _ in range(2):
        store.restore(new, model, opt)
    assert rollback.rollback_target(guard) is old


def test_a_snapshot_is_kept_only_after_clean_steps_follow_it(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = GuardConfig(
        snapshot_every=5, snapshot_confirm_steps=3, escalate_window=4, escalate_reset=4
    )
    guard = Guard(model, opt, config=cfg)
    for i in range(3):  # the first snapshot is captured at the first clean step ...
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
    assert len(guard.snapshots) == 0 and guard._candidate is not None
    candidate = guard._candidate
    # ... a skipped (NaN) step changed nothing: it neither confirms nor drops the candidate
    guard.step(F.cross_entropy(model(x[:32] * float("nan")), y[:32]))
    assert len(guard.snapshots) == 0 and guard._candidate is candidate
    guard.step(F.cross_entropy(model(x[96:128]), y[96:128]))  # the 3rd clean step after it
    assert len(guard.snapshots) == 1 and guard._candidate is None
    assert guard.snapshots.pick(0) is candidate and candidate.step == 1
    for i in range(4, 12):
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
        if i == 5:  # within escalate_window of the bad step: too soon to snapshot
            assert guard._candidate is None
    # the window passed: the next one captured after step 7 (resumes at 8), kept 3 steps later
    assert len(guard.snapshots) == 2
    assert guard.snapshots.pick(0).step == 8  # type: ignore[union-attr]


def test_recovery_state_round_trip_and_targets_by_evidence(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    guard = Guard(model, opt, config=GuardConfig(snapshot_every=5, snapshot_confirm_steps=2))
    assert guard.recovery.target() is None
    for i in range(30):
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
        if i == 0:  # the state before the first update is the target until one is confirmed
            initial = guard.recovery.target()
            assert initial is not None and initial.step == 0
    assert guard.snapshots.initial is None and len(guard.snapshots) == 2
    best = guard.snapshots.best
    assert best is not None and guard.recovery.target("loss-divergence") is best
    assert guard.recovery.target() is guard.snapshots.pick(0)
    guard.recovery.owe(3)
    other = Guard(model, opt, config=GuardConfig(snapshot_every=5, snapshot_confirm_steps=2))
    other.recovery.load_state_dict(guard.recovery.state_dict())
    assert other.recovery.skip_debt == 3 and len(other.snapshots) == 2
    assert [other.recovery.pay() for _ in range(4)] == [True, True, True, False]
