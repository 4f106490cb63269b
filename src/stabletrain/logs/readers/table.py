"""Columns of a table (CSV, JSON lines, MLflow, W&B) into records, without a Python object per row.

A tabular reader hands :func:`to_run` the table's columns as float64 arrays with a mask where a
cell is empty, and the step column. Each column gets its slot from ``fields.build_lookup`` (the
one name -> role vocabulary), and a row becomes a train record and/or an eval record exactly as
``fields.records_from_row`` splits one row: a train record when a train field has a value (or only
unknown train metrics do), an eval record when an eval value is present, the epoch on both, the
unknown train metrics of an eval-only row folded into the eval record. The records are a
:class:`~stabletrain.detectors.columns.TableRecords`: each StepRecord is made only if asked for,
and the detectors read the arrays.

:func:`clean` is ``base.clean_records`` on a table: the latest record of a step wins, a rewound
step drops what the old attempt logged after it, a row that completes the row before it at the
same step joins it (``base.parts_of_one``), train and eval merged in step order.

Limits: a cell that is not a number is empty (as ``fields.to_float`` makes it); integers beyond
2**53 lose exactness as doubles.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Table, TableRecords
from stabletrain.logs.readers.base import RunData, joined, parts_of_one
from stabletrain.logs.readers.fields import Slot, to_float
from stabletrain.records import StepRecord

#: (float64 values, bool mask of empty cells or None when none is empty)
Column = tuple[np.ndarray, np.ndarray | None]


def floats(values: Any) -> Column:
    """A column of numbers/None/strings as (float64, empty mask); strings via ``float()``
    ("nan", "inf", "Infinity"), anything else empty."""
    if isinstance(values, np.ndarray) and values.ndim == 1 and values.dtype.kind in "fiu":
        return values.astype(np.float64), None
    items = values.tolist() if isinstance(values, np.ndarray) else list(values)
    n = len(items)
    out = np.full(n, np.nan)
    empty = np.ones(n, dtype=bool)
    cache: dict[str, float | None] = {}
    for i, v in enumerate(items):
        x: float | None = None
        if isinstance(v, str):
            if v not in cache:
                cache[v] = parse_number(v)
            x = cache[v]
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            try:
                x = float(v)
            except OverflowError:  # an integer beyond a double's range: data, not a crash
                x = math.inf if v > 0 else -math.inf
        if x is not None:
            out[i], empty[i] = x, False
    return out, (empty if empty.any() else None)


def parse_number(v: str) -> float | None:
    """``float(v)`` of a cell (surrounding blanks ignored), or None when it is no number."""
    try:
        return float(v.strip())
    except (ValueError, OverflowError):
        return to_float(v)  # a percent string: the fraction it writes (fields.to_float)


#: smaller tables are parsed in Python: importing polars (0.1-0.4 s) costs more than it saves
POLARS_MIN_BYTES = 4 << 20


def import_polars() -> Any:
    """polars, or None when it is not installed (every table then takes the slow path).

    Before the first import, polars' allocator (jemalloc) is told to hand freed pages back at
    once (``_RJEM_MALLOC_CONF``, unless the user set it): by default it keeps them for seconds,
    which is ~90 MB of peak RSS on a million-row CSV that the parse no longer uses.
    """
    if "polars" not in sys.modules:
        os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")
    try:
        import polars
    except ImportError:
        return None
    return polars


#: rows per batch when polars streams a file in: the parse holds one batch at a time and the
#: columns are filled in place, so reading needs the columns plus one batch (a 10M-row CSV read
#: whole held polars' frame and its numpy copy at once: 845 MB)
READ_ROWS = 1 << 18
#: JSON lines are parsed in blocks of whole lines of about this many bytes (1M lines: 4 MiB
#: blocks parse within 0.03 s of 16 MiB ones, and peak 60 MB lower)
READ_BYTES = 1 << 22


def polars_batches(frame: Any) -> Iterator[Any]:
    """The rows of a polars LazyFrame as DataFrames of :data:`READ_ROWS` rows, in file order
    (polars' streaming ``collect_batches``; an older polars without it: one DataFrame)."""
    collect = getattr(frame, "collect_batches", None)
    if collect is None:
        yield frame.collect()
        return
    yield from collect(chunk_size=READ_ROWS, maintain_order=True)


class Filler:
    """Columns of at most ``rows`` rows filled batch by batch: float64 values allotted once, an
    empty-cell mask only for a column that has an empty cell."""

    def __init__(self, rows: int) -> None:
        self.rows, self.filled = rows, 0
        self.values: dict[str, np.ndarray] = {}
        self.masks: dict[str, np.ndarray] = {}

    def add(self, columns: dict[str, Column], n: int) -> bool:
        """The next ``n`` rows; False (nothing added) when they do not fit in ``rows``."""
        a, b = self.filled, self.filled + n
        if b > self.rows:
            return False
        for name, (values, mask) in columns.items():
            out = self.values.get(name)
            if out is None:
                out = self.values[name] = np.empty(self.rows)
            out[a:b] = values
            if mask is not None:
                if name not in self.masks:
                    self.masks[name] = np.zeros(self.rows, dtype=bool)
                self.masks[name][a:b] = mask
        self.filled = b
        return True

    def columns(self, names: list[str]) -> dict[str, Column]:
        """{name: column} of the rows filled (a copy only when fewer than allotted)."""
        n = self.filled
        out: dict[str, Column] = {}
        for name in names:
            if name not in self.values:  # no batch had it: every cell empty
                out[name] = np.full(n, np.nan), (np.ones(n, dtype=bool) if n else None)
                continue
            values, mask = self.values[name], self.masks.get(name)
            if n != self.rows:
                values = values[:n].copy()
                mask = None if mask is None else mask[:n].copy()
            out[name] = values, mask
        return out


#: steps are int64: a step beyond (a fuzzed "1e300") is no step
STEP_LIMIT = float(2**63)


def usable_steps(v: np.ndarray) -> np.ndarray:
    """Where a float step column holds a finite value that fits an int64 (NaN compares false;
    two comparisons, no temporary column)."""
    return (v > -STEP_LIMIT) & (v < STEP_LIMIT)


def first_steps(columns: Iterable[np.ndarray], n: int) -> np.ndarray:
    """Per row, the value of the first of ``columns`` (float step columns, in order) with a usable
    step there, NaN where none has one — as ``fields.step_of`` takes a row's step. The first
    column itself (not a copy) when it has a usable step on every row."""
    step: np.ndarray | None = None
    for v in columns:
        ok = usable_steps(v)
        if step is None:
            if ok.all():
                return v
            step = np.where(ok, v, np.nan)
        else:
            fill = ok & np.isnan(step)
            step[fill] = v[fill]
    return np.full(n, np.nan) if step is None else step


def _present(col: Column, n: int) -> np.ndarray:
    return np.ones(n, dtype=bool) if col[1] is None else ~col[1]


def to_run(
    data: RunData,
    step: np.ndarray,
    columns: dict[str, Column],
    lookup: dict[str, Slot],
    *,
    epoch: Column | None = None,
) -> None:
    """Fill ``data.raw`` (TableRecords) and ``data.roles`` from ``columns`` at ``step`` per row.

    ``epoch``: an epoch column given apart (Keras: the epoch is the step); else a column whose
    slot is ``epoch``. Columns with a ``step``/``skip`` slot are not read.
    """
    n = len(step)
    train_f: dict[str, Column] = {}
    eval_f: dict[str, Column] = {}
    train_m: dict[str, Column] = {}
    eval_m: dict[str, Column] = {}
    for name, col in columns.items():
        kind, field, metric = lookup[name]
        if kind in ("step", "skip"):
            data.roles[name] = kind
            continue
        if field == "epoch":
            epoch = _merge(epoch, col)
            data.roles[name] = "epoch"
        elif kind == "train":
            if field is None:
                train_m[metric] = col
            else:
                train_f[field] = _merge(train_f.get(field), col)
            data.roles[name] = field or "metric"
        else:
            if field is None:
                eval_m[metric] = col
            else:
                eval_f[field] = _merge(eval_f.get(field), col)
            data.roles[name] = field or "eval metric"
    none = np.zeros(n, dtype=bool)
    has_train = _any(train_f.values(), n, none)
    has_tm = _any(train_m.values(), n, none)
    has_ev = _any([*eval_f.values(), *eval_m.values()], n, none)
    tr_row = has_train | (has_tm & ~has_ev)
    move = ~has_train & has_tm & has_ev  # an eval row's bookkeeping goes with the eval record
    src: np.ndarray | slice
    evals = bool(has_ev.any())
    if not evals and tr_row.all():  # every row one train record: views, no copies
        src, is_train = slice(None), np.ones(n, dtype=bool)
    elif not evals:
        src = np.flatnonzero(tr_row)
        is_train = np.ones(src.size, dtype=bool)
    else:
        t_rows, e_rows = np.flatnonzero(tr_row), np.flatnonzero(has_ev)
        keys = np.concatenate((t_rows * 2, e_rows * 2 + 1))
        order = np.argsort(keys, kind="stable")
        src = keys[order] // 2
        is_train = (keys[order] % 2) == 0
    fields: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, col in train_f.items():
        fields[name] = _out(col, src, n, is_train)
    for name, col in eval_f.items():
        fields[name] = _out(col, src, n, ~is_train)
    if epoch is not None:
        fields["epoch"] = _out(epoch, src, n, None)
    metrics: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}
    for name, col in train_m.items():
        metrics[name] = _out(col, src, n, is_train | move[src])  # (move is all False with a slice)
    for name, col in eval_m.items():
        metrics[name] = _out(col, src, n, ~is_train)
    table = Table(step[src], is_train, fields, metrics)
    data.raw = TableRecords(table)  # type: ignore[assignment]


