"""Start-up protection on real tiny models: the LR that did the damage becomes a ceiling, a rise
the updates cannot explain is left alone, and both the ramp and the init repair work through
``guard.optimizer`` (the path the HF / Lightning / Accelerate adapters use) as through
``guard.step``."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stabletrain.guard.guard import Guard

Stepper = Callable[[Guard, torch.Tensor], None]


def _by_step(guard: Guard, loss: torch.Tensor) -> None:
    guard.step(loss)


def _by_wrapper(guard: Guard, loss: torch.Tensor) -> None:
    """What a framework does with ``guard.optimizer``: its own zero_grad and backward, the loss
    told to the guard, then ``optimizer.step()``."""
    opt = guard.optimizer
    opt.zero_grad()
    loss.backward()
    guard.record_loss(loss.detach())
    opt.step()


def _fit(
    h: SimpleNamespace, model: nn.Module, opt: torch.optim.Optimizer, step: Stepper | None,
    seed: int = 0,
) -> tuple[float, Guard | None]:  # fmt: skip
    """150 steps of batch 32 on digits through ``step`` (None: the plain loop with clip 1.0,
    the guard's default clip); the val accuracy at the end."""
    guard = Guard(model, opt) if step is not None else None
    by = (lambda loss: step(guard, loss)) if guard is not None and step is not None else None
    return h.digits_fit(model, opt, by, seed=seed), guard


def _high_lr(h: SimpleNamespace, step: Stepper | None) -> tuple[float, Guard | None]:
    """A 6-layer MLP at Adam lr 0.05, no warm-up (seed 1: its first updates push the loss
    above where it started)."""
    torch.manual_seed(1)
    model = h.deep_mlp(depth=6)
    return _fit(h, model, torch.optim.Adam(model.parameters(), lr=0.05), step, seed=1)


@pytest.mark.parametrize("step", [_by_step, _by_wrapper], ids=["guard.step", "guard.optimizer"])
def test_the_lr_that_blew_up_the_start_is_a_ceiling_the_ramp_never_passes(
    h: SimpleNamespace, caplog: pytest.LogCaptureFixture, step: Stepper
) -> None:
    plain, _ = _high_lr(h, None)
    caplog.set_level("WARNING", logger="stabletrain")
    guarded, guard = _high_lr(h, step)
    assert guard is not None and guard.startup.fires >= 1
    # the ceiling: lr_backoff_factor x the LR the damage appeared at, never the schedule's 0.05
    assert guard.policy.lr_cap is not None and guard.policy.lr_cap <= 0.5 * 0.05 + 1e-12
    assert guard.outcomes.last_lr is not None and guard.outcomes.last_lr <= 0.025 + 1e-12
    (ramp,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("LR ramped")]
    assert "ceiling" in ramp and "0.05 the damage appeared at" in ramp, ramp
    assert guarded > plain + 0.1, (guarded, plain)


def test_a_noisy_batch_1_start_whose_updates_barely_moved_the_weights_gets_no_ramp(
    h: SimpleNamespace,
) -> None:
    """Batch 1 at a sane LR: the single first loss (seed 2: 1.2, the typical one ~2.3) is far
    below the next ones, so the smoothed loss climbs 'above where it started' though the
    weights moved ~3% -- jitter, not damage. No rollback, no LR change."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), *[m for i in range(7) for m in (
        nn.Linear(64, 64), nn.ReLU())], nn.Linear(64, 10))  # fmt: skip
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    xt, yt, _, _ = h.digits()
    guard = Guard(model, torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0))
    perm = torch.randperm(1437, generator=torch.Generator().manual_seed(1002))
    for s in range(60):
        i = perm[s : s + 1]
        guard.step(F.cross_entropy(model(xt[i]), yt[i]))
    assert guard.policy.rollbacks == 0 and guard.policy.lr_cap is None
    assert guard.policy.rewarm_start is None


def _bad_init(h: SimpleNamespace, step: Stepper | None) -> tuple[float, Guard | None]:
    """An 8-layer ReLU MLP at normal(std 0.5), ~2.8x Kaiming per layer (first loss ~1e4)."""
    torch.manual_seed(0)
    model = h.deep_mlp(depth=7, init_std=0.5)
    return _fit(h, model, torch.optim.AdamW(model.parameters(), lr=1e-3), step)


def test_the_init_repair_works_through_guard_optimizer(
    h: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    plain, _ = _bad_init(h, None)
    caplog.set_level("WARNING", logger="stabletrain")
    repaired, _ = _bad_init(h, _by_wrapper)
    (msg,) = [r.getMessage() for r in caplog.records if "init repaired" in r.getMessage()]
    assert "8 layer(s)" in msg
    assert repaired > plain + 0.1 and repaired > 0.85, (repaired, plain)
