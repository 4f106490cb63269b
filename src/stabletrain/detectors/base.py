"""The detector protocol: incremental, small state, no torch.

A detector sees one :class:`~stabletrain.records.StepRecord` at a time. The guard feeds it live;
the doctor replays a log through the very same object.

- ``update(record)`` returns a Finding when *this record* is a symptom (a spike, a non-finite
  step), so the guard can act on it at once. Per-step findings are for live action.
- ``finish(facts)`` returns the run-level findings, aggregated: one Finding per id with every step
  where it showed, the evidence, recovery, and the fix (using ``facts`` for the user's keys).
  The doctor reports only what ``finish`` returns.

Detectors never touch tensors: measuring is the guard's job. All constructor arguments have
defaults, so ``Detector()`` is a sensible detector.

Bulk path (optional): ``update_many(records)`` consumes many records at once and must leave the
detector in *exactly* the state that ``update`` on each record in order would (same counts, same
float sums in the same order, same stored values and types) — the doctor replays a million-record
log through it, the guard keeps calling ``update``. It returns nothing: per-record findings are for
live action. It reads the records' columns (:mod:`stabletrain.detectors.columns`) and may raise
``Unsupported`` before changing any state, in which case :func:`feed` falls back to ``update``.
tests/detectors/test_bulk.py checks every detector's two paths against each other on real logs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np

from stabletrain.detectors.columns import Batch, TableRecords, Unsupported, as_batch
from stabletrain.records import ConfigFacts, Finding, StepRecord


@runtime_checkable
class Detector(Protocol):
    """What every detector implements."""

    #: The finding ids this detector can emit.
    ids: tuple[str, ...]

    def update(self, record: StepRecord) -> Finding | None:
        """Consume one record; return a Finding if this record is a symptom, else None."""
        ...

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        """Findings over the whole run (called once, after the last record)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def epoch_index(epoch: float | None) -> int | None:
    """The whole epoch a record belongs to; None when it has none or it is not a finite number
    (an ``"epoch": Infinity`` in a log is data about the log, not a position in the run)."""
    if epoch is None or not math.isfinite(epoch):
        return None
    return int(epoch)


#: a batch read as a table goes to ``update_many`` in slices of at most this many records (views
#: of its columns): a detector's temporaries, a few arrays as long as its batch, then stay bounded
#: however long the log (one 10M-row batch peaked at 1.6 GB). State carries between batches
#: exactly, so the findings are the same.
BULK_ROWS = 1 << 18


def feed(detector: Detector, records: Sequence[StepRecord]) -> None:
    """Feed ``records`` to ``detector``: in bulk when it has ``update_many``, else one by one."""
    many = getattr(detector, "update_many", None)
    if many is None:
        for record in records:
            detector.update(record)
        return
    for batch in _slices(as_batch(records)):
        try:
            # overflow to inf (1e308 + 1e308) and inf - inf = NaN are data, silently, as in
            # Python's float arithmetic on the per-record path
            with np.errstate(over="ignore", invalid="ignore"):
                many(batch)
        except Unsupported:  # a column it cannot treat exactly: record by record
            for record in batch.records:
                detector.update(record)


def _slices(batch: Batch) -> Iterator[Batch]:
    """``batch`` in slices of at most :data:`BULK_ROWS` records when it is a table, else whole."""
    n, table = len(batch), batch.table
    if table is None or n <= BULK_ROWS:
        yield batch
        return
    for a in range(0, n, BULK_ROWS):
        yield Batch(TableRecords(table.take(slice(a, a + BULK_ROWS))))
