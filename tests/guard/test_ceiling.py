"""The clip ceiling (guard/ceiling.py): raised on a healthy run whose norms sit well above the
fixed clip, pinned back when the raise brings trouble; scripted sequences with hand-computed
expectations, and real SGD runs on a tiny regression net (a failed raise restores the weights
of the raise; no raise in the start-up steps)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from stabletrain import Guard, GuardConfig
from stabletrain.guard.ceiling import Change, ClipCeiling, Quiet


def _quiet(loss: float = 1.0, *, rollbacks: int = 0, age: int | None = 10, **kw: bool) -> Quiet:
    return Quiet(lr_held=kw.get("lr_held", False), trending_up=kw.get("trending_up", False),
                 rollbacks=rollbacks, recent_loss=loss, snapshot_age=age)  # fmt: skip


def _feed(
    c: ClipCeiling, n: int, coef: float, norm: float, loss: float = 1.0, **kw: object
) -> list[Change]:
    changes = []
    for _ in range(n):
        ch = c.observe(applied=True, action=None, norm=norm, coef=coef, quiet=_quiet(loss, **kw))  # type: ignore[arg-type]
        if ch is not None:
            changes.append(ch)
    return changes


def test_raises_one_notch_after_a_saturated_quiet_window() -> None:
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 9, coef=0.1, norm=10.0) == []
    (ch,) = _feed(c, 1, coef=0.1, norm=10.0)
    assert (ch.kind, ch.old, ch.new) == ("raise", 1.0, 2.0)
    assert "engaged on 10/10 steps, median coef 0.1" in ch.message
    assert c.limit == 2.0


def test_the_notch_stays_under_the_runs_own_norm_level() -> None:
    c = ClipCeiling(4.0, window=10)
    # coef 0.45 <= 0.5: engaged, norms 4 / 0.45 = 8.9; x2 = 8.0 stays under them
    (ch,) = _feed(c, 10, coef=0.45, norm=4.0 / 0.45)
    assert ch.new == 8.0 and ch.new <= ch.data["median_norm"]


def test_no_raise_when_the_clip_barely_engages_or_the_run_is_not_quiet() -> None:
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 30, coef=0.7, norm=1.4) == []  # norms under twice the ceiling
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 30, coef=0.1, norm=10.0, lr_held=True) == []
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 30, coef=0.1, norm=10.0, trending_up=True) == []
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 30, coef=0.1, norm=10.0, age=None) == []  # no rollback target
    c = ClipCeiling(1.0, window=10)
    assert _feed(c, 30, coef=0.1, norm=10.0, age=11) == []  # the target older than the window
    c = ClipCeiling(1.0, window=10)
    losses = [1.0 + 0.01 * i for i in range(30)]  # the loss climbing under the clip
    assert all(
        c.observe(applied=True, action=None, norm=10.0, coef=0.1, quiet=_quiet(v)) is None
        for v in losses
    )


def test_a_spike_resets_the_window_a_nan_batch_does_not() -> None:
    c = ClipCeiling(1.0, window=10)
    _feed(c, 5, coef=0.1, norm=10.0)
    c.observe(applied=False, action="skip_nonfinite_loss", norm=math.nan, coef=None, quiet=_quiet())
    assert len(c.steps) == 5
    c.observe(applied=False, action="skip_spike", norm=50.0, coef=None, quiet=_quiet())
    assert len(c.steps) == 0


def test_trouble_in_probation_pins_back_for_good() -> None:
    c = ClipCeiling(1.0, window=10)
    _feed(c, 10, coef=0.1, norm=10.0)
    assert c.limit == 2.0 and c.probation is not None
    ch = c.observe(applied=False, action="skip_spike", norm=80.0, coef=None, quiet=_quiet())
    assert ch is not None and (ch.kind, ch.new) == ("pin", 1.0)
    assert c.pinned == 1.0 and c.limit == 1.0
    assert _feed(c, 100, coef=0.1, norm=10.0) == []  # never tried above it again


def test_loss_rising_over_the_probation_pins_a_passed_one_stays() -> None:
    c = ClipCeiling(1.0, window=10)
    _feed(c, 10, coef=0.1, norm=10.0, loss=1.0)
    (ch,) = _feed(c, 5, coef=0.2, norm=10.0, loss=1.2)  # 5 = window // 2, 20% above
    assert (ch.kind, ch.new) == ("pin", 1.0)
    c = ClipCeiling(1.0, window=10)
    _feed(c, 10, coef=0.1, norm=10.0, loss=1.0)
    assert _feed(c, 5, coef=0.2, norm=10.0, loss=0.9) == []
    assert c.probation is None and c.limit == 2.0
    (ch,) = _feed(c, 5, coef=0.2, norm=10.0, loss=0.9)  # the probation's steps count: 10
    assert (ch.kind, ch.old, ch.new) == ("raise", 2.0, 4.0)


def test_a_rollback_after_a_passed_probation_reverts_to_max_norm() -> None:
    c = ClipCeiling(1.0, window=10)
    _feed(c, 15, coef=0.1, norm=10.0)
    assert c.limit == 2.0 and c.probation is None
    ch = c.observe(applied=False, action="rollback", norm=9.0, coef=None, quiet=_quiet(rollbacks=1))
    assert ch is not None and (ch.kind, ch.new) == ("revert", 1.0)
    assert _feed(c, 50, coef=0.1, norm=10.0, rollbacks=1) == []


def test_state_round_trip() -> None:
    c = ClipCeiling(1.0, window=10)
    _feed(c, 12, coef=0.1, norm=10.0)
    d = ClipCeiling(1.0, window=10)
    d.load_state_dict(json.loads(json.dumps(c.state_dict())))
    assert d.state_dict() == c.state_dict()
    # both decide the same from here
    assert [x.message for x in _feed(c, 20, 0.1, 10.0)] == [
        x.message for x in _feed(d, 20, 0.1, 10.0)
    ]


# -- real runs ---------------------------------------------------------------------------------

torch.manual_seed(0)
X = torch.randn(512, 16)
Y = X @ torch.randn(16, 1) + 0.1 * torch.randn(512, 1)  # targets of std ~4: grad norms ~5-10


def _train(
    lr: float, config: GuardConfig | None, steps: int = 200, run_dir: Path | None = None,
    weights: list[torch.Tensor] | None = None,
) -> tuple[float, Guard | None]:  # fmt: skip
    """SGD on the regression net; config None: a plain loop without clip. (final MSE, guard).
    ``weights``: gets a flat copy of the weights after every step."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    guard = Guard(model, opt, config=config, run_dir=run_dir) if config is not None else None
    for _ in range(steps):
        idx = torch.randint(0, 512, (32,))
        loss = nn.functional.mse_loss(model(X[idx]), Y[idx])
        if guard is None:
            opt.zero_grad()
            loss.backward()
            opt.step()
        else:
            guard.step(loss)
        if weights is not None:
            weights.append(torch.cat([p.detach().flatten() for p in model.parameters()]).clone())
    if guard is not None:
        guard.close()
    with torch.no_grad():
        return nn.functional.mse_loss(model(X), Y).item(), guard


