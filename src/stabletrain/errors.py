"""The stabletrain exception hierarchy.

::

    StableTrainError                 base of everything raised on purpose
    ├── ConfigError                  a config file or value is invalid (names file, key, allowed values)
    ├── LogReadError                 a log cannot be read at all (names the file and the reason)
    ├── CheckpointError              a checkpoint is missing, partial or incompatible
    └── TrainingAborted              the guard stopped the run; carries the diagnosis (Findings)

Errors name the bad value, what is allowed, and the fix. User input is never checked with
``assert``.

:class:`ExitCode` is the one table of the CLI's exit codes (the same for every command).
"""

from __future__ import annotations

from enum import IntEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from stabletrain.records import Finding


class ExitCode(IntEnum):
    """What ``stabletrain COMMAND`` returns; one table for every command.

    ======  ===============  ===============================================================
    code    name             meaning
    ======  ===============  ===============================================================
    0       CLEAN            success: nothing at or above ``--fail-on``; a run that completed
    1       FINDINGS         doctor/lint: a finding at or above ``--fail-on`` (default
                             ``error``; ``--fail-on never`` always gives 0); demo: a stage
                             missed its expected result
    2       UNUSABLE_INPUT   a file, config, run dir or argument cannot be used: one line
                             naming it and the reason (also argparse's usage errors)
    3       RUN_FAILED       train: the run failed: the guard stopped it (summary status
                             ``aborted``, diagnosis in the log) or it diverged (``diverged``:
                             its last loss NaN/inf); ``GUARD_STOPPED`` is the older name
    4       INTERNAL_ERROR   a bug in stabletrain: one line asking for a report; the
                             traceback with ``-v``
    130     INTERRUPTED      Ctrl-C
    ======  ===============  ===============================================================
    """

    CLEAN = 0
    FINDINGS = 1
    UNUSABLE_INPUT = 2
    RUN_FAILED = 3
    GUARD_STOPPED = 3  # alias of RUN_FAILED
    INTERNAL_ERROR = 4
    INTERRUPTED = 130


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
