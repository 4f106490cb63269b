"""The stabletrain exception hierarchy.

::

    StableTrainError                 base of everything raised on purpose
    ├── ConfigError                  a config file or value is invalid (names file, key, allowed values)
    ├── LogReadError                 a log cannot be read at all (names the file and the reason)
    ├── CheckpointError              a checkpoint is missing, partial or incompatible
    └── TrainingAborted              the guard stopped the run; carries the diagnosis (Findings)

Errors name the bad value, what is allowed, and the fix. User input is never checked with
``assert``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stabletrain.records import Finding


class StableTrainError(Exception):
    """Base class of every error stabletrain raises on purpose."""


class ConfigError(StableTrainError, ValueError):
    """A config file, key or value is invalid."""


class LogReadError(StableTrainError):
    """A log file or run directory cannot be read."""


class CheckpointError(StableTrainError):
    """A checkpoint is missing, partial or does not match the run."""


class TrainingAborted(StableTrainError):
    """The guard stopped the run; ``findings`` says why and what to change."""

    def __init__(
        self, message: str, findings: list[Finding] | None = None, step: int | None = None
    ):
        super().__init__(message)
        self.findings: list[Finding] = list(findings or [])
        self.step = step
