"""stabletrain: keep PyTorch training runs stable.

Public API: :class:`Guard` and :class:`GuardConfig` (protect each optimizer step),
:func:`diagnose` (read a run's logs and config, return a Report), :func:`lint` (findings from a
config alone), and the records they speak: :class:`Finding`, :class:`StepRecord`.

Heavy parts import lazily, so ``import stabletrain`` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stabletrain.errors import (
    CheckpointError,
    ConfigError,
    LogReadError,
    StableTrainError,
    TrainingAborted,
)
from stabletrain.records import ConfigFacts, Finding, StepRecord

__version__ = "0.1.0"

_LAZY = {
    "Guard": ("stabletrain.guard.guard", "Guard"),
    "GuardConfig": ("stabletrain.guard.config", "GuardConfig"),
    "StepOutcome": ("stabletrain.guard.guard", "StepOutcome"),
    "RunLog": ("stabletrain.logs.runlog", "RunLog"),
    "Report": ("stabletrain.report.model", "Report"),
    "diagnose": ("stabletrain.doctor", "diagnose"),
    "lint": ("stabletrain.lint", "lint"),
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConfigFacts",
    "Finding",
    "Guard",
    "GuardConfig",
    "LogReadError",
    "Report",
    "RunLog",
    "StableTrainError",
    "StepOutcome",
    "StepRecord",
    "TrainingAborted",
    "__version__",
    "diagnose",
    "lint",
]

if TYPE_CHECKING:
    from stabletrain.doctor import diagnose
    from stabletrain.guard.config import GuardConfig
    from stabletrain.guard.guard import Guard, StepOutcome
    from stabletrain.lint import lint
    from stabletrain.logs.runlog import RunLog
    from stabletrain.report.model import Report


def __dir__() -> list[str]:
    """List the lazily imported names too, so ``dir(stabletrain)`` and tab completion show
    ``Guard``, ``RunLog``... before their first use."""
    return sorted(set(globals()) | set(__all__))


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stabletrain' has no attribute {name!r}")
