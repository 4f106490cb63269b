"""Adapters that bring the guard to the frameworks people already train with.

Each adapter only translates a framework's hook arguments into the guard's API; the
backward → unscale → norm → checks → clip → step sequence lives in :mod:`stabletrain.guard` alone.

- :mod:`stabletrain.integrations.hf` — ``StableTrainCallback`` for ``transformers.Trainer``
- :mod:`stabletrain.integrations.lightning` — ``StableTrainCallback`` for ``lightning.pytorch.Trainer``
- :mod:`stabletrain.integrations.accelerate` — ``guard_for_accelerate`` for ``accelerator.prepare`` loops

This package imports nothing heavy: importing ``stabletrain.integrations`` never pulls in
transformers, lightning or accelerate; each submodule raises an ImportError with the ``pip``
command for its extra when the framework is missing.
"""

from __future__ import annotations

import dataclasses
import importlib
from types import ModuleType

from stabletrain.errors import ConfigError
from stabletrain.guard.config import GuardConfig

__all__ = ["immediate", "require"]


def immediate(config: GuardConfig | None, framework: str) -> GuardConfig:
    """``config`` with the guard reading every step: the frameworks read each step's outcome
    (and sync per step themselves), so the sync-free path is not offered through them."""
    config = config or GuardConfig()
    if config.sync_free == "on":
        raise ConfigError(
            f"guard.sync_free='on' is not supported through the {framework} integration (it "
            "reads every step's outcome); use 'auto' or 'off', or a hand-written loop with "
            "Guard.step"
        )
    return dataclasses.replace(config, sync_free="off")


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError saying which stabletrain extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"stabletrain.integrations needs {module!r}, which is not installed: "
            f"pip install 'stabletrain[{extra}]'"
        ) from exc
