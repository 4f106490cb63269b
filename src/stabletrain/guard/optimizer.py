"""GuardedOptimizer: the guard as an optimizer, for frameworks that own backward and unscaling."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard
    from stabletrain.guard.outcome import StepOutcome


class GuardedOptimizer(torch.optim.Optimizer):
    """The guard as an optimizer: ``step()`` measures, decides, clips, then steps or skips.

    For frameworks that run backward and unscaling themselves. It does not advance any scheduler
    (the framework does); ``step_was_skipped`` tells the framework whether it should. Call
    ``guard.record_loss(loss)`` each step to enable loss-spike detection on this path.
    """

    def __init__(self, guard: Guard) -> None:  # deliberately no super().__init__: a thin proxy
        self._guard = guard
        self.step_was_skipped = False
        #: called with each step's outcome, for an adapter whose framework has no hook there
        #: (accelerate: step the scheduler on applied steps, log the guard's metrics)
        self.after_step: Callable[[StepOutcome], None] | None = None

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self._guard.inner_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self._guard.inner_optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self._guard.inner_optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self._guard.inner_optimizer.defaults

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        if loss is not None:
            self._guard.record_loss(loss)  # type: ignore[arg-type]
        outcome = self._guard.check_and_step(owns_loop=False)
        self.step_was_skipped = outcome.skipped
        if self.after_step is not None:
            self.after_step(outcome)
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._guard.inner_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self._guard.inner_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._guard.inner_optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._guard.inner_optimizer.add_param_group(param_group)

    def __repr__(self) -> str:
        return f"GuardedOptimizer({self._guard.inner_optimizer!r})"