def roles(lookup: dict[str, Slot]) -> dict[str, str]:
    """{the log's name: the field it fills, "metric"/"eval metric", "step" or "skip"}, for the
    report's header (readers that build records row by row)."""
    out: dict[str, str] = {}
    for name, (kind, field, _metric) in lookup.items():
        if kind in ("step", "skip"):
            out[name] = kind
        else:
            out[name] = field or ("metric" if kind == "train" else "eval metric")
    return out


def _merge(first: Column | None, later: Column) -> Column:
    """Two columns for one field: the later one wins where it has a value (as a dict update)."""
    if first is None:
        return later
    if later[1] is None:
        return later
    keep = later[1]
    vals = np.where(keep, first[0], later[0])
    mask = keep if first[1] is None else keep & first[1]
    return vals, mask


def _any(cols: Any, n: int, none: np.ndarray) -> np.ndarray:
    out = none.copy()
    for col in cols:
        if col[1] is None:
            return np.ones(n, dtype=bool)
        out |= ~col[1]
    return out


def _out(col: Column, src: np.ndarray | slice, n: int, where: np.ndarray | None) -> Column:
    vals = col[0][src]
    if col[1] is None and (where is None or where.all()):
        return vals, None
    present = _present(col, n)[src]
    if where is not None:
        present = present & where
    return vals, (None if present.all() else ~present)


