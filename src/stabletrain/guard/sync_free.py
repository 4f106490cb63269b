"""The guard's sync-free path: each step decided on the device, reviewed at the next read.

``device_step`` is the whole optimizer step with no host read (see ``device.py`` for the device
half and its costs); it queues one row of values per step and returns a *pending* outcome.
``flush`` reads the queued rows in one transfer (every ``read_every`` steps, or on demand) and
replays each through the very code the immediate path runs — ``_classify`` (the live
detectors), ``_decide`` (the policy ladder), ``_report`` (events, rollback) and ``_after_step``
(run-level detectors, health, snapshots) — then fills the pending outcomes in.

What the device did is the truth the review records: a step the device skipped is a skip even
if the detectors, a window later, call it clean (and vice versa a step it applied is reported as
a spike "found at the read"); rollback, LR back-off and abort act at the read.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from stabletrain import measure
from stabletrain.errors import ConfigError
from stabletrain.guard import clipping, device, reporting, verdict
from stabletrain.guard.outcome import StepOutcome
from stabletrain.guard.policy import Decision
from stabletrain.guard.ranklog import once_per_job
from stabletrain.guard.readout import is_distributed, rank_mean_loss, step_with_lr_factor

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard

log = once_per_job(logging.getLogger(__name__))


@dataclass(slots=True)
class Pending:
    """One step run on the device and not yet read."""

    outcome: StepOutcome
    row: torch.Tensor
    scheduled_lr: float
    has_loss: bool
    has_grads: bool
    clipped: bool
    forced: bool
    owns_loop: bool
    scaler_on: bool


class DeviceQueue:
    """The sync-free path's own state: the steps run on the device and not yet read, the spike
    limits the device compares against until the next read, and the scheduler steps owed for
    steps the device skipped (the scheduler stepped for them)."""

    def __init__(self) -> None:
        self.pending: list[Pending] = []
        self.limits: tuple[float, float] = (math.inf, math.inf)
        self.sched_debt = 0


def chosen(guard: Guard) -> bool:
    """Whether ``guard`` takes this path, decided once, at its first step."""
    if guard.sync_free is None:
        mode, opt = guard.config.sync_free, guard.inner_optimizer
        fused = device.supports_found_inf(opt)
        if mode == "on" and not fused:
            raise ConfigError(
                f"guard.sync_free='on' needs an optimizer that skips on the device: "
                f"torch.optim.Adam/AdamW/SGD/Adagrad(..., fused=True); got "
                f"{type(opt).__name__} (fused={opt.defaults.get('fused')})"
            )
        params = guard.params()
        on_cuda = bool(params) and params[0].device.type == "cuda"
        guard.sync_free = guard.config.enabled and (
            mode == "on" or (mode == "auto" and fused and on_cuda)
        )
        if guard.sync_free:
            log.info("guard: sync-free path, reading every %d steps", guard.config.read_every)
    return guard.sync_free


def device_step(
    guard: Guard,
    grads: list[torch.Tensor],
    params: list[torch.nn.Parameter],
    norm: torch.Tensor,
    owns_loop: bool,
    scaler_on: bool,
) -> StepOutcome:
    """Decide, clip and step on the device; queue the values; read them every ``read_every``."""
    cfg, opt = guard.config, guard.inner_optimizer
    dev = norm.device
    loss_t = guard.losses.take().tensor
    has_loss = loss_t is not None
    loss = loss_t.to(dev) if loss_t is not None else torch.zeros((), device=dev)
    loss_bad = (~torch.isfinite(loss)).to(torch.int32)
    dist_on = is_distributed()
    if dist_on:
        # every rank reduces, loss or not, so the collectives match (no host read)
        has = torch.full((), int(has_loss), dtype=torch.int32, device=dev)  # a fill, no copy
        flags = measure.any_rank_flag(torch.stack([loss_bad, has]))
        loss_bad = flags[0]
        loss = rank_mean_loss(loss)
    # a non-finite forward wrote into the BN statistics: put them back, on the device
    guard.buffers.restore_where(loss_bad)
    # a rollback's skips, for a loop without guard.batches()
    forced = not guard.in_batches and guard.recovery.pay()
    loss_limit, norm_limit = guard.queue.limits
    ok = device.ok_flag(
        loss if has_loss else None,
        loss_bad if cfg.skip_nonfinite else torch.zeros_like(loss_bad),
        norm,
        loss_limit=loss_limit,
        norm_limit=norm_limit,
        check_nonfinite=cfg.skip_nonfinite,
        forced_skip=forced,
        distributed=dist_on,
    )
    coef: torch.Tensor | None = None
    if cfg.clip == "agc":
        clipping.agc_(params, cfg.agc_clip)
    else:
        fixed = guard.ceiling.limit  # max_norm, raised on evidence at the reads (ceiling.py)
        ceiling: torch.Tensor | float = (
            fixed if cfg.clip != "none" and fixed is not None else math.inf
        )
        if guard.clipper is not None and guard.clipper.warming_up:
            if cfg.max_norm is None and cfg.warmup_max_norm is not None:
                ceiling = cfg.warmup_max_norm
        elif guard.clipper is not None:
            adaptive = guard.clipper.ceiling(norm)
            if isinstance(adaptive, torch.Tensor):
                ceiling = torch.clamp(adaptive, max=ceiling)
            else:
                ceiling = min(adaptive, ceiling)
        if grads and (isinstance(ceiling, torch.Tensor) or ceiling != math.inf):
            coef = device.clip_(grads, norm, ceiling)
    scale = None
    if scaler_on and guard.scaler is not None:
        # a copy: the scaler's update() below changes its scale tensor in place
        scale = device.live_scale(guard.scaler)
        scale = scale.clone() if scale is not None else None
    scheduled = guard.scheduled_lr()
    factor = guard.policy.lr_factor(scheduled)
    step_with_lr_factor(opt, guard.scaler, owns_loop, factor, ok=ok)
    if owns_loop and guard.scheduler is not None:
        if guard.queue.sched_debt > 0:
            guard.queue.sched_debt -= 1  # a step the device skipped earlier: hold the schedule
        else:
            guard.scheduler.step()
    outcome = StepOutcome(
        step=guard.step_count, applied=None, lr=scheduled * factor, scheduled_lr=scheduled
    )
    guard.queue.pending.append(
        Pending(
            outcome=outcome,
            row=device.row(loss if has_loss else None, norm, scale, loss_bad, ok, coef),
            scheduled_lr=scheduled,
            has_loss=has_loss,
            has_grads=bool(grads),
            clipped=coef is not None,
            forced=forced,
            owns_loop=owns_loop,
            scaler_on=scaler_on,
        )
    )
    guard.step_count += 1
    guard.last_outcome = outcome
    if len(guard.queue.pending) >= cfg.read_every:
        flush(guard)
    return outcome


def flush(guard: Guard) -> list[StepOutcome]:
    """Read the queued rows (the one host sync), review each in order; the outcomes resolved."""
    if not guard.queue.pending:
        return []
    pending, guard.queue.pending = guard.queue.pending, []
    # host sync: the one read per read_every steps on the sync-free path
    rows = torch.stack([p.row for p in pending]).tolist()
    guard.host_reads += 1
    out: list[StepOutcome] = []
    rolled_back = False
    for i, (p, values) in enumerate(zip(pending, rows, strict=True)):
        if rolled_back:
            _discarded(guard, p, values)
        else:
            rolled_back = _review(guard, p, values, last=i == len(pending) - 1)
        out.append(p.outcome)
    refresh_limits(guard)
    return out


def refresh_limits(guard: Guard) -> None:
    """The spike limits the device compares against until the next read."""
    cfg = guard.config
    acts = cfg.spike_action != "warn"
    loss = guard.loss_spikes.limit() if acts and cfg.spike_metric != "grad_norm" else math.inf
    norm = guard.grad_spikes.limit() if acts and cfg.spike_metric != "loss" else math.inf
    guard.queue.limits = (loss, norm)


def _fill(p: Pending, values: list[float]) -> tuple[float | None, float, bool, bool]:
    """Fill ``p.outcome``'s values from its row; (loss, norm, loss non-finite, applied)."""
    loss_raw, norm_v, scale_v, loss_bad_f, ok_f, coef = values
    loss_bad = loss_bad_f > 0
    loss_v = (math.nan if loss_bad else loss_raw) if p.has_loss else None
    applied = ok_f > 0
    o = p.outcome
    o.loss = loss_v
    o.grad_norm = norm_v if p.has_grads else None
    o.clip_coef = coef if applied and p.clipped else None
    o.loss_scale = scale_v if p.scaler_on else None
    return loss_v, norm_v, loss_bad, applied


