"""The guard's metrics under one set of names for every adapter, for the user's own logger.

HF (``logs`` in ``on_log``), Lightning (``pl_module.log_dict``) and Accelerate
(``accelerator.log``) each hand :meth:`GuardMetrics.update`'s dict to the framework's logging, so
TensorBoard, W&B, MLflow or CSV show the same ``stabletrain/...`` keys whichever framework ran:

- ``stabletrain/grad_norm``: the step's global gradient norm before clipping (NaN when non-finite)
- ``stabletrain/clipped``: 1 when the guard clipped this step; ``stabletrain/clip_rate``: the
  fraction of steps clipped so far
- ``stabletrain/skipped``: 1 when the update was not applied; ``stabletrain/skips``: skips so far
- ``stabletrain/rollbacks``: rollbacks so far
- ``stabletrain/lr``: the LR the step ran at (the schedule's, times any guard cap)
- ``stabletrain/loss_scale``: the GradScaler's scale (only under fp16 AMP)

Host floats the step already read: no device sync.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stabletrain.guard.outcome import StepOutcome

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard

PREFIX = "stabletrain/"
__all__ = ["PREFIX", "GuardMetrics"]


class GuardMetrics:
    """Counts steps and clipped steps; turns each resolved outcome into the metric dict."""

    def __init__(self) -> None:
        self.steps = 0
        self.clipped = 0

    def update(self, guard: Guard, outcome: StepOutcome) -> dict[str, float]:
        """The metrics of ``outcome`` (a resolved step of ``guard``), counted once per call."""
        clipped = outcome.clip_coef is not None and outcome.clip_coef < 1.0
        self.steps += 1
        self.clipped += clipped
        out = {
            "grad_norm": float("nan") if outcome.grad_norm is None else outcome.grad_norm,
            "clipped": float(clipped),
            "clip_rate": self.clipped / self.steps,
            "skipped": float(bool(outcome.skipped)),
            "skips": float(guard.total_skipped),
            "rollbacks": float(guard.policy.rollbacks + guard.evals.rollbacks),
        }
        if outcome.lr is not None:
            out["lr"] = outcome.lr
        if outcome.loss_scale is not None:
            out["loss_scale"] = outcome.loss_scale
        return {PREFIX + k: v for k, v in out.items()}