def test_sgd_regression_the_ceiling_rises_and_the_run_gets_closer_to_the_unclipped_loop(
    tmp_path: Path,
) -> None:
    plain, _ = _train(0.05, None)
    fixed, _ = _train(0.05, GuardConfig(clip_raise_window=0))
    raised, guard = _train(0.05, GuardConfig(clip_raise_window=50), run_dir=tmp_path)
    assert guard is not None and guard.ceiling.limit is not None and guard.ceiling.limit > 1.0
    events = [json.loads(x) for x in (tmp_path / "events.jsonl").read_text().splitlines()]
    (ev,) = [e for e in events if e["event"] == "clip-ceiling"]
    assert ev["message"].startswith("clip ceiling 1 → 2: engaged on 50/50 steps")
    assert raised < fixed
    assert raised - plain < 0.75 * (fixed - plain)  # part of the clip's cost recovered


def test_too_high_lr_the_raise_brings_spikes_it_is_pinned_back_no_worse_than_fixed() -> None:
    # SGD at lr 0.5: unclipped it goes NaN, the clip at 1.0 holds it; raised to 2 it spikes
    fixed, _ = _train(0.5, GuardConfig(clip_raise_window=0))
    pinned, guard = _train(0.5, GuardConfig(clip_raise_window=50))
    assert guard is not None and guard.ceiling.raises >= 1
    assert guard.ceiling.pinned == 1.0 and guard.ceiling.limit == 1.0
    assert math.isfinite(pinned) and pinned <= fixed * 1.05


