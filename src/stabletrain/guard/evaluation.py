"""The eval rule: what the guard does with each evaluation (``Guard.observe_eval``).

A pure decision over the sequence of eval values, with its own state; the guard acts on it::

    better than the best by eval_min_delta x |best|          → "improved" (snapshot the weights)
    eval_worse_patience evals in a row worse than the best
      by more than eval_worse_margin x |best|                → "rollback" to the best-eval
                                                                snapshot, LR lowered
                                                                (at most eval_max_rollbacks times)
    eval_plateau_patience evals without a new best           → "plateau": LR capped at
                                                                eval_lr_factor x its current value
    otherwise                                                → None

The plateau rung acts sooner than a patience-10 ``ReduceLROnPlateau`` (seed 000: the scheduler
reduced 14 epochs after the plateau began) and only ever lowers the LR. The rollback rung is what
early stopping with "restore best weights" does, without stopping: the run goes on from its best
evaluation at a lower LR. Seeds 000, 001 and 003 are the runs it was written from.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

from stabletrain.errors import ConfigError
from stabletrain.guard.config import GuardConfig

EvalMode = Literal["min", "max"]
EvalAction = Literal["improved", "rollback", "plateau"]


@dataclass(slots=True)
class EvalVerdict:
    action: EvalAction | None
    reason: str = ""


class EvalWatch:
    """The best evaluation so far and the streaks measured against it."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.mode: EvalMode | None = None
        self.best: float | None = None
        self.best_index: int | None = None
        self.count = 0
        self.worse = 0  # evals in a row worse than the best by the margin
        self.stale = 0  # evals since the best (or since the last plateau action)
        self.rollbacks = 0

    def observe(self, value: float, mode: str = "min") -> EvalVerdict:
        """Judge one evaluation. ``mode``: "min" (a loss) or "max" (an accuracy)."""
        if mode not in ("min", "max"):
            raise ConfigError(f"observe_eval(mode={mode!r}): mode must be 'min' or 'max'")
        if self.mode is not None and mode != self.mode:
            raise ConfigError(
                f"observe_eval(mode={mode!r}) after evaluations with mode={self.mode!r}: one "
                "guard watches one metric"
            )
        self.mode = mode  # type: ignore[assignment]
        index = self.count
        self.count += 1
        if not math.isfinite(value):
            # a non-finite eval is the worst there is (BN poisoned, weights broken)
            value = math.inf if mode == "min" else -math.inf
        sign = 1.0 if mode == "min" else -1.0
        v = sign * value  # lower is better from here on
        cfg = self.config
        if self.best is None:
            self.best, self.best_index = v, index
            return EvalVerdict("improved", "first evaluation")
        scale = abs(self.best) if self.best != 0 else 1.0
        if v < self.best - cfg.eval_min_delta * scale:
            old, self.best, self.best_index = self.best, v, index
            self.worse = self.stale = 0
            return EvalVerdict("improved", f"best {sign * old:.4g} → {value:.4g}")
        self.stale += 1
        self.worse = self.worse + 1 if v > self.best + cfg.eval_worse_margin * scale else 0
        shown = sign * self.best
        if self.worse >= cfg.eval_worse_patience and self.rollbacks < cfg.eval_max_rollbacks:
            self.worse = self.stale = 0
            self.rollbacks += 1
            return EvalVerdict(
                "rollback",
                f"{cfg.eval_worse_patience} evaluations in a row worse than the best "
                f"({shown:.4g}, evaluation {self.best_index}) by more than "
                f"{cfg.eval_worse_margin:.0%}; the last {value:.4g}",
            )
        if cfg.eval_plateau_patience and self.stale >= cfg.eval_plateau_patience:
            self.stale = 0
            return EvalVerdict(
                "plateau",
                f"no evaluation improved on the best ({shown:.4g}, evaluation "
                f"{self.best_index}) for {cfg.eval_plateau_patience} evaluations",
            )
        return EvalVerdict(None)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "best": self.best,
            "best_index": self.best_index,
            "count": self.count,
            "worse": self.worse,
            "stale": self.stale,
            "rollbacks": self.rollbacks,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mode = state["mode"]
        self.best, self.best_index = state["best"], state["best_index"]
        self.count, self.worse = int(state["count"]), int(state["worse"])
        self.stale, self.rollbacks = int(state["stale"]), int(state["rollbacks"])
