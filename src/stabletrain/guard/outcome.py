"""StepOutcome: what the guard did on one optimizer step, as plain Python floats."""

from __future__ import annotations

from dataclasses import dataclass

from stabletrain.records import StepRecord


@dataclass(slots=True)
class StepOutcome:
    """What the guard did on one optimizer step (plain Python floats)."""

    step: int
    applied: bool
    action: str | None = None
    loss: float | None = None
    grad_norm: float | None = None
    clip_coef: float | None = None
    lr: float | None = None
    loss_scale: float | None = None

    def to_record(self, epoch: float | None = None) -> StepRecord:
        return StepRecord(
            step=self.step,
            epoch=epoch,
            loss=self.loss,
            grad_norm=self.grad_norm,
            clip_coef=self.clip_coef,
            lr=self.lr,
            loss_scale=self.loss_scale,
            skipped=not self.applied,
            action=self.action,
        )
