"""Columns of a batch of records, for the detectors' bulk path (``update_many``).

The doctor replays a whole log through a dozen detectors. Record by record, every detector reads
the same few attributes of a million records again and again; :class:`Batch` reads each field
once, when a detector first asks for it, and keeps it as a column that every detector's
``update_many`` then works on as arrays.

Two views of each column, each exact:

- ``objects(name)``: the values as the records hold them (``None``, ``int``, ``float``). Anything a
  finding shows (a peak, a maximum, a step) is taken from here, so its type and value are the ones
  the per-record path would have stored.
- ``floats(name)``: a float64 array, NaN where the value is None, for comparisons and selections.
  It is only built for columns of floats, ints (below 2**53, exact as doubles) and bools; any other
  value (a string a foreign reader left, a huge int) raises :class:`Unsupported`, and
  :func:`stabletrain.detectors.base.feed` then feeds the detector record by record instead.

A detector's ``update_many`` asks for every column it needs *before* it changes any state, so an
``Unsupported`` never leaves a detector half-updated.

Readers of tables (CSV, JSONL, MLflow, W&B) build no records at all: they fill a :class:`Table` of
numpy arrays, and :class:`TableRecords` stands in for the record list, making a StepRecord only
when one is asked for (a finding's step, a per-record fallback). A Batch over TableRecords takes
its columns straight from the arrays; ``objects`` is then a :class:`Values` view that converts one
value on access, so a million-row log never becomes a million Python objects.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import eq, is_
from typing import Any, overload

import numpy as np

from stabletrain.records import RecordKind, StepRecord

#: one list comprehension per field: reading a slot by name in a comprehension is ~1.6x faster
#: than ``map(attrgetter(name), records)``, and a million-record log reads 15 of them
_COLUMN: dict[str, Callable[[Sequence[StepRecord]], list[Any]]] = {
    "step": lambda rs: [r.step for r in rs],
    "kind": lambda rs: [r.kind for r in rs],
    "epoch": lambda rs: [r.epoch for r in rs],
    "loss": lambda rs: [r.loss for r in rs],
    "grad_norm": lambda rs: [r.grad_norm for r in rs],
    "clip_coef": lambda rs: [r.clip_coef for r in rs],
    "lr": lambda rs: [r.lr for r in rs],
    "loss_scale": lambda rs: [r.loss_scale for r in rs],
    "skipped": lambda rs: [r.skipped for r in rs],
    "action": lambda rs: [r.action for r in rs],
    "accuracy": lambda rs: [r.accuracy for r in rs],
    "eval_loss": lambda rs: [r.eval_loss for r in rs],
    "eval_accuracy": lambda rs: [r.eval_accuracy for r in rs],
    "samples": lambda rs: [r.samples for r in rs],
    "tokens": lambda rs: [r.tokens for r in rs],
    "wall_time": lambda rs: [r.wall_time for r in rs],
    "step_time": lambda rs: [r.step_time for r in rs],
    "rank": lambda rs: [r.rank for r in rs],
}
_EXACT = 2.0**53  # ints below this convert to float64 exactly


def _int_if_finite(x: float) -> int | float:
    return int(x) if math.isfinite(x) else x


#: how a StepRecord field's float64 column value becomes the Python value a record holds
#: (what ``logs.readers.fields.records_from_row`` stores: floats, ints for counts, bools)
CONVERT: dict[str, Callable[[Any], Any]] = {
    "samples": _int_if_finite,
    "tokens": _int_if_finite,
    "rank": _int_if_finite,
    "skipped": bool,
}


class Values(Sequence[Any]):
    """A read-only column view: ``values[i]`` is ``None`` where ``none[i]``, else
    ``convert(values[i])`` as a Python value; a slice is a list. Built on demand, so a column of
    a million floats costs 8 MB, not 32."""

    def __init__(
        self,
        values: np.ndarray,
        none: np.ndarray | None,
        convert: Callable[[Any], Any] | None = None,
    ) -> None:
        self.values, self.mask, self.convert = values, none, convert

    def __len__(self) -> int:
        return len(self.values)

    @overload
    def __getitem__(self, i: int) -> Any: ...
    @overload
    def __getitem__(self, i: slice) -> list[Any]: ...
    def __getitem__(self, i: int | slice) -> Any:
        if isinstance(i, slice):
            return self._list(self.values[i], None if self.mask is None else self.mask[i])
        if self.mask is not None and self.mask[i]:
            return None
        v = self.values[i].item()
        return v if self.convert is None else self.convert(v)

    def __iter__(self) -> Iterator[Any]:
        return iter(self[:])

    def take(self, idx: np.ndarray) -> list[Any]:
        """``[self[i] for i in idx]``, converted in bulk."""
        return self._list(self.values[idx], None if self.mask is None else self.mask[idx])

    def _list(self, values: np.ndarray, mask: np.ndarray | None) -> list[Any]:
        out = values.tolist()
        if self.convert is not None:
            out = list(map(self.convert, out))
        if mask is not None and mask.any():
            if mask.all():
                return [None] * len(out)
            obj = np.array(out, dtype=object)
            obj[mask] = None
            return obj.tolist()  # type: ignore[no-any-return]
        return out

    def __contains__(self, x: object) -> bool:
        if x is None:
            return self.mask is not None and bool(self.mask.any())
        return x in self[:]

    def count(self, x: Any) -> int:
        if x is None:
            return 0 if self.mask is None else int(self.mask.sum())
        return self[:].count(x)


class _Kinds(Sequence[str]):
    """The ``kind`` column of a table: "train" where the mask is set, else "eval"."""

    def __init__(self, train: np.ndarray) -> None:
        self.mask = train

    def __len__(self) -> int:
        return len(self.mask)

    def __getitem__(self, i: Any) -> Any:
        if isinstance(i, slice):
            return ["train" if t else "eval" for t in self.mask[i].tolist()]
        return "train" if self.mask[i] else "eval"

    def count(self, x: Any) -> int:
        n = int(self.mask.sum())
        return n if x == "train" else len(self.mask) - n if x == "eval" else 0


class Table:
    """Records as columns: ``step`` (int64), ``train`` (bool: kind == "train"), StepRecord fields
    as (float64 values, bool mask where None or None when no value is missing), and the per-record
    ``metrics`` likewise ({name: (values, mask)}; a record's dict holds the names it has a value
    for). What tabular readers build; see :class:`TableRecords`."""

    def __init__(
        self,
        step: np.ndarray,
        train: np.ndarray,
        fields: dict[str, tuple[np.ndarray, np.ndarray | None]],
        metrics: dict[str, tuple[np.ndarray, np.ndarray | None]] | None = None,
    ) -> None:
        self.step = _frozen(np.ascontiguousarray(step, dtype=np.int64))
        self.train = _frozen(np.asarray(train, dtype=bool))
        self.fields = {k: _pair(v, m) for k, (v, m) in fields.items() if m is None or not m.all()}
        self.metrics = {k: _pair(v, m) for k, (v, m) in (metrics or {}).items()}

    def __len__(self) -> int:
        return len(self.step)

    def take(self, idx: np.ndarray | slice) -> Table:
        """The rows at ``idx`` (in that order); a slice gives views, not copies."""
        pick = _pick(idx)
        return Table(
            self.step[idx],
            self.train[idx],
            {k: (v[idx], pick(m)) for k, (v, m) in self.fields.items()},
            {k: (v[idx], pick(m)) for k, (v, m) in self.metrics.items()},
        )

    def has_value(self, name: str) -> bool:
        """Whether some row holds a value (NaN included) for the field."""
        return name in self.fields

    def column(self, name: str) -> Sequence[Any]:
        """The field as the records would hold it (a :class:`Values` view)."""
        if name == "step":
            return Values(self.step, None)
        if name == "kind":
            return _Kinds(self.train)
        got = self.fields.get(name)
        if got is None:
            return Values(np.zeros(len(self), dtype=np.float64), np.ones(len(self), dtype=bool))
        return Values(got[0], got[1], CONVERT.get(name))

    def record(self, i: int) -> StepRecord:
        kw: dict[str, Any] = {}
        for name, (v, m) in self.fields.items():
            if m is None or not m[i]:
                x = v[i].item()
                conv = CONVERT.get(name)
                kw[name] = x if conv is None else conv(x)
        metrics = {k: v[i].item() for k, (v, m) in self.metrics.items() if m is None or not m[i]}
        kind: RecordKind = "train" if self.train[i] else "eval"
        return StepRecord(step=int(self.step[i]), kind=kind, metrics=metrics, **kw)


def _pair(v: np.ndarray, m: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    values = np.ascontiguousarray(v, dtype=np.float64)
    if m is None or not m.any():
        return _frozen(values), None
    mask = np.asarray(m, dtype=bool)
    if not np.isnan(values[mask]).all():  # NaN where None, as Batch.floats promises
        values = np.where(mask, np.nan, values)
    return _frozen(values), _frozen(mask)


def _pick(idx: np.ndarray | slice) -> Callable[[np.ndarray | None], np.ndarray | None]:
    def pick(m: np.ndarray | None) -> np.ndarray | None:
        return None if m is None else m[idx]

    return pick


class TableRecords(Sequence[StepRecord]):
    """A :class:`Table` seen as a list of StepRecords, each made when it is asked for."""

    def __init__(self, table: Table) -> None:
        self.table = table

    def __len__(self) -> int:
        return len(self.table)

    @overload
    def __getitem__(self, i: int) -> StepRecord: ...
    @overload
    def __getitem__(self, i: slice) -> list[StepRecord]: ...
    def __getitem__(self, i: int | slice) -> StepRecord | list[StepRecord]:
        if isinstance(i, slice):
            return [self.table.record(j) for j in range(*i.indices(len(self)))]
        n = len(self)
        if not -n <= i < n:
            raise IndexError(i)
        return self.table.record(i % n)

    def __iter__(self) -> Iterator[StepRecord]:
        return map(self.table.record, range(len(self)))


class Unsupported(ValueError):
    """A column the bulk path cannot treat exactly; the records go through ``update`` instead."""


class Batch(Sequence[StepRecord]):
    """Records plus their columns, built once on first use and shared by every detector.

    ``columns``: columns a reader already holds (it built the records from them), as
    ``{field: [value per record]}``; they must be what the records hold now.
    """

    def __init__(
        self,
        records: Sequence[StepRecord],
        columns: dict[str, list[Any]] | dict[str, Sequence[Any]] | None = None,
    ) -> None:
        if isinstance(records, Batch) and not columns:  # a batch of a batch: share its columns
            columns = records.columns_held()
            records = records.records
        self.records: Sequence[StepRecord] = records
        self._objects: dict[str, Sequence[Any]] = dict(columns or {})
        self._floats: dict[str, np.ndarray] = {}
        self._none: dict[str, np.ndarray | None] = {}
        self._steps: np.ndarray | None = None
        self._train: np.ndarray | None = None
        self._epoch_keys: np.ndarray | None = None
        self._all_missing: tuple[np.ndarray, np.ndarray] | None = None
        self.table = records.table if isinstance(records, TableRecords) else None
        if self.table is not None:
            self._steps, self._train = self.table.step, self.table.train
            for name, (v, m) in self.table.fields.items():
                self._floats[name], self._none[name] = v, m

    def columns_held(self) -> dict[str, Sequence[Any]]:
        """The per-field columns this batch holds (given or built so far), for a batch over the
        same records to share instead of building them again."""
        return dict(self._objects)

    def __len__(self) -> int:
        return len(self.records)

    @overload
    def __getitem__(self, i: int) -> StepRecord: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[StepRecord]: ...
    def __getitem__(self, i: int | slice) -> StepRecord | Sequence[StepRecord]:
        return self.records[i]

    def __iter__(self) -> Iterator[StepRecord]:
        return iter(self.records)

    # -- columns -------------------------------------------------------------------------------
    def objects(self, name: str) -> Sequence[Any]:
        """The field's values as stored on the records (a list, or a :class:`Values` view)."""
        col = self._objects.get(name)
        if col is None:
            col = self._objects[name] = (
                _COLUMN[name](self.records) if self.table is None else self.table.column(name)
            )
        return col

    def floats(self, name: str) -> np.ndarray:
        """float64 values, NaN where None. Raises Unsupported for non-numeric values."""
        out = self._floats.get(name)
        if out is None:
            if self.table is not None:
                if name == "kind":
                    raise Unsupported("non-numeric values (kind)")
                mask: np.ndarray | None = None  # (a table holds no action: every one is None)
                if name == "step":
                    got = _frozen(self.table.step.astype(np.float64))
                else:
                    got, mask = self._missing()  # a field the table does not have
                self._floats[name], self._none[name] = got, mask
                return got
            objs = self.objects(name)
            arr, none = _to_floats(objs if isinstance(objs, list) else list(objs))
            if arr is None:  # no value at all: one shared all-NaN array
                arr, none = self._missing()
            out = self._floats[name] = _frozen(arr)
            self._none[name] = None if none is None else _frozen(none)
        return out

    def metric(self, name: str) -> np.ndarray:
        """float64 values of ``record.metrics[name]``, NaN where a record has none (a metric a
        reader gave a role but no StepRecord field, e.g. ``clip_fraction``)."""
        key = "metrics/" + name
        out = self._floats.get(key)
        if out is None:
            if self.table is not None:
                got = self.table.metrics.get(name)
                out = got[0] if got is not None else self._missing()[0]
            else:
                nan = math.nan
                try:
                    out = _frozen(
                        np.fromiter(
                            (r.metrics.get(name, nan) for r in self.records),
                            dtype=np.float64,
                            count=len(self.records),
                        )
                    )
                except (TypeError, ValueError) as e:
                    raise Unsupported(f"metric {name!r} holds non-numeric values") from e
            self._floats[key] = out
        return out

    def _missing(self) -> tuple[np.ndarray, np.ndarray]:
        if self._all_missing is None:
            n = len(self.records)
            # read-only broadcasts of one value: no memory however long the log (10M rows: 90 MB)
            self._all_missing = (np.broadcast_to(np.nan, n), np.broadcast_to(True, n))
        return self._all_missing

    def none(self, name: str) -> np.ndarray | None:
        """Where the field is None (a bool mask); None when every record has a value."""
        if name not in self._none:
            try:
                self.floats(name)
            except Unsupported:  # strings (action, kind): only the mask
                objs = self.objects(name)
                self._none[name] = (
                    _frozen(np.fromiter(map(is_, objs, repeat(None)), dtype=bool, count=len(objs)))
                    if None in objs
                    else None
                )
        return self._none[name]

    def finite(self, name: str, *, train_only: bool = True) -> np.ndarray:
        """Indices of the records whose value is a finite number (of train records by default)."""
        ok = np.isfinite(self.floats(name))
        if train_only:
            ok &= self.train
        return np.flatnonzero(ok)

    @property
    def train(self) -> np.ndarray:
        """Bool mask of ``kind == "train"``."""
        if self._train is None:
            kinds = self.objects("kind")
            if kinds.count("train") == len(kinds):
                self._train = _frozen(np.ones(len(kinds), dtype=bool))
            else:
                self._train = _frozen(
                    np.fromiter(map(eq, kinds, repeat("train")), dtype=bool, count=len(kinds))
                )
        return self._train

    @property
    def steps(self) -> np.ndarray:
        """int64 steps. Raises Unsupported when a step is not an int (or does not fit)."""
        if self._steps is None:
            try:
                arr = np.array(self.objects("step"))  # int64 exactly when every step is an int
            except (TypeError, ValueError, OverflowError) as e:
                raise Unsupported(f"steps numpy cannot hold ({e})") from e
            if arr.dtype != np.int64 or arr.ndim != 1:
                raise Unsupported(f"steps that are not all ints (dtype {arr.dtype})")
            self._steps = _frozen(arr)
        return self._steps

    def epoch_keys(self) -> np.ndarray:
        """``int(epoch)`` per record as int64 (0 where the epoch is None; see ``none("epoch")``).

        Raises Unsupported when an epoch is not finite or too large for int64 (``int()`` of it
        raises on the per-record path, or gives an int numpy cannot hold).
        """
        if self._epoch_keys is None:
            e = self.floats("epoch")
            none = self.none("epoch")
            present = e if none is None else e[~none]
            if present.size and not (np.isfinite(present).all() and np.abs(present).max() < _EXACT):
                raise Unsupported("epochs that are not finite or too large")
            # astype truncates toward zero, as int() does
            self._epoch_keys = _frozen(np.where(np.isnan(e), 0.0, e).astype(np.int64))
        return self._epoch_keys

    def check_bins(self) -> None:
        """Build what ``Bins.add_many`` reads (steps, epoch keys): raises Unsupported now."""
        self.steps  # noqa: B018 (builds the column)
        self.epoch_keys()

    def running_max(self, name: str, idx: np.ndarray, start: Any) -> Any:
        """``m = start; for v in values at idx: if v is not None and v > m: m = v`` (NaN never
        wins; of equal maxima the first stays, as that loop keeps it)."""
        x = self.floats(name)[idx]
        seen = np.flatnonzero(~np.isnan(x))
        if seen.size == 0:
            return start
        top = self.objects(name)[int(idx[seen[int(np.argmax(x[seen]))]])]
        return top if top > start else start

    def take(self, name: str, idx: np.ndarray) -> list[Any]:
        """The stored values of the field at ``idx``."""
        return take(self.objects(name), idx)


