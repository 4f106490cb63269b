"""Rollback: keeping snapshots, choosing the one to go back to, restoring it, backing off the LR.

The guard's acting half of the policy's "rollback" verdict, split out of ``guard.py`` by job:

- ``snapshot_ladder``, ``initial_snapshot``, ``target_for``: the guard's side of ``Recovery``
  (which owns the snapshots, the candidate and the skip debt; see ``recovery.py``).
- ``rollback``: restore model, optimizer, scaler, scheduler, RNG and the guard's statistics;
  rewind the step counter; ask ``guard.batches`` to drop the next M batches; log it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stabletrain.detectors.spikes import SpikeDetector
from stabletrain.guard.integrity import weight_norm
from stabletrain.guard.policy import Decision
from stabletrain.guard.snapshots import Snapshot

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard


def snapshot_state(guard: Guard) -> dict[str, Any]:
    """The guard's own part of a snapshot."""
    return {
        "step_count": guard.step_count,
        # the smoothed train loss of these weights: the best snapshot is kept by it
        "loss_ema": guard.divergence.smoothed,
        # the reference an exploded update is measured against (integrity.py)
        # (a CPU copy, read only when a bad step needs it)
        "weight_norm": weight_norm(guard.params()).to("cpu"),
        # the LR the restored state runs at first: the stable LR a back-off caps against
        "sched_lr": guard.scheduled_lr(),
        "clipper": guard.clipper.state_dict() if guard.clipper is not None else None,
        "loss_spikes": guard.loss_spikes.state_dict(),
        "grad_spikes": guard.grad_spikes.state_dict(),
    }


def capture(guard: Guard) -> Snapshot:
    """A snapshot of the live training state and the guard's part of it."""
    return guard.recovery.store.capture(
        guard.step_count, guard.model, guard.inner_optimizer, guard.scaler, guard.scheduler,
        snapshot_state(guard),
    )  # fmt: skip


def snapshot_ladder(guard: Guard, verdict: str, *, can_capture: bool = True) -> None:
    """Count one step toward the next snapshot (``Recovery.count``).

    ``can_capture=False``: the live weights are not this step's (the sync-free path reviews a
    window of steps after all of them ran): count, but capture only at the window's last step.
    """
    guard.recovery.count(
        verdict,
        quiet=not guard.policy.recently_bad,
        can_capture=can_capture,
        capture=lambda: capture(guard),
    )


def initial_snapshot(guard: Guard) -> None:
    """The state before the first update, the target of last resort (``Recovery``)."""
    guard.recovery.take_initial(lambda: capture(guard))


def target_for(guard: Guard, evidence: str | None) -> Snapshot | None:
    """The snapshot a rollback on ``evidence`` goes to."""
    return guard.recovery.target(evidence)


def rollback_target(guard: Guard) -> Snapshot | None:
    """The newest snapshot, unless rolling back to it already failed twice: then one older;
    the state before the first update when none was confirmed yet."""
    return guard.recovery.target()


def restore(guard: Guard, snap: Snapshot, *, scheduler: bool = True) -> None:
    """Load ``snap`` into the live model, optimizer, scaler (scheduler) and the guard's
    statistics, and forget the snapshots of the abandoned timeline."""
    # (a skipped step already called scaler.update(), resetting its per-step state, so the
    # snapshot's scale can be loaded over it)
    guard.recovery.store.restore(
        snap, guard.model, guard.inner_optimizer, guard.scaler,
        guard.scheduler if scheduler else None,
    )  # fmt: skip
    guard.recovery.restored(snap)
    if guard.clipper is not None and snap.guard.get("clipper") is not None:
        guard.clipper.load_state_dict(snap.guard["clipper"])
    for name in ("loss_spikes", "grad_spikes"):
        # the restored weights are judged against the baseline of their own time (a later,
        # lower loss baseline would flag them as a spike); the spike history is kept
        det: SpikeDetector = getattr(guard, name)
        episodes = det.episodes
        det.load_state_dict(snap.guard[name])
        det.episodes = episodes
    guard.buffers.save()  # the restored BN statistics are the good copy now
    guard.weights.pending = False
    guard.queue.sched_debt = 0
    guard.weights_checked = False  # re-verify the restored weights before the next step


def rollback(
    guard: Guard, step: int, decision: Decision, owns_loop: bool, *, skip: int | None = None
) -> None:
    """Restore the rollback target, rewind, schedule the batch skips, log (and the back-off).
    ``skip``: batches to drop (default ``rollback_skip_batches``; 0 when the cause is not the
    data, as for a divergence)."""
    snap = target_for(guard, decision.damage)
    assert snap is not None  # the policy rolls back only when a snapshot exists
    restore(guard, snap, scheduler=owns_loop)
    if decision.damage in ("loss-divergence", "startup-instability"):
        skip = 0 if skip is None else skip  # the cause is the LR, not the data
        guard.rebase_trend()
    if decision.damage == "startup-instability":
        # every update since the start is judged damaged: an evaluation of those weights is
        # no best to go back to (an eval rollback would restore the blown-up start)
        guard.evals.forget_best()
        guard.snapshots.best_eval = None
    cfg = guard.config
    skip = cfg.rollback_skip_batches if skip is None else skip
    guard.recovery.owe(skip)
    guard.event(
        "rollback",
        f"step {step}: {decision.reason}; rolled back to the snapshot of step {snap.step} "
        f"and skipping the next {skip} batches",
        "warning",
        {"from_step": step, "to_step": snap.step, "skip_batches": skip,
         "rollbacks": guard.policy.rollbacks, "evidence": decision.damage or "spikes"},
        step=step,
    )  # fmt: skip
    if decision.damage == "startup-instability":
        log_ramp(guard)
    elif decision.backoff:
        log_backoff(guard, snap)
    # after the events, so they sit at the step their messages name: our loop rewinds with
    # the scheduler; a framework keeps its own step numbering
    guard.step_count = int(snap.guard["step_count"]) if owns_loop else step + 1


def log_backoff(guard: Guard, snap: Snapshot | None) -> None:
    """The ``lr-backoff`` event: the new cap, what it is relative to, the re-warm."""
    cap, old = guard.policy.lr_cap or 0.0, guard.policy.cap_before
    where = f"the LR of step {snap.step}" if snap is not None else "the last clean step's LR"
    guard.event(
        "lr-backoff",
        f"LR capped at {cap:.4g} ({guard.config.lr_backoff_factor:g}x {where}"
        + (f", was capped at {old:.4g}" if old is not None else "")
        + f"), re-warming over {guard.config.lr_rewarm_steps} steps",
        "warning",
        {"old_cap": old, "new_cap": cap, "lr_scale": guard.policy.lr_scale,
         "rewarm_steps": guard.config.lr_rewarm_steps},
    )  # fmt: skip


def log_ramp(guard: Guard) -> None:
    """The ``lr-ramp`` event: the start-up rule's warm-up (and cap, on a later firing)."""
    cap, ref = guard.policy.lr_cap, guard.policy.lr_ref
    top = (
        f"the LR capped at {cap:.4g} (a ceiling: {cap / ref:.3g}x the LR {ref:.4g} the "
        "damage appeared at)"
        if cap is not None and ref
        else "the schedule's LR"
    )
    guard.event(
        "lr-ramp",
        f"LR ramped from ~0 to {top} over {guard.config.lr_rewarm_steps} steps (start-up "
        "instability: a warm-up the config lacks)",
        "warning",
        {"cap": cap, "rewarm_steps": guard.config.lr_rewarm_steps,
         "evidence": "startup-instability"},
    )  # fmt: skip
