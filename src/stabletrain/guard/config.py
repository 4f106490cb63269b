"""GuardConfig: every knob of the guard, typed and documented, with presets.

MINIMAL VERSION (foundation): the guard issue extends this with spike detection, rollback,
LR back-off, abort thresholds, adaptive clipping and AMP policy. Field names here are binding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from stabletrain.errors import ConfigError

ClipMode = Literal["none", "norm", "zscore", "percentile", "agc"]
Preset = Literal["default", "conservative", "off"]


@dataclass(kw_only=True)
class GuardConfig:
    """How the guard protects each optimizer step."""

    enabled: bool = True
    """False: the guard only runs the plain backward → unscale → clip → step sequence."""
    clip: ClipMode = "norm"
    """Clipping mode: none, fixed max-norm, adaptive z-score, percentile, or AGC."""
    max_norm: float | None = 1.0
    """Max global grad norm for ``clip="norm"`` (and the hard ceiling for adaptive modes)."""
    skip_nonfinite: bool = True
    """Skip the update (optimizer state untouched) when the loss or a gradient is NaN/inf."""
    max_consecutive_bad: int = 20
    """Abort with a diagnosis after this many consecutive skipped steps."""
    check_init: bool = True
    """Verify every parameter and buffer is finite before the first step."""
    health_every: int = 100
    """Emit a health line (grad norm, clip rate, skips, scale, LR) every N steps; 0 = never."""

    def __post_init__(self) -> None:
        if self.max_norm is not None and not self.max_norm > 0:
            raise ConfigError(f"guard.max_norm must be > 0 or None, got {self.max_norm!r}")
        if self.max_consecutive_bad < 1:
            raise ConfigError(
                f"guard.max_consecutive_bad must be >= 1, got {self.max_consecutive_bad!r}"
            )

    @classmethod
    def preset(cls, name: Preset, **overrides: object) -> GuardConfig:
        """``"default"`` (on), ``"conservative"`` (tighter), ``"off"`` (plain step only)."""
        if name == "default":
            base: dict[str, object] = {}
        elif name == "conservative":
            base = {"max_norm": 0.5, "max_consecutive_bad": 10}
        elif name == "off":
            base = {"enabled": False, "clip": "none", "max_norm": None, "check_init": False}
        else:
            raise ConfigError(
                f"unknown guard preset {name!r}; allowed: 'default', 'conservative', 'off'"
            )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]
