"""The verdict on one optimizer step: the live detectors, then the policy ladder.

Both step paths (``immediate.py``, ``sync_free.py``) turn a step's numbers into a ``Decision``
here: ``classify`` feeds the very detector objects the doctor replays logs with (non-finite,
fp16 overflow, loss/grad-norm spikes); ``decide`` asks the policy, telling it the LR known to be
stable (the rollback target's) and whether the scheduled LR rose since; ``judge`` adds the skips
a rollback asked for and aborts when the ladder says so. Functions over the Guard it serves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from stabletrain.guard import reporting, rollback
from stabletrain.guard.integrity import (
    Damage,
    eps_cause,
    eps_fixes,
    moved_since,
    raise_eps,
)
from stabletrain.guard.policy import Bad, Decision
from stabletrain.records import StepRecord

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard


def judge(
    guard: Guard,
    step: int,
    bad: Bad | None,
    loss_bad: bool,
    scheduled_lr: float,
    *,
    forced: bool,
    damage: WeightDamage | None = None,
) -> tuple[Decision, str | None]:
    """The verdict on a classified step and the action a skip records; aborts when the
    ladder says so. ``forced``: a clean step whose update a rollback asked to skip (a loop
    without ``guard.batches()``: skipping its update has the same effect on the weights).
    ``damage``: the weights after the last applied update are broken (``weight_damage``)."""
    if forced:
        decision = Decision("skip", reason="batch skipped after a rollback")
        action: str | None = "skip_spike"
    elif damage is not None:
        decision, action = judge_damage(guard, step, damage), action_name(bad, loss_bad)
    else:
        decision, action = decide(guard, bad, scheduled_lr), action_name(bad, loss_bad)
    if decision.verdict == "abort":
        reporting.abort(guard, decision, action, step)
    if decision.rebase:
        guard.rebase_loss_spikes()
        guard.data_shift_step = step
        guard.event("loss-level", f"step {step}: {decision.reason}", "warning",
                    {"evidence": "spikes-without-damage"})  # fmt: skip
    return decision, action


@dataclass(slots=True)
class WeightDamage:
    """What the post-update check found: the kind, the weights' norm, the reference norm."""

    kind: Damage
    norm: float
    reference: float | None

    def evidence(self, step: int) -> str:
        if self.kind == "nonfinite-weights":
            return f"the weights hold NaN/inf after the update before step {step}"
        ratio = self.norm / self.reference if self.reference else math.inf
        return (
            f"the weights exploded after the update before step {step} (norm {self.norm:.3g}, "
            f"{ratio:.3g}x the snapshot's)"
        )


def weight_damage(
    guard: Guard, bad: Bad | None, params: list[torch.nn.Parameter]
) -> WeightDamage | None:
    """The post-update check, on a bad step that follows an applied update only."""
    if bad is None or not guard.config.enabled:
        return None
    target = rollback.rollback_target(guard)
    ref_t = target.guard.get("weight_norm") if target is not None else None
    ref = float(ref_t) if ref_t is not None else None  # a CPU tensor: no device sync
    kind, norm = guard.weights.judge(params, ref)
    if kind is None or norm is None:
        return None
    return WeightDamage(kind, norm, ref)


def judge_damage(guard: Guard, step: int, damage: WeightDamage) -> Decision:
    """Roll back (the update is undone) and lower the LR. With a known cause that a lower LR
    cannot fix (fp16 weights under Adam's eps, 0 in fp16): undo the update, raise eps to a
    value fp16 holds (logged, with the better fixes), and go on; a second time, the ladder."""
    target = rollback.rollback_target(guard)
    evidence = damage.evidence(step)
    cause = eps_cause(guard.inner_optimizer) if damage.kind == "nonfinite-weights" else None
    if cause is not None and target is not None:
        # the optimizer's state_dict carries eps: restore first, then raise it
        rollback.restore(guard, target, scheduler=False)
        fixes = eps_fixes(guard.inner_optimizer)
        (old, new), *_ = raise_eps(guard.inner_optimizer)
        better = " Better: " + " ".join(fixes[:2]) if len(fixes) > 1 else ""
        guard.event(
            "optimizer-eps",
            f"step {step}: {evidence}: {cause}. The update was undone and eps raised "
            f"{old:g} → {new:g}.{better}",
            "warning",
            {"old": old, "new": new, "evidence": damage.kind},
        )
        return Decision("skip", reason=f"{evidence} (undone; eps raised)", damage=damage.kind)
    if target is None and damage.kind == "nonfinite-weights":
        return Decision(
            "abort", reason=f"{evidence}: {cause or 'no snapshot to restore'}", damage=damage.kind
        )
    stable = (
        float(target.guard.get("sched_lr") or guard.scheduled_lr())
        if target is not None
        else guard.scheduled_lr()
    )
    decision = guard.policy.damage(evidence, can_rollback=target is not None, stable_lr=stable)
    decision.damage = damage.kind
    return decision


