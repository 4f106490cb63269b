"""What the guard records after a step: events, the outcome's action, run-level detectors,
the health line, LR changes, snapshots, and the abort with its diagnosis.

Functions over the Guard they serve, shared by both step paths (``immediate.py``,
``sync_free.py``); events go to ``logging`` and to the run log (``Guard.event``).
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

from stabletrain.errors import TrainingAborted
from stabletrain.guard import ceiling, rollback
from stabletrain.guard.outcome import StepOutcome
from stabletrain.guard.policy import Decision
from stabletrain.guard.precision import STOP_AFTER
from stabletrain.guard.ranklog import once_per_job
from stabletrain.guard.report import abort_finding

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard

log = once_per_job(logging.getLogger(__name__))


def report(
    guard: Guard, decision: Decision, step: int, action: str | None,
    loss_v: float | None, norm_v: float, owns_loop: bool,
) -> str | None:  # fmt: skip
    """Log the verdict's event (and act on a rollback); the outcome's ``action``."""
    verdict = decision.verdict
    data: dict[str, Any] = {"loss": loss_v, "grad_norm": norm_v}
    if verdict == "warn":
        guard.event("spike", f"step {step}: {decision.reason} (warn only)", "warning", data)
    elif verdict == "skip":
        guard.event("skip", f"step {step} skipped: {action} ({decision.reason})", "warning",
                     {**data, "action": action})  # fmt: skip
    elif verdict == "rollback":
        rollback.rollback(guard, step, decision, owns_loop)  # logs its own back-off
        return "rollback"
    if decision.backoff:  # a back-off without a snapshot to roll back to
        rollback.log_backoff(guard, None)
    return action


def after_step(
    guard: Guard, outcome: StepOutcome, verdict: str, *, can_capture: bool = True
) -> None:
    """Feed the run-level detectors and the health line, log LR changes, count toward the
    next snapshot. ``outcome`` is resolved; ``step_count`` already points past it."""
    record = outcome.to_record()
    guard.nonfinite.update(record)
    guard.clipping.update(record)
    amp = guard.loss_scale.update(record)
    if amp is not None:
        guard.findings.append(amp)
        guard.event("loss-scale-collapse", amp.title, "error", dict(amp.evidence))
    loss_bad = outcome.loss is not None and not math.isfinite(outcome.loss)
    action = guard.precision.observe(
        loss_nonfinite=loss_bad,
        skipped=bool(outcome.skipped),
        scale_collapsed=amp is not None and amp.id == "loss-scale-collapse",
    )
    if action == "fallback":
        guard.fall_back_precision(
            "a loss-scale collapse" if amp is not None else
            f"{guard.precision.patience} non-finite losses in a row under fp16"
        )  # fmt: skip
    elif action == "stop":
        decision = Decision(
            "abort",
            reason=f"the fp16 loss scale collapsed and {STOP_AFTER} more steps were skipped; "
            "the autocast dtype is not the guard's to change",
            damage="loss-scale-collapse",
        )
        abort(guard, decision, None, outcome.step)
    guard.health.add(outcome)
    if outcome.applied:
        guard.applied_updates += 1
    guard.last_outcome = outcome
    guard.outcomes.resolve(outcome)
    if guard.logs_steps and guard.run_log is not None:
        guard.run_log.log_step(outcome.to_record())
    log_lr(guard, outcome)
    rollback.snapshot_ladder(guard, verdict, can_capture=can_capture)
    ceiling.after_step(guard, outcome)
    he = guard.config.health_every
    if he and guard.health.n >= he:
        line, data = guard.health.flush(guard.step_count, guard.policy)
        log.info(line)
        if guard.run_log is not None:
            guard.run_log.log_event(guard.step_count, "health", line, severity="info", data=data)


def log_lr(guard: Guard, outcome: StepOutcome) -> None:
    """An ``lr-reduced`` event for a drop of 10% or more; rises go to the log only. The
    schedule's own changes (a cosine tail, a warm-up) are routine: DEBUG. The guard's (a cap
    after a back-off, its re-warm) are not: INFO, with the reason."""
    lr = outcome.lr
    prev, by_schedule = guard.outcomes.lr_change(lr, outcome.scheduled_lr)
    if prev is None or lr is None:
        return
    reason = "schedule" if by_schedule else "guard LR cap"
    if lr < 0.9 * prev:
        data = {"old": prev, "new": lr, "reason": reason}
        level = logging.DEBUG if by_schedule else logging.INFO
        message = f"learning rate {prev:.4g} → {lr:.4g} ({reason})"
        guard.event("lr-reduced", message, "info", data, level=level)
    elif lr > 1.5 * prev:
        reason = "schedule" if by_schedule else "guard re-warm after a back-off"
        log.log(logging.DEBUG if by_schedule else logging.INFO,
                "learning rate %.4g → %.4g (%s)", prev, lr, reason)  # fmt: skip


def abort(guard: Guard, decision: Decision, action: str | None, step: int) -> None:
    """Raise ``TrainingAborted`` with the diagnosis (what happened, what to change)."""
    finding = abort_finding(guard, decision.reason, action, step, damage=decision.damage)
    guard.findings.append(finding)
    guard.event("abort", finding.title, "error", {"reason": decision.reason})
    raise TrainingAborted(
        f"stabletrain guard aborted at step {step}: {finding.title}. {finding.explanation} "
        "What to change: " + "; ".join(f.description for f in finding.fixes),
        [finding],
        step=step,
    )
