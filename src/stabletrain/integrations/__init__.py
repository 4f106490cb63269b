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

import importlib
from types import ModuleType

__all__ = ["require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise an ImportError saying which stabletrain extra installs it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(
            f"stabletrain.integrations needs {module!r}, which is not installed: "
            f"pip install 'stabletrain[{extra}]'"
        ) from exc