def take(objs: Sequence[Any], idx: np.ndarray) -> list[Any]:
    """``[objs[i] for i in idx]`` (increasing ``idx``), in C: a slice when ``idx`` is a range."""
    n = len(idx)
    if n == 0:
        return []
    if isinstance(objs, Values):
        return objs.take(idx)
    first, last = int(idx[0]), int(idx[-1])
    if last - first + 1 == n:
        part = objs[first : last + 1]
        return part if isinstance(part, list) else list(part)
    return list(map(objs.__getitem__, idx.tolist()))


def as_batch(records: Iterable[StepRecord], like: Batch | None = None) -> Batch:
    """``records`` as a Batch: itself when it already is one, ``like`` when that batch holds the
    very same record objects (the raw records of a clean log), so columns are shared."""
    if isinstance(records, Batch):
        return records
    seq = records if isinstance(records, Sequence) else list(records)
    if like is not None and like.records is seq:
        return like
    if (
        like is not None
        and isinstance(seq, TableRecords)
        and isinstance(like.records, TableRecords)
    ):
        return like if like.records.table is seq.table else Batch(seq)
    if like is not None and len(like) == len(seq) and all(map(is_, like.records, seq)):
        return like
    return Batch(seq)


def _frozen(a: np.ndarray) -> np.ndarray:
    """Read-only: columns are shared by every detector, none may change them."""
    a.setflags(write=False)
    return a


