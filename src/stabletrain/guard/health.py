"""The guard's health line: grad norm, clip rate, skips, rollbacks, loss scale and LR every N steps.

Accumulated from host floats the step already read (no extra sync); flushed to ``logging`` and as
a ``health`` event in the run log.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from stabletrain.guard.guard import StepOutcome
    from stabletrain.guard.policy import Policy


class Health:
    """Running counters since the last health line."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.norm_sum = 0.0
        self.norm_n = 0
        self.norm_max = 0.0
        self.clipped = 0
        self.skipped = 0
        self.last_lr: float | None = None
        self.last_scale: float | None = None

    def add(self, outcome: StepOutcome) -> None:
        self.n += 1
        gn = outcome.grad_norm
        if gn is not None and math.isfinite(gn):
            self.norm_sum += gn
            self.norm_n += 1
            self.norm_max = max(self.norm_max, gn)
        if outcome.clip_coef is not None and outcome.clip_coef < 1.0:
            self.clipped += 1
        if outcome.skipped:
            self.skipped += 1
        self.last_lr, self.last_scale = outcome.lr, outcome.loss_scale

    def flush(self, step: int, policy: Policy) -> tuple[str, dict[str, Any]]:
        mean = self.norm_sum / self.norm_n if self.norm_n else float("nan")
        data: dict[str, Any] = {
            "steps": self.n,
            "grad_norm_mean": round(mean, 6) if self.norm_n else None,
            "grad_norm_max": round(self.norm_max, 6),
            "clip_rate": round(self.clipped / max(self.n, 1), 4),
            "skipped": self.skipped,
            "rollbacks": policy.rollbacks,
            "lr_scale": policy.lr_scale,
            "lr": self.last_lr,
            "loss_scale": self.last_scale,
        }
        line = (
            f"guard step {step}: grad norm mean {mean:.4g} max {self.norm_max:.4g}, "
            f"clipped {data['clip_rate']:.0%}, skipped {self.skipped}/{self.n}, "
            f"rollbacks {policy.rollbacks}, lr {self.last_lr:.4g}"
            if self.last_lr is not None
            else f"guard step {step}: grad norm mean {mean:.4g}, skipped {self.skipped}/{self.n}"
        )
        if self.last_scale is not None:
            line += f", loss scale {self.last_scale:g}"
        self.reset()
        return line, data

    def state_dict(self) -> dict[str, Any]:
        return dict(vars(self))

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            setattr(self, k, v)
