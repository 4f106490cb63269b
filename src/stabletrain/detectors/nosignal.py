"""``no-learning``: a gradient norm of exactly 0 on every logged training step — nothing moves.

axolotl#2357 (round 6): ``'loss': 0.0, 'grad_norm': 0.0`` on all eleven logged steps of a full
fine-tune. A clipped, skipped or tiny gradient still prints a positive norm; exactly 0 on every
step means no gradient reaches any trained weight: the loss has no terms (every label masked to the
ignore index, an empty loss mask, a loss multiplied by 0) or every parameter is frozen. The run
spends its compute and changes nothing, whatever the loss reads.

Rule: at least ``MIN_RECORDS`` training records carry a gradient norm, every one of them exactly
0.0, none flagged as a skipped step (a mixed-precision scaler's overflow step reports 0 and is no
evidence), and the loss the same number on every one of at least as many records (0.0 there). One
positive or non-finite norm anywhere in the log and there is no finding; nor when the loss moves:
a falling loss with zero norms is a norm that was not measured (a logger's placeholder), not a
model that does not learn.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

__all__ = ["MIN_RECORDS", "NoLearningDetector"]

_COUNTS = ("n_grad", "n_other", "n_loss", "n_loss_zero", "n_loss_moved")

#: training records with a gradient norm needed before all-zero norms are a pattern
MIN_RECORDS = 5


class NoLearningDetector:
    """Every logged gradient norm exactly zero (``no-learning``)."""

    ids: tuple[str, ...] = ("no-learning",)

    def __init__(self, min_records: int = MIN_RECORDS) -> None:
        self.min_records = min_records
        self.n_grad = 0  # train records with a gradient norm (not skipped)
        self.n_other = 0  # of those, a norm that is not exactly 0 (positive, NaN, inf)
        self.n_loss = 0  # train records with a loss
        self.n_loss_zero = 0  # of those, exactly 0
        self.n_loss_moved = 0  # of those, not equal to the first loss (or not a number)
        self.loss0: float | None = None  # the first loss
        self.first_step: int | None = None
        self.last_step: int | None = None

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        if record.loss is not None:
            if self.loss0 is None:
                self.loss0 = record.loss
            self.n_loss += 1
            self.n_loss_zero += record.loss == 0.0
            self.n_loss_moved += record.loss != self.loss0  # NaN counts as moved
        g = record.grad_norm
        if g is None or record.skipped:
            return None
        self.n_grad += 1
        if g != 0.0:
            self.n_other += 1
        if self.first_step is None:
            self.first_step = record.step
        self.last_step = record.step
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        train = batch.train
        loss = batch.floats("loss")
        has_loss = train & _present(batch.none("loss"))
        values = loss[has_loss]
        if values.size:
            if self.loss0 is None:
                self.loss0 = batch.take("loss", np.flatnonzero(has_loss)[:1])[0]
            self.n_loss += int(values.size)
            self.n_loss_zero += int((values == 0.0).sum())
            self.n_loss_moved += int((~(values == self.loss0)).sum())
        g = batch.floats("grad_norm")
        skipped = batch.floats("skipped") == 1.0  # None (NaN) and False are not skipped
        has = train & _present(batch.none("grad_norm")) & ~skipped
        idx = np.flatnonzero(has)
        if idx.size == 0:
            return
        self.n_grad += int(idx.size)
        self.n_other += int((g[idx] != 0.0).sum())  # NaN != 0 too, as in ``update``
        steps = batch.take("step", idx[[0, -1]])
        if self.first_step is None:
            self.first_step = steps[0]
        self.last_step = steps[-1]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if self.n_grad < self.min_records or self.n_other:
            return []
        if self.n_loss < self.min_records or self.n_loss_moved:
            return []
        all_zero_loss = self.n_loss_zero == self.n_loss
        cause = (
            "the loss is exactly 0 on every step too: it has no terms to learn from — every label "
            "masked to the ignore index (-100), an empty loss mask, or a loss multiplied by 0"
            if all_zero_loss
            else "no gradient reaches the weights that are trained: every parameter frozen, the "
            "loss detached from the graph, or the optimizer given other tensors than the model's"
        )
        return [
            Finding(
                id="no-learning",
                severity="error",
                title=(
                    f"Nothing is learned: the gradient norm is exactly 0 on all {self.n_grad} "
                    "logged steps"
                    + (
                        " and the loss is exactly 0"
                        if all_zero_loss
                        else f" and the loss stays at {self.loss0}"
                    )
                ),
                explanation=(
                    f"Every one of the {self.n_grad} logged gradient norms (steps "
                    f"{self.first_step}–{self.last_step}) is exactly 0. A small, clipped or "
                    "skipped gradient still prints a positive norm; exactly 0 on every step means "
                    f"no weight is updated, so the run changes nothing: {cause}. Check the batch "
                    "the model sees (labels not all ignored) and which parameters require "
                    "gradients before anything else; afterwards the first logged gradient norm "
                    "should be positive."
                ),
                steps=[s for s in (self.first_step, self.last_step) if s is not None],
                evidence={
                    "zero_grad_norms": self.n_grad,
                    "losses": self.n_loss,
                    "zero_losses": self.n_loss_zero,
                },
                fixes=[
                    Fix(
                        "Check that some labels are not ignored and that the trained parameters "
                        "require gradients",
                        code="batch = next(iter(train_dataloader))\n"
                        "print((batch['labels'] != -100).sum())  # > 0\n"
                        "print(sum(p.numel() for p in model.parameters() if p.requires_grad))  # > 0",
                    )
                ],
                related=["chance-level", "nonfinite-loss"],
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in (*_COUNTS, "loss0", "first_step", "last_step")}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in _COUNTS:
            setattr(self, k, int(state.get(k, 0)))
        self.loss0 = state.get("loss0")
        self.first_step = state.get("first_step")
        self.last_step = state.get("last_step")


def _present(none: np.ndarray | None) -> np.ndarray | bool:
    """Where a field holds a value (NaN included), from its None mask."""
    return True if none is None else ~none