def test_off_for_adaptive_modes_and_without_snapshots() -> None:
    model = nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    assert not Guard(
        model, opt, config=GuardConfig.preset("adaptive", clip_raise_window=50)
    ).ceiling.active
    assert not Guard(
        model, opt, config=GuardConfig(snapshot_every=0, clip_raise_window=50)
    ).ceiling.active
    assert not Guard(model, opt, config=GuardConfig(clip_raise_window=0)).ceiling.active
    with pytest.raises(Exception, match="clip_raise_window"):
        GuardConfig(clip_raise_window=-1)


def test_guard_state_dict_carries_the_ceiling() -> None:
    _, guard = _train(0.05, GuardConfig(clip_raise_window=50), steps=120)
    assert guard is not None and guard.ceiling.limit == 2.0
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
    other = Guard(
        model, torch.optim.SGD(model.parameters(), lr=0.05),
        config=GuardConfig(clip_raise_window=50),
    )  # fmt: skip
    other.load_state_dict(guard.state_dict())
    assert other.ceiling.limit == 2.0 and other.ceiling.state_dict() == guard.ceiling.state_dict()


def test_sync_free_path_raises_at_its_reads_like_the_immediate_path() -> None:
    """CPU fused SGD: the device path decides at its reads (every 10 steps), with the same
    numbers; the raise at step 50 falls on a read, so both runs stay identical."""
    finals, guards = [], []
    for mode in ("off", "on"):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.05, fused=True)
        cfg = GuardConfig(clip_raise_window=50, sync_free=mode, read_every=10)
        guard = Guard(model, opt, config=cfg)
        for _ in range(120):
            idx = torch.randint(0, 512, (32,))
            guard.step(nn.functional.mse_loss(model(X[idx]), Y[idx]))
        guard.flush()
        with torch.no_grad():
            finals.append(nn.functional.mse_loss(model(X), Y).item())
        guards.append(guard)
    assert guards[1].sync_free and guards[1].host_reads == 12
    assert guards[0].ceiling.limit == guards[1].ceiling.limit == 2.0
    assert finals[1] == pytest.approx(finals[0], rel=1e-6)


# -- the ceiling made safe: a failed raise undone, no raise in the start-up steps ---------------


def test_a_failed_raise_puts_back_the_weights_of_the_raise(tmp_path: Path) -> None:
    # SGD at lr 0.5: unclipped it goes NaN, the clip at 1.0 holds it; raised to 2 it spikes at
    # once. The pin restores the weights and optimizer state taken at the raise.
    weights: list[torch.Tensor] = []
    pinned, guard = _train(0.5, GuardConfig(clip_raise_window=50), run_dir=tmp_path,
                           weights=weights)  # fmt: skip
    lines = (tmp_path / "events.jsonl").read_text().splitlines()
    raise_ev, pin_ev = [e for e in map(json.loads, lines) if e["event"] == "clip-ceiling"]
    assert (raise_ev["data"]["kind"], pin_ev["data"]["kind"]) == ("raise", "pin")
    assert guard is not None and guard.ceiling.limit == 1.0 and guard.ceiling.pinned == 1.0
    at_raise = pin_ev["data"]["restored_to"]
    assert "restored to step" in pin_ev["message"]
    # the weights right after the pin are those the raise was decided on, not the spiked ones
    assert torch.equal(weights[pin_ev["step"] - 1], weights[at_raise - 1])
    fixed, _ = _train(0.5, GuardConfig(clip_raise_window=0))
    assert math.isfinite(pinned) and pinned <= fixed


def test_no_raise_in_the_start_up_steps_where_the_clip_is_what_holds_the_run() -> None:
    # SGD at lr 0.2: unclipped it ends at MSE ~0.47, the clip at 1.0 at ~0.08. Its loss falls
    # 40x in its first 20 steps; a raise at step 20 was judged against that falling level,
    # passed, and ended ~4x worse than the fixed clip. Now the start-up steps (the start-up
    # rule's 50) only gather evidence; by then the clip no longer engages at 2x.
    plain, _ = _train(0.2, None)
    fixed, _ = _train(0.2, GuardConfig(clip_raise_window=0))
    raised, guard = _train(0.2, GuardConfig(clip_raise_window=20))
    assert fixed < 0.5 * plain
    assert guard is not None
    assert raised <= 1.02 * fixed