def clean(data: RunData) -> None:
    """``data.records`` from ``data.raw`` (TableRecords): ``base.clean_records`` on columns."""
    raw = data.raw
    if not isinstance(raw, TableRecords):
        raise TypeError("table.clean needs records read as a table")
    table = raw.table
    step, train = table.step, table.train
    if (train.all() or not train.any()) and bool((step[1:] > step[:-1]).all()):
        data.records = raw  # type: ignore[assignment]  # (one kind, steps rising: all kept)
        return
    kept = np.zeros(len(step), dtype=bool)
    joins: dict[int, StepRecord] = {}
    for mask, what in ((train, "train"), (~train, "eval")):
        idx = np.flatnonzero(mask)
        if idx.size == 0:
            continue
        s = step[idx]
        # a record survives when no later record of its kind logs the same or an earlier step
        later_min = np.minimum.accumulate(s[::-1])[::-1]
        ok = np.ones(idx.size, dtype=bool)
        ok[:-1] = s[:-1] < later_min[1:]
        kept[idx[ok]] = True
        absorbed = _join_parts(table, idx, s, joins)
        dropped = int(idx.size - ok.sum()) - absorbed
        if dropped and what == "train":
            data.notes.append(
                f"{dropped} train record(s) replaced by later records of the same or earlier "
                "steps (resumed/rewound run or duplicate logging); the latest were kept"
            )
        elif dropped:
            data.notes.append(
                f"{dropped} eval record(s) replaced by later records for the same steps"
            )
    if joins:
        table = _with_joined(table, joins)
    idx = np.flatnonzero(kept)
    if train[idx].all() or not train[idx].any():
        if idx.size == len(step) and not joins:
            data.records = raw  # type: ignore[assignment]
            return
    else:  # stable: train before eval at the same step, read order otherwise
        idx = idx[np.lexsort((~train[idx], step[idx]))]
    data.records = TableRecords(table.take(idx))  # type: ignore[assignment]


