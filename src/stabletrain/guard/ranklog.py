"""Our log lines once per job, not once per rank (seed 004's symptom is every line twice).

Each stabletrain logger that reports job-wide facts gets :func:`once_per_job`: under
``torch.distributed`` (or ``torchrun``'s ``RANK`` before the process group exists) only rank 0
emits its records. A record about one rank's own data (the rank whose batch held the NaN) is
logged with :func:`rank_extra` and passes on every rank, its message naming the rank.
"""

from __future__ import annotations

import logging
import os

__all__ = ["once_per_job", "rank", "rank_extra"]


def rank() -> int:
    """This process's global rank (0 outside distributed runs)."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    try:
        return int(os.environ.get("RANK", "0"))
    except ValueError:
        return 0


def rank_extra() -> dict[str, object]:
    """``extra=`` for a record about this rank's own data: logged on every rank."""
    return {"stabletrain_rank": rank()}


class _RankZero(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return hasattr(record, "stabletrain_rank") or rank() == 0


_FILTER = _RankZero()


def once_per_job(logger: logging.Logger) -> logging.Logger:
    """``logger`` emitting on rank 0 only (records with :func:`rank_extra` on every rank)."""
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
    return logger
