"""Bounded-memory summaries of a metric over a run: a log-scale histogram and per-epoch bins.

Detectors must keep small state (they run live for millions of steps and are checkpointed), yet
several findings need quantiles ("median grad norm within 0.75-1.0× the clip", "p90 per epoch")
against thresholds only known at ``finish(facts)``. A log histogram with 2 % wide buckets answers
any quantile or "fraction above t" to 2 % accuracy in O(#distinct buckets) memory.

:class:`Bins` groups records by integer epoch when the log has epochs, else by step blocks whose
width doubles to keep at most ``max_bins`` blocks, so a million-step log still has ~64 bins.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

_RATIO = 1.02
_LOG_R = math.log(_RATIO)


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

    def __init__(self, max_bins: int = 64, block: int = 16, histogram: bool = True) -> None:
        self.max_bins = max_bins
        self.block = block
        self.histogram = histogram
        self.mode: str | None = None  # "epoch" | "step", fixed by the first record
        self.bins: dict[int, Bin] = {}
        self._last_key = 0

    def add(self, step: int, epoch: float | None, value: float) -> None:
        if not math.isfinite(value):
            return
        if self.mode is None:
            self.mode = "epoch" if epoch is not None else "step"
        if self.mode == "epoch":
            key = int(epoch) if epoch is not None else self._last_key
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
