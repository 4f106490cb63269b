"""Bounded-memory summaries of a metric over a run: a log-scale histogram and per-epoch bins.

Detectors must keep small state (they run live for millions of steps and are checkpointed), yet
several findings need quantiles ("median grad norm within 0.75-1.0× the clip", "p90 per epoch")
against thresholds only known at ``finish(facts)``. A log histogram with 2 % wide buckets answers
any quantile or "fraction above t" to 2 % accuracy in O(#distinct buckets) memory.

:class:`Bins` groups records by integer epoch when the log has epochs, else by step blocks whose
width doubles to keep at most ``max_bins`` blocks, so a million-step log still has ~64 bins.

Both have a bulk ``add_many`` for the doctor's replay (see ``detectors.base``), equal to ``add``
per value: the same buckets (``floor(log(x) / log 1.02)``, recomputed with ``math.log`` wherever
numpy's log could round across a bucket edge), totals summed in record order (``np.cumsum`` is a
sequential sum), maxima taken from the stored values, and coarsening at the same record.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch

_RATIO = 1.02
_LOG_R = math.log(_RATIO)
#: numpy's log may differ from math.log by a few ulps (~1e-12 in bucket units): a value whose
#: bucket coordinate lies this close to an integer gets its bucket from math.log instead
_EDGE = 1e-6
#: records per slice when looking for runs of one bin (bounds the work redone after coarsening)
_CHUNK = 1 << 16


def buckets(x: np.ndarray) -> np.ndarray:
    """``floor(log(x) / log(1.02))`` of positive finite values, exactly as ``math`` computes it."""
    q = np.log(x) / _LOG_R
    b = np.floor(q)
    edge = np.flatnonzero((q - b < _EDGE) | (b + 1 - q < _EDGE))
    if edge.size:
        b[edge] = [math.floor(math.log(v) / _LOG_R) for v in x[edge].tolist()]
    return b.astype(np.int64)


def sequential_sum(start: float, values: np.ndarray) -> float:
    """``start + v0 + v1 + ...`` left to right (``sum()`` compensates from Python 3.12 on)."""
    if values.size == 0:
        return start
    return float(np.cumsum(np.concatenate(([start], values)))[-1])


@dataclass(slots=True)
class LogHistogram:
    """Counts of positive finite values in log buckets (2 % wide); zeros counted apart."""

    counts: dict[int, int] = field(default_factory=dict)
    zeros: int = 0
    n: int = 0

    def add(self, x: float) -> None:
        if not math.isfinite(x) or x < 0:
            return
        self.n += 1
        if x == 0:
            self.zeros += 1
            return
        b = math.floor(math.log(x) / _LOG_R)
        self.counts[b] = self.counts.get(b, 0) + 1

    def add_many(self, x: np.ndarray) -> None:
        """``add`` for each value of a float64 array."""
        x = x[np.isfinite(x) & (x >= 0)]
        if x.size == 0:
            return
        self.n += int(x.size)
        pos = x[x != 0]
        self.zeros += int(x.size - pos.size)
        if pos.size == 0:
            return
        b = buckets(pos)
        lo = int(b.min())
        counts = np.bincount(b - lo)
        for k in np.flatnonzero(counts).tolist():
            key = k + lo
            self.counts[key] = self.counts.get(key, 0) + int(counts[k])

    def merge(self, other: LogHistogram) -> None:
        self.n += other.n
        self.zeros += other.zeros
        for b, c in other.counts.items():
            self.counts[b] = self.counts.get(b, 0) + c

    def quantile(self, q: float) -> float | None:
        """Approximate q-quantile (bucket geometric centre); None when empty."""
        if self.n == 0:
            return None
        target = q * (self.n - 1)
        seen = self.zeros
        if target < seen:
            return 0.0
        for b in sorted(self.counts):
            seen += self.counts[b]
            if target < seen:
                return math.exp((b + 0.5) * _LOG_R)
        return math.exp((max(self.counts) + 0.5) * _LOG_R)

    def fraction_above(self, t: float) -> float:
        """Fraction of values above ``t`` (buckets whose centre exceeds t)."""
        if self.n == 0:
            return 0.0
        above = sum(c for b, c in self.counts.items() if math.exp((b + 0.5) * _LOG_R) > t)
        return above / self.n

    def state(self) -> dict[str, Any]:
        return {"counts": sorted(self.counts.items()), "zeros": self.zeros, "n": self.n}

    @classmethod
    def from_state(cls, s: dict[str, Any]) -> LogHistogram:
        return cls({int(b): int(c) for b, c in s["counts"]}, int(s["zeros"]), int(s["n"]))


@dataclass(slots=True)
class Bin:
    """Summary of one epoch (or step block)."""

    key: int
    first_step: int
    last_step: int
    count: int = 0
    total: float = 0.0
    max: float = -math.inf
    hist: LogHistogram = field(default_factory=LogHistogram)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def state(self) -> list[Any]:
        return [self.key, self.first_step, self.last_step, self.count, self.total, self.max,
                self.hist.state()]  # fmt: skip

    @classmethod
    def from_state(cls, s: list[Any]) -> Bin:
        return cls(int(s[0]), int(s[1]), int(s[2]), int(s[3]), float(s[4]), float(s[5]),
                   LogHistogram.from_state(s[6]))  # fmt: skip


class Bins:
    """A metric summarised per epoch (if records carry ``epoch``) or per doubling step block."""

    def __init__(
        self, max_bins: int = 64, block: int = 16, histogram: bool = True, *, by_step: bool = False
    ) -> None:
        self.max_bins = max_bins
        self.block = block
        self.histogram = histogram
        #: "epoch" | "step", fixed by the first record (always "step" with ``by_step``)
        self.mode: str | None = "step" if by_step else None
        self.bins: dict[int, Bin] = {}
        self._last_key = 0

    def where(self, chosen: list[Bin]) -> tuple[list[int], list[int]]:
        """(steps, epochs) of ``chosen`` bins for a finding: epochs if the log has them."""
        if self.mode == "epoch":
            return [], [b.key for b in chosen]
        return [b.first_step for b in chosen], []

    def add(self, step: int, epoch: float | None, value: float) -> None:
        if not math.isfinite(value):
            return
        if self.mode is None:
            self.mode = "epoch" if epoch is not None else "step"
        if self.mode == "epoch":
            # a non-finite epoch is no position: the record joins the previous record's bin
            key = int(epoch) if epoch is not None and math.isfinite(epoch) else self._last_key
        else:
            key = step // self.block
        self._last_key = key
        b = self.bins.get(key)
        if b is None:
            b = self.bins[key] = Bin(key, step, step)
        b.first_step = min(b.first_step, step)
        b.last_step = max(b.last_step, step)
        b.count += 1
        b.total += value
        b.max = max(b.max, value)
        if self.histogram:
            b.hist.add(value)
        if self.mode == "step" and len(self.bins) > self.max_bins:
            self._coarsen()

    def add_many(
        self,
        batch: Batch,
        idx: np.ndarray,
        values: np.ndarray,
        objects: Sequence[Any] | None = None,
    ) -> None:
        """``add(step, epoch, value)`` for the batch's records at ``idx``, in order.

        ``values`` (float64) are the values at ``idx``. ``objects``, indexed like the batch, holds
        them as the records do (for the stored maxima) when they may not be floats. Call
        ``batch.check_bins()`` before changing any state (it may raise Unsupported).
        """
        keep = np.isfinite(values)
        if not keep.all():
            idx, values = idx[keep], values[keep]
        n = int(idx.size)
        if n == 0:
            return
        steps = batch.steps[idx]
        epoch_none = batch.none("epoch")
        none = epoch_none[idx] if epoch_none is not None else None
        if self.mode is None:
            self.mode = "epoch" if none is None or not none[0] else "step"
        if self.mode == "epoch":
            keys = batch.epoch_keys()[idx]
            if none is not None and none.any():
                # a record without an epoch joins the previous record's bin
                last = np.maximum.accumulate(np.where(none, -1, np.arange(n)))
                keys = np.where(last >= 0, keys[np.maximum(last, 0)], self._last_key)
            for a, b in _runs(keys, 0, n):
                self._add_run(int(keys[a]), steps, values, idx, objects, a, b)
            self._last_key = int(keys[-1])
            return
        i = 0
        while i < n:
            j = min(n, i + _CHUNK)
            keys = steps[i:j] // self.block
            for a, b in _runs(keys, i, j):
                key = int(keys[a - i])
                self._last_key = key
                grows = key not in self.bins
                if len(self.bins) + grows > self.max_bins:
                    # this record's add coarsens: do it, then re-key the rest at the new width
                    self._add_run(key, steps, values, idx, objects, a, a + 1)
                    self._coarsen()
                    i = a + 1
                    break
                self._add_run(key, steps, values, idx, objects, a, b)
            else:
                i = j

    def _add_run(
        self,
        key: int,
        steps: np.ndarray,
        values: np.ndarray,
        idx: np.ndarray,
        objects: Sequence[Any] | None,
        a: int,
        b: int,
    ) -> None:
        """Values ``a:b`` (all of one bin) into bin ``key``, as ``add`` one by one would."""
        bin_ = self.bins.get(key)
        if bin_ is None:
            first = int(steps[a])
            bin_ = self.bins[key] = Bin(key, first, first)
        bin_.first_step = min(bin_.first_step, int(steps[a:b].min()))
        bin_.last_step = max(bin_.last_step, int(steps[a:b].max()))
        bin_.count += b - a
        vals = values[a:b]
        bin_.total = sequential_sum(bin_.total, vals)
        # argmax gives the first of equal maxima, as max(b.max, value) keeps the earlier one
        top = a + int(np.argmax(vals))
        value = objects[int(idx[top])] if objects is not None else float(values[top])
        bin_.max = max(bin_.max, value)
        if self.histogram:
            bin_.hist.add_many(vals)

    def _coarsen(self) -> None:
        # Halve the resolution: merge blocks pairwise so memory stays bounded on long runs.
        self.block *= 2
        merged: dict[int, Bin] = {}
        for key in sorted(self.bins):
            b = self.bins[key]
            k = key // 2
            m = merged.get(k)
            if m is None:
                b.key = k
                merged[k] = b
                continue
            m.first_step = min(m.first_step, b.first_step)
            m.last_step = max(m.last_step, b.last_step)
            m.count += b.count
            m.total += b.total
            m.max = max(m.max, b.max)
            m.hist.merge(b.hist)
        self.bins = merged

    def ordered(self) -> list[Bin]:
        return [self.bins[k] for k in sorted(self.bins)]

    def label(self, b: Bin) -> str:
        return f"epoch {b.key}" if self.mode == "epoch" else f"steps {b.first_step}-{b.last_step}"

    def state_dict(self) -> dict[str, Any]:
        return {
            "max_bins": self.max_bins,
            "block": self.block,
            "histogram": self.histogram,
            "mode": self.mode,
            "last_key": self._last_key,
            "bins": [b.state() for b in self.ordered()],
        }

    def load_state_dict(self, s: dict[str, Any]) -> None:
        self.max_bins = int(s["max_bins"])
        self.block = int(s["block"])
        self.histogram = bool(s["histogram"])
        self.mode = s["mode"]
        self._last_key = int(s["last_key"])
        self.bins = {int(b[0]): Bin.from_state(b) for b in s["bins"]}


def _runs(keys: np.ndarray, offset: int, end: int) -> list[tuple[int, int]]:
    """(start, stop) of each run of equal consecutive keys, shifted by ``offset``."""
    cuts = (np.flatnonzero(keys[1:] != keys[:-1]) + 1 + offset).tolist()
    return list(zip([offset, *cuts], [*cuts, end], strict=True))