def decide(guard: Guard, bad: Bad | None, scheduled_lr: float) -> Decision:
    """The policy's verdict, told which LR was last stable and whether the LR rose since."""
    if bad is None:
        return guard.policy.decide(None, can_rollback=False)
    if bad == "startup":
        # the first firing ramps from ~0 to the schedule; a later one caps at the LR it hit
        ran = scheduled_lr * guard.policy.lr_factor(scheduled_lr)
        target = rollback.rollback_target(guard)
        if guard.startup.rule == "early-best":
            moved = guard.startup.moved  # read by overshoot_confirmed on this very step
        else:
            moved = moved_since(guard.model, target.model) if target is not None else None
        unproven = moved is None and guard.startup.rule == "early-best"
        if unproven or (moved is not None and moved < guard.startup.moved_needed):
            # the updates barely changed the weights: they cannot have raised the loss. The
            # reference was one lucky low loss (batch-1 jitter), or the data's: no LR to blame.
            # (The early-best rule needs the init gone: a rise with less is jitter)
            guard.startup.not_the_updates()
            return guard.policy.decide(None, can_rollback=False)
        if guard.startup.fires > 1:
            # the ramp's top is too high: cap it (no rollback: the weights are the ramp's)
            evidence = (
                f"start-up ramp: the smoothed loss turned up ({guard.startup.last:.4g}) at LR "
                f"{ran:.4g}"
            )
            return guard.policy.ramp(evidence, cap_at=ran, can_rollback=False)
        # the steps that did the damage ran at `ran`: it is a ceiling from now on (the ramp
        # climbs to lr_backoff_factor x it, never back to the LR that blew up)
        evidence = guard.startup.evidence(guard.startup.last) + f" at LR {ran:.4g}"
        if moved is not None:
            evidence += f", the weights {moved:.0%} away from step {target.step}'s"  # type: ignore[union-attr]
        factor = guard.startup.ceiling_factor(moved, guard.config.lr_backoff_factor)
        return guard.policy.ramp(
            evidence, cap_at=ran, can_rollback=target is not None, factor=factor
        )
    if bad == "divergence":
        target = rollback.target_for(guard, "loss-divergence")
        ep = guard.divergence.episodes[-1]
        recent, slow = guard.recent_loss.value, float(ep["loss_ema"])
        passed: tuple[str, dict[str, Any]] | None = None
        if math.isfinite(recent) and recent < (slow + ep["best"]) / 2.0:
            # the smoothed loss lags: the recent losses have already come more than halfway
            # back to the best (a burst of bad data that has passed, the weights healing), so
            # there is no current damage to undo, nor an LR to blame
            passed = (f"the recent losses ({recent:.4g}) are already more than halfway back",
                      {"recent": recent})  # fmt: skip
        elif guard.evals.holds(guard.step_count, guard.divergence.patience):
            # the evaluations during the climb are no worse than their best: the weights are
            # not what got worse. The train loss's best came from easier batches (a shard of
            # blank or repeated inputs), so coming back from it is no lost progress
            passed = ("the latest evaluation is no worse than the best: the data changed, not "
                      "the model", {"eval_holds": True})  # fmt: skip
        if passed is not None:
            why, extra = passed
            guard.event(
                "divergence-passed",
                f"the smoothed loss gave back {ep['given_back']:.0%} of its progress (now "
                f"{slow:.4g}, best {ep['best']:.4g} at step {ep['best_step']}), but {why}: "
                "no action",
                "info",
                {"smoothed": slow, "best": ep["best"], "evidence": "loss-divergence", **extra},
            )
            return guard.policy.decide(None, can_rollback=False)
        stable = float(target.guard.get("sched_lr") or scheduled_lr) if target else scheduled_lr
        decision = guard.policy.damage(
            f"the smoothed loss gave back {ep['given_back']:.0%} of its progress (start "
            f"{ep['start']:.4g}, best {ep['best']:.4g} at step {ep['best_step']}, now "
            f"{ep['loss_ema']:.4g}) for {guard.divergence.patience} steps",
            can_rollback=target is not None,
            stable_lr=stable,
        )
        decision.damage = "loss-divergence"
        return decision
    target = rollback.rollback_target(guard)
    stable = (
        float(target.guard.get("sched_lr") or scheduled_lr)
        if target is not None
        else (guard.last_clean_lr or scheduled_lr)
    )
    return guard.policy.decide(
        bad,
        can_rollback=target is not None,
        stable_lr=stable,
        lr_rose=scheduled_lr > guard.config.lr_rise_ratio * stable,
        # the smoothed clean loss has already given back part of its progress, and no
        # evaluation within the spikes' window says the model held (if one does, the data's
        # loss level moved: an input pipeline that changed scale, a harder shard)
        damaged=guard.divergence.above > 0
        and not guard.evals.holds(guard.step_count, guard.config.escalate_window),
    )


