"""StepOutcome: what the guard did on one optimizer step, as plain Python floats."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from stabletrain.records import StepRecord


@dataclass(slots=True)
class StepOutcome:
    """What the guard did on one optimizer step (plain Python floats).

    On the guard's sync-free path an outcome is returned *pending* (``applied`` is None, the
    values are None) and filled in at the next read of the device (``Guard.flush``).
    """

    step: int
    applied: bool | None
    action: str | None = None
    loss: float | None = None
    grad_norm: float | None = None
    clip_coef: float | None = None
    lr: float | None = None
    loss_scale: float | None = None
    #: the LR the schedule set (``lr`` is it times the guard's back-off factor)
    scheduled_lr: float | None = field(default=None, repr=False, compare=False)

    @property
    def resolved(self) -> bool:
        """False while the sync-free path has not read this step yet."""
        return self.applied is not None

    @property
    def skipped(self) -> bool:
        """True when the update was not applied (False while pending)."""
        return self.applied is False

    def to_record(self, epoch: float | None = None) -> StepRecord:
        return StepRecord(
            step=self.step,
            epoch=epoch,
            loss=self.loss,
            grad_norm=self.grad_norm,
            clip_coef=self.clip_coef,
            lr=self.lr,
            loss_scale=self.loss_scale,
            skipped=None if self.applied is None else not self.applied,
            action=self.action,
        )


class Outcomes:
    """The resolved outcomes not yet drained (the last 4096) and the LR the last one ran at."""

    def __init__(self) -> None:
        self.resolved: deque[StepOutcome] = deque(maxlen=4096)
        #: the LR of the last resolved step (an LR change is logged against it)
        self.last_lr: float | None = None
        #: the guard's share of it (``lr / scheduled_lr``): a change there is not the schedule's
        self.last_factor: float | None = None

    def resolve(self, outcome: StepOutcome) -> None:
        self.resolved.append(outcome)

    def drain(self) -> list[StepOutcome]:
        out = list(self.resolved)
        self.resolved.clear()
        return out

    def lr_change(
        self, lr: float | None, scheduled: float | None = None
    ) -> tuple[float | None, bool]:
        """Record ``lr`` (the schedule's ``scheduled`` x the guard's factor) as the latest; the
        previous LR, and whether the change is the schedule's alone (the factor did not move)."""
        factor = lr / scheduled if lr is not None and scheduled else None
        prev, self.last_lr = self.last_lr, lr
        before, self.last_factor = self.last_factor, factor
        by_schedule = (
            factor is not None and before is not None and math.isclose(factor, before, rel_tol=1e-6)
        )
        return prev, by_schedule
