"""The step's loss, accumulated over its micro-batches: the guard's reading of the loss.

``Guard.backward`` (or ``record_loss`` on the framework path) adds each micro-batch's loss; the
step takes the sum once (``take``), with whether any micro-batch was non-finite and, when every
micro-batch was already read on the host (the immediate path reads it before its backward), the
host value, so the step need not read it again.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(slots=True)
class StepLoss:
    """What ``LossReader.take`` hands the step."""

    tensor: torch.Tensor | None
    """The summed loss (detached, float32), None when no loss was recorded."""
    nonfinite: bool
    """A micro-batch's loss was read on the host and was NaN/inf."""
    host: float | None
    """The sum as already read on the host, None when some micro-batch was not read."""


class LossReader:
    """The current step's micro-batch losses."""

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.tensor: torch.Tensor | None = None
        self.nonfinite = False
        self.host: float | None = None
        self.host_known = True

    def add(self, loss: torch.Tensor | float, host: float | None) -> None:
        """One micro-batch's loss; ``host``: its value when already read."""
        t = loss.detach().float() if isinstance(loss, torch.Tensor) else torch.tensor(float(loss))
        self.tensor = t if self.tensor is None else self.tensor + t.to(self.tensor.device)
        if host is None:
            self.host_known = False
        else:
            self.host = host if self.host is None else self.host + host

    def mark_nonfinite(self) -> None:
        self.nonfinite = True

    def take(self) -> StepLoss:
        """The step's loss, and start the next step's."""
        out = StepLoss(self.tensor, self.nonfinite, self.host if self.host_known else None)
        self._clear()
        return out