def classify(
    guard: Guard,
    step: int,
    loss_v: float | None,
    norm_v: float,
    loss_bad: bool,
    scaler_on: bool,
    has_grads: bool,
) -> Bad | None:
    """What is wrong with this step, if anything: non-finite, fp16 overflow, or a spike."""
    cfg = guard.config
    if loss_bad and cfg.skip_nonfinite:
        return "nonfinite"
    grad_bad = has_grads and not math.isfinite(norm_v)
    if grad_bad and cfg.skip_nonfinite:
        # fp16: inf grads with a finite loss are the scaler's range probing, not divergence
        return "overflow" if scaler_on else "nonfinite"
    fired = not loss_bad and not grad_bad and guard.startup.observe(step, loss_v) is not None
    if fired and (guard.startup.rule == "first-loss" or overshoot_confirmed(guard)):
        return "startup"
    spike = False
    rec = StepRecord(step=step, loss=loss_v, grad_norm=norm_v if has_grads else None)
    if cfg.spike_metric in ("loss", "both") and guard.loss_spikes.update(rec) is not None:
        spike = True
    grad_spike = guard.grad_spikes.update(rec) is not None  # always fed: reported by finish()
    if cfg.spike_metric in ("grad_norm", "both") and grad_spike:
        spike = True
    if spike:
        return "spike"
    if loss_v is not None and math.isfinite(loss_v):
        guard.recent_loss.add(loss_v)
        if guard.startup.observe_ramp(guard.policy.ramping, guard.recent_loss.value):
            return "startup"
    trend = guard.divergence.update(rec)  # clean steps only: a skipped loss is no evidence
    if trend is not None and cfg.divergence_fraction is not None:
        return "divergence"
    return None


def overshoot_confirmed(guard: Guard) -> bool:
    """The overshoot rule's weight check: the updates moved the weights at least
    ``OVERSHOOT_MOVED`` x their norm from the rollback target (the state before the first
    update). Otherwise the rise was jitter: forgotten, and the step is judged as any other
    (its loss still feeds the spike and trend detectors). One read of every weight, at most
    every ``CHECK_EVERY`` steps of the start-up window."""
    target = rollback.rollback_target(guard)
    # host sync: a copy of every weight to the CPU, only on such a check (start-up window);
    # the step's decision (``decide``) reuses the distance instead of copying them again
    moved = moved_since(guard.model, target.model) if target is not None else None
    return guard.startup.checked(moved)


def action_name(bad: object, loss_bad: bool) -> str | None:
    """The ``action`` a skipped step records in the run log."""
    if bad is None:
        return None
    if bad in ("spike", "divergence", "startup"):
        return "skip_spike"
    return "skip_nonfinite_loss" if loss_bad else "skip_nonfinite_grad"