def _to_floats(objs: list[Any]) -> tuple[np.ndarray | None, np.ndarray | None]:
    """(float64 values with NaN for None, where the values are None or None if nowhere);
    (None, None) when every value is None."""
    n = len(objs)
    try:
        # without a dtype numpy infers one, which is the type check: float64 (or int64 / bool)
        # when every value is a number, object when some are None (or odd), str for strings
        if n and objs[0] is None and objs.count(None) == n:  # (fast: None is None)
            return None, None
        arr = np.array(objs)
        none: np.ndarray | None = None
        if arr.dtype == object and arr.ndim == 1:
            n_none = objs.count(None)
            if n_none == n:
                return None, None
            types = set(map(type, objs))
            if not types <= {float, int, bool, type(None)}:
                raise Unsupported(f"non-numeric values ({sorted(t.__name__ for t in types)})")
            arr = np.array(objs, dtype=np.float64)  # None -> NaN
            if n_none:
                none = np.fromiter(map(is_, objs, repeat(None)), dtype=bool, count=n)
        elif arr.dtype.kind not in "fib" or arr.ndim != 1:
            raise Unsupported(f"non-numeric values (dtype {arr.dtype})")
    except (TypeError, ValueError, OverflowError) as e:
        if isinstance(e, Unsupported):
            raise
        raise Unsupported(f"values numpy cannot hold as doubles ({e})") from e
    if arr.dtype.kind == "i" and arr.size and np.abs(arr).max() >= _EXACT:
        raise Unsupported("ints too large to compare exactly as doubles")
    arr = arr.astype(np.float64, copy=False)
    big = np.abs(arr) >= _EXACT
    if big.any() and any(type(objs[i]) is int for i in np.flatnonzero(big).tolist()):
        raise Unsupported("ints too large to compare exactly as doubles")
    return arr, none
