"""StepOutcome: what the guard did on one optimizer step, as plain Python floats."""

from __future__ import annotations

from dataclasses import dataclass

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
