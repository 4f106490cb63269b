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
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import eq, is_
from typing import Any, overload

import numpy as np

from stabletrain.records import StepRecord

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


class Unsupported(ValueError):
    """A column the bulk path cannot treat exactly; the records go through ``update`` instead."""


class Batch(Sequence[StepRecord]):
    """Records plus their columns, built once on first use and shared by every detector.

    ``columns``: columns a reader already holds (it built the records from them), as
    ``{field: [value per record]}``; they must be what the records hold now.
    """

    def __init__(
        self, records: Sequence[StepRecord], columns: dict[str, list[Any]] | None = None
    ) -> None:
        self.records: Sequence[StepRecord] = records
        self._objects: dict[str, list[Any]] = dict(columns or {})
        self._floats: dict[str, np.ndarray] = {}
        self._none: dict[str, np.ndarray | None] = {}
        self._steps: np.ndarray | None = None
        self._train: np.ndarray | None = None
        self._epoch_keys: np.ndarray | None = None
        self._all_missing: tuple[np.ndarray, np.ndarray] | None = None

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
    def objects(self, name: str) -> list[Any]:
        """The field's values as stored on the records."""
        col = self._objects.get(name)
        if col is None:
            col = self._objects[name] = _COLUMN[name](self.records)
        return col

    def floats(self, name: str) -> np.ndarray:
        """float64 values, NaN where None. Raises Unsupported for non-numeric values."""
        out = self._floats.get(name)
        if out is None:
            arr, none = _to_floats(self.objects(name))
            if arr is None:  # no value at all: one shared all-NaN array
                arr, none = self._missing()
            out = self._floats[name] = _frozen(arr)
            self._none[name] = None if none is None else _frozen(none)
        return out

    def _missing(self) -> tuple[np.ndarray, np.ndarray]:
        if self._all_missing is None:
            n = len(self.records)
            self._all_missing = (_frozen(np.full(n, np.nan)), _frozen(np.ones(n, dtype=bool)))
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
