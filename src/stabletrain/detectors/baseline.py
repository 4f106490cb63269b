"""The delayed robust baseline a spike is judged against: its values, the delay queue in front of
it, and the cached (median, robust std) — one record at a time (``push``) or a whole stretch in
bulk (``advance``).

Values enter the baseline ``delay`` records after they were seen, and values judged spikes never
enter it, so a spike and its immediate neighbours cannot drag the baseline up (the practice of
large-model teams that compare a loss against a window that ended a few steps earlier). The
statistics are recomputed every 8 additions: the median of 100 values moves slowly, and the live
guard asks for them every step.

``advance`` is ``push`` applied to a stretch of values none of which is a spike candidate (robust
z above the threshold): once the baseline is full that changes the state in a fixed way —
statistics recomputed every 8 values over windows of the stream, values entering ``delay`` later —
so it is done with numpy and stops at the first candidate, which the detector judges one by one.
``tests/detectors/test_bulk.py`` checks it equals ``push`` one by one on real logs, seeds and
fuzzed runs.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stabletrain.detectors.robust import robust_stats, robust_stats_many

__all__ = ["DelayedBaseline"]


class DelayedBaseline:
    """Owns the baseline's values, its delay queue and its cached statistics."""

    def __init__(self, *, window: int, delay: int, warmup: int) -> None:
        self.window, self.delay, self.warmup = window, delay, warmup
        self._values: deque[float] = deque(maxlen=window)
        self._pending: deque[tuple[float, bool]] = deque()
        self._stats: tuple[float, float] | None = None
        self._stale = 0  # values added since the statistics were computed

    @property
    def warm(self) -> bool:
        """Whether enough values have entered to judge against."""
        return len(self._values) >= max(self.warmup, 1)

    def stats(self) -> tuple[float, float] | None:
        """``(median, robust std)``, recomputed every 8 additions; None while warming up."""
        if not self.warm:
            return None
        if self._stats is None or self._stale >= 8:
            self._stats = robust_stats(list(self._values))
            self._stale = 0
        return self._stats

    def refreshed(self) -> tuple[float, float]:
        """The statistics recomputed now if any value entered since (confirms a candidate the
        cached, lagging statistics flagged). Only once ``stats()`` gave statistics."""
        if self._stale or self._stats is None:
            self._stats, self._stale = robust_stats(list(self._values)), 0
        return self._stats

    def fresh(self) -> tuple[float, float] | None:
        """The statistics of the values as they are now, not cached; None while warming up."""
        return robust_stats(list(self._values)) if self.warm else None

    def push(self, value: float, spike: bool) -> None:
        """Queue ``value``; the value ``delay`` records older enters unless it was a spike."""
        self._pending.append((value, spike))
        while len(self._pending) > self.delay:
            v, was_spike = self._pending.popleft()
            if not was_spike:
                self._values.append(v)
                self._stale += 1

    @property
    def steady(self) -> bool:
        """Whether ``advance`` applies: full baseline, full queue, cached statistics."""
        return (
            len(self._values) == self.window >= max(self.warmup, 1)
            and len(self._pending) == self.delay
            and self._stats is not None
        )

    def advance(self, v: np.ndarray, z_threshold: float) -> tuple[int, np.ndarray]:
        """``push(x, False)`` for the values ``v`` up to the first spike candidate (robust z above
        ``z_threshold`` against the statistics ``push`` one by one would have used); return how
        many were taken and the robust std each of them was judged with. Needs ``steady``."""
        k, d, w = len(v), len(self._pending), self.window
        pend = list(self._pending)
        # the baseline stream: the baseline, then each value popped from the pending queue
        # (record r pops the r-th of pending + block values) unless it was a spike
        joins = np.ones(k, dtype=bool)
        head = min(d, k)
        joins[:head] = [not spike for _, spike in pend[:head]]
        stream = np.concatenate(
            (np.array(self._values), [x for x, spike in pend if not spike], v[: max(k - d, 0)])
        )
        before = np.concatenate(([0], np.cumsum(joins)))  # joins before record r
        # statistics are recomputed at record r when 8 values joined since the last time; once
        # the pending values are popped every record joins, so that is every 8th record
        at: list[int] = []
        stale, r = self._stale, 0
        while r < min(d, k):
            if stale >= 8:
                at.append(r)
                stale = 0
            stale += int(joins[r])
            r += 1
        at.extend(range(r + max(0, 8 - stale), k, 8))
        starts = before[at]
        if self._stats is None:
            raise RuntimeError("DelayedBaseline.advance needs cached statistics (steady)")
        med, std = self._stats
        meds, stds = np.full(k, med), np.full(k, std)
        if at:
            m, sd = robust_stats_many(sliding_window_view(stream, w)[starts])
            which = np.searchsorted(at, np.arange(k), side="right") - 1
            has = which >= 0
            meds[has], stds[has] = m[which[has]], sd[which[has]]
        cand = np.flatnonzero((v - meds) / stds > z_threshold)
        c = int(cand[0]) if cand.size else k
        if c == 0:
            return 0, stds[:0]
        used = [a for a in at if a < c]
        if used:
            r = used[-1]
            self._stats = (float(meds[r]), float(stds[r]))
            if self._stats[0] == 0:  # the sign of a zero median: as robust_stats gives it
                self._stats = robust_stats(stream[before[r] : before[r] + w].tolist())
            self._stale = int(before[c] - before[r])
        else:
            self._stale += int(before[c])
        self._values.extend(stream[w : w + int(before[c])].tolist())
        # the queue after c records: what is left of it, then the newest values (never spikes)
        kept = pend[c:] + [(x, False) for x in v[max(0, c - d) : c].tolist()]
        self._pending = deque(kept[-d:] if d else [])
        return c, stds[:c]

    # -- state: the keys SpikeDetector.state_dict has always used -----------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "baseline": list(self._values),
            "pending": [list(p) for p in self._pending],
            "stats": None if self._stats is None else list(self._stats),
            "stale": self._stale,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._values = deque((float(v) for v in state["baseline"]), maxlen=self.window)
        self._pending = deque((float(v), bool(s)) for v, s in state["pending"])
        stats = state.get("stats")
        self._stats = None if stats is None else (float(stats[0]), float(stats[1]))
        self._stale = int(state.get("stale", 0))
