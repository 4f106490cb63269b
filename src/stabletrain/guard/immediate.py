"""The guard's immediate path: read the step's values on the host, decide, then act.

The path for the CPU and for optimizers that cannot skip on the device (``sync_free.py`` is
the other): one host read per optimizer step — the norm, or ``[loss, norm, scale]`` packed under
AMP or DDP — then the detectors (``_classify``), the ladder (``_decide``), the clip, the inner
step or the skip, and the shared reporting (``_report``, ``_after_step``) of ``guard.py``.
A skip never touches the optimizer: its state (moments, step counts) and the parameters stay
bitwise unchanged; the grads are zeroed and the GradScaler backs off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from stabletrain.guard import clipping, reporting, verdict
from stabletrain.guard.outcome import StepOutcome
from stabletrain.guard.readout import read_step, step_with_lr_factor

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard


def immediate_step(
    guard: Guard,
    grads: list[torch.Tensor],
    params: list[torch.nn.Parameter],
    norm_t: torch.Tensor,
    owns_loop: bool,
    scaler_on: bool,
    *,
    unscaled: bool,
) -> StepOutcome:
    """Read, decide, clip, step or skip; the resolved outcome. ``unscaled``: the GradScaler
    recorded an ``unscale_`` this step (so a skip must ``update()`` it to back off)."""
    cfg = guard.config
    taken = guard.losses.take()
    loss_t, loss_bad, host = taken.tensor, taken.nonfinite, taken.host
    loss_v, norm_v, scale_v, loss_bad = read_step(
        loss_t, loss_bad, norm_t, guard.scaler, scaler_on, loss_host=host
    )
    guard.host_reads += 1
    lr_before = guard.scheduled_lr()
    lr_factor = guard.policy.lr_factor(lr_before)
    step = guard.step_count

    if not cfg.enabled:
        return plain_step(guard, grads, norm_v, loss_v, scale_v, lr_before, owns_loop)

    if loss_bad:
        guard.buffers.restore()  # a non-finite forward wrote into the BN statistics
    else:
        guard.buffers.save()
    bad = verdict.classify(guard, step, loss_v, norm_v, loss_bad, scaler_on, bool(grads))
    # a rollback's skips, for a loop without guard.batches()
    forced = bad is None and not guard.in_batches and guard.recovery.pay()
    damage = verdict.weight_damage(guard, bad, params)
    decision, bad_action = verdict.judge(
        guard, step, bad, loss_bad, lr_before, forced=forced, damage=damage
    )
    kind = decision.verdict

    clip_coef: float | None = None
    applied = kind in ("apply", "warn")
    if applied:
        clip_coef = clip(guard, grads, params, norm_v)
        step_with_lr_factor(guard.inner_optimizer, guard.scaler, owns_loop, lr_factor)
        if owns_loop and guard.scheduler is not None:
            guard.scheduler.step()
        guard.weights.applied()
        if kind == "apply":
            guard.observe_clean(norm_v, clip_coef, lr_before)
    else:
        for g in grads:
            g.zero_()
        if scaler_on and owns_loop and unscaled:
            guard.scaler.update()  # type: ignore[union-attr]  # backs off if unscale_ saw inf
        guard.total_skipped += 1
    action = reporting.report(guard, decision, step, None if applied else bad_action,
                          loss_v, norm_v, owns_loop)  # fmt: skip
    outcome = StepOutcome(
        step=step,
        applied=applied,
        action=action,
        loss=loss_v,
        grad_norm=norm_v if grads else None,
        clip_coef=clip_coef,
        lr=lr_before * lr_factor,
        loss_scale=scale_v,
        scheduled_lr=lr_before,
    )
    if kind != "rollback":
        guard.step_count += 1
    reporting.after_step(guard, outcome, kind)
    return outcome


def clip(
    guard: Guard, grads: list[torch.Tensor], params: list[torch.nn.Parameter], norm_v: float
) -> float:
    """Clip ``grads`` in place with the host norm; the coefficient (1.0: untouched).

    The fixed ``max_norm``; an adaptive clipper's limit once it has statistics (the lower of the
    two), or ``warmup_max_norm`` while it warms up without a ``max_norm``; AGC unit-wise. The
    grads are multiplied only when the clip engages (``clip_grad_norm_`` always multiplies).
    """
    cfg = guard.config
    if cfg.clip == "agc":
        clipping.agc_(params, cfg.agc_clip)
        return 1.0
    limit = guard.ceiling.limit if cfg.clip != "none" else None  # max_norm, raised on evidence
    if guard.clipper is not None:
        if guard.clipper.warming_up:
            limit = limit if limit is not None else cfg.warmup_max_norm
        else:
            adaptive = guard.clipper.max_norm(norm_v)
            if adaptive is not None:
                limit = adaptive if limit is None else min(limit, adaptive)
    if limit is None or not grads:
        return 1.0
    coef = min(1.0, limit / (norm_v + clipping.ZERO_EPS))
    if coef < 1.0:
        torch._foreach_mul_(grads, coef)
    return coef


def plain_step(
    guard: Guard, grads: list[torch.Tensor], norm_v: float,
    loss_v: float | None, scale_v: float | None, lr: float, owns_loop: bool,
) -> StepOutcome:  # fmt: skip
    """``enabled=False``: clip at max_norm and step, nothing else (the scaler still skips infs)."""
    fixed = guard.config.max_norm is not None and guard.config.clip != "none" and grads
    coef = clip(guard, grads, [], norm_v) if fixed else None
    step_with_lr_factor(guard.inner_optimizer, guard.scaler, owns_loop, 1.0)
    if owns_loop and guard.scheduler is not None:
        guard.scheduler.step()
    outcome = StepOutcome(guard.step_count, True, None, loss_v, norm_v, coef, lr, scale_v)
    guard.last_outcome = outcome
    guard.outcomes.resolve(outcome)
    guard.step_count += 1
    return outcome
