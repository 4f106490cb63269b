"""Per-epoch running statistics and the epoch summary line (loss, accuracy, grad norm, LR)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class EpochStats:
    loss_sum: float = 0.0
    loss_n: int = 0
    acc_sum: float = 0.0
    steps: int = 0
    gn_sum: float = 0.0
    gn_n: int = 0
    gn_max: float = 0.0
    nonfinite: int = 0
    skipped: int = 0
    acc_n: int = 0
    lr: float | None = None
    last_loss: float = math.nan  # the latest logged step's loss (the progress bar shows it)

    def add(
        self,
        loss: float | None,
        acc: float,
        grad_norm: float | None,
        lr: float | None,
        skipped: bool = False,
    ) -> None:
        """One optimizer step. A step the guard skipped is counted, not averaged: its loss and
        norm come from a batch that never reached the weights (a 1e6-scaled batch would make
        the epoch's mean loss 5000)."""
        self.steps += 1
        self.lr = lr
        self.last_loss = loss if loss is not None else math.nan
        if loss is None or not math.isfinite(loss):
            self.nonfinite += 1
        if skipped:
            self.skipped += 1
            return
        self.acc_sum += acc
        self.acc_n += 1
        if loss is not None and math.isfinite(loss):
            self.loss_sum += loss
            self.loss_n += 1
        if grad_norm is not None and math.isfinite(grad_norm):
            self.gn_sum += grad_norm
            self.gn_n += 1
            self.gn_max = max(self.gn_max, grad_norm)

    def line(self, epoch: int, epochs: int) -> str:
        loss = self.loss_sum / self.loss_n if self.loss_n else math.nan
        acc = self.acc_sum / self.acc_n if self.acc_n else math.nan
        gn = self.gn_sum / self.gn_n if self.gn_n else math.nan
        lr = f"{self.lr:.3e}" if self.lr is not None else "-"
        bad = f"  non-finite steps {self.nonfinite}" if self.nonfinite else ""
        if self.skipped:
            bad += f"  skipped {self.skipped} (not in the means)"
        return (
            f"epoch {epoch}/{epochs}: loss {loss:.4f}  accuracy {acc:.2%}  "
            f"grad-norm mean {gn:.3f} max {self.gn_max:.3f}  lr {lr}{bad}"
        )

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