def _join_parts(table: Table, idx: np.ndarray, s: np.ndarray, joins: dict[int, StepRecord]) -> int:
    """``base.parts_of_one`` on a table: rows of one kind (``idx``, steps ``s``) that complete the
    row before them at the same step are joined into the later one, as ``clean_records`` joins
    records. Only runs of same-step rows whose cells differ in presence can hold parts (identical
    lines are repeats); those few runs are folded record by record. The joined records go to
    ``joins`` by row; returns how many rows were absorbed (not dropped as replaced)."""
    same = s[1:] == s[:-1]
    if not same.any():
        return 0
    differ = np.zeros(same.size, dtype=bool)
    a, b = idx[:-1], idx[1:]
    for _v, m in (*table.fields.values(), *table.metrics.values()):
        if m is not None:
            differ |= m[a] != m[b]
    pairs = np.flatnonzero(same & differ)
    if pairs.size == 0:
        return 0
    absorbed = 0
    done = -1
    for p in pairs.tolist():
        if p <= done:
            continue
        start = p
        while start > 0 and same[start - 1]:
            start -= 1
        end = p + 1
        while end < same.size and same[end]:
            end += 1
        done = end - 1
        acc = table.record(int(idx[start]))
        for j in range(start + 1, end + 1):
            r = table.record(int(idx[j]))
            if parts_of_one(acc, r):
                acc = joined(acc, r)
                absorbed += 1
            else:
                acc = r
        joins[int(idx[end])] = acc
    return absorbed


def _with_joined(table: Table, joins: dict[int, StepRecord]) -> Table:
    """``table`` with the joined records' values written into their rows (copies of the columns
    they change)."""
    rows = np.fromiter(joins, dtype=np.int64, count=len(joins))
    recs = list(joins.values())

    def filled(col: Any, values: list[Any]) -> tuple[np.ndarray, np.ndarray | None]:
        v, m = col
        have = np.array([x is not None for x in values], dtype=bool)
        if m is None or not (m[rows] & have).any():
            return v, m
        v, m = v.copy(), m.copy()
        v[rows[have]] = [float(x) for x in values if x is not None]
        m[rows[have]] = False
        return v, m

    fields = {k: filled(c, [getattr(r, k) for r in recs]) for k, c in table.fields.items()}
    metrics = {k: filled(c, [r.metrics.get(k) for r in recs]) for k, c in table.metrics.items()}
    return Table(table.step, table.train, fields, metrics)


def note_rows(data: RunData, total: int, used: int) -> None:
    """``lines_total``/``lines_understood`` for the report header (the reader notes the rest)."""
    data.lines_total, data.lines_understood = total, used