def _review(guard: Guard, p: Pending, values: list[float], *, last: bool) -> bool:
    """The host half of one device step; True when it rolled back."""
    loss_v, norm_v, loss_bad, applied = _fill(p, values)
    step = p.outcome.step
    bad = verdict.classify(guard, step, loss_v, norm_v, loss_bad, p.scaler_on, p.has_grads)
    # the live weights are those after the window: a bad row after an applied one checks them
    damage = verdict.weight_damage(guard, bad, guard.params())
    decision, bad_action = verdict.judge(
        guard, step, bad, loss_bad, p.scheduled_lr, forced=p.forced and bad is None, damage=damage
    )
    if decision.verdict in ("apply", "warn") and not applied:
        # the device's limit (set at the previous read) was crossed; the detectors, which have
        # since seen the steps before this one, no longer call it a spike
        decision = Decision("skip", decision.backoff, "over the spike limit of the device")
        bad_action = bad_action or "skip_spike"
    elif decision.verdict == "skip" and applied:
        reason = f"{decision.reason}, found at the read after it was applied"
        decision = Decision("warn", decision.backoff, reason)
    if applied:
        guard.weights.applied()
    if decision.verdict == "apply":
        guard.observe_clean(norm_v, p.outcome.clip_coef, p.scheduled_lr)
    if not applied:
        guard.total_skipped += 1
        if p.owns_loop and guard.scheduler is not None:
            guard.queue.sched_debt += 1  # the scheduler stepped for it; hold one step later
    o = p.outcome
    o.action = reporting.report(guard, decision, step, None if applied else bad_action, loss_v, norm_v,
                             p.owns_loop)  # fmt: skip
    o.applied = applied and decision.verdict != "rollback"
    reporting.after_step(guard, o, decision.verdict, can_capture=last)
    return decision.verdict == "rollback"


def _discarded(guard: Guard, p: Pending, values: list[float]) -> None:
    """A step that ran after the one that triggered a rollback: its update was undone."""
    _fill(p, values)
    p.outcome.applied = False
    p.outcome.action = "rolled_back"
    guard.outcomes.resolve(p.outcome)
