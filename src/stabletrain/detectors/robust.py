"""Robust statistics: the median and 1.4826·MAD of a window (a std that outliers cannot
inflate), for one window (the live path) or many at once (the doctor's bulk replay), giving the
same numbers; a rank correlation with time (is a series trending?); and the noise of a short
series around its own trend (:func:`trend_noise`)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence

import numpy as np

MAD_TO_STD = 1.4826


def robust_stats(values: list[float]) -> tuple[float, float]:
    """``(median, robust std)`` of ``values``: 1.4826·MAD, floored at 1e-3·|median| (and 1e-12)."""
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values])
    return med, max(MAD_TO_STD * mad, 1e-3 * abs(med), 1e-12)


def robust_stats_many(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_stats` of each row of a float64 array: the same sorted-order medians and
    arithmetic, so the same values (a zero median may come out as -0.0). Sorts ``windows`` in
    place (callers pass a fresh copy, e.g. a fancy-indexed window view)."""
    windows.sort(axis=1)
    s = windows
    w = s.shape[1]
    h = w // 2
    med = s[:, h] if w % 2 else (s[:, h - 1] + s[:, h]) / 2
    mad = _mad_of_sorted(s, med) if w >= 8 else _mad_by_sort(s, med)
    return med, np.maximum(np.maximum(MAD_TO_STD * mad, 1e-3 * np.abs(med)), 1e-12)


def _mad_by_sort(s: np.ndarray, med: np.ndarray) -> np.ndarray:
    d = np.sort(np.abs(s - med[:, None]), axis=1)
    h = s.shape[1] // 2
    return d[:, h] if s.shape[1] % 2 else (d[:, h - 1] + d[:, h]) / 2


def _mad_of_sorted(s: np.ndarray, med: np.ndarray) -> np.ndarray:
    """The median of ``|row - med|`` for rows already sorted, without a second sort: the
    distances below the median (``med - s[top - i]``) and above it (``s[bottom + j] - med``)
    are two ascending runs, and the k-th smallest of two sorted runs is found by a binary
    search on how many come from the first (O(log w) gathers per row, all rows at once). The
    distances are the same floats ``abs(s - med)`` gives (IEEE ``a - b == -(b - a)``)."""
    n, w = s.shape
    h = w // 2
    flat = s.ravel()
    row0 = np.arange(n) * w
    # odd w: the median itself is distance 0 and heads the run below; k is 1-based
    na, nb, k, top, bottom = (h + 1, h, h + 1, h, h + 1) if w % 2 else (h, h, h, h - 1, h)

    def below(i: np.ndarray) -> np.ndarray:
        return med - flat[row0 + top - i]

    def above(j: np.ndarray) -> np.ndarray:
        return flat[row0 + bottom + j] - med

    lo, hi = np.full(n, max(0, k - nb)), np.full(n, min(k, na))
    while (open_ := lo < hi).any():
        i = (lo + hi) >> 1
        more = below(np.minimum(i, na - 1)) < above(np.maximum(k - i - 1, 0))
        lo = np.where(open_ & more, i + 1, lo)
        hi = np.where(open_ & ~more, i, hi)
    i, j = lo, k - lo
    kth = np.maximum(
        np.where(i > 0, below(np.maximum(i - 1, 0)), -np.inf),
        np.where(j > 0, above(np.maximum(j - 1, 0)), -np.inf),
    )
    if w % 2:
        return kth
    nxt = np.minimum(
        np.where(i < na, below(np.minimum(i, na - 1)), np.inf),
        np.where(j < nb, above(np.minimum(j, nb - 1)), np.inf),
    )
    return (kth + nxt) / 2


def diff_noise(values: Sequence[float] | np.ndarray) -> float:
    """Robust std of one value of a series around its local level: the MAD of the first
    differences (a trend of any slope cancels out of them), scaled to the values' std (a
    difference of two independent values has sqrt(2) their std); 0 with fewer than 3 values."""
    d = np.diff(np.asarray(values, dtype=float))
    if d.size < 2:
        return 0.0
    return float(MAD_TO_STD * np.median(np.abs(d - np.median(d))) / math.sqrt(2.0))


def spearman(xs: list[float]) -> float:
    """Rank correlation of ``xs`` with its index (ties broken by order; enough for trends)."""
    n = len(xs)
    if n < 3:
        return 0.0
    order = sorted(range(n), key=lambda i: xs[i])
    ranks = [0] * n
    for r, i in enumerate(order):
        ranks[i] = r
    d2 = sum((ranks[i] - i) ** 2 for i in range(n))
    return 1.0 - 6.0 * d2 / (n * (n * n - 1))


#: points :func:`trend_noise` needs for a noise estimate (below it, it returns 0: no estimate)
MIN_NOISE_POINTS = 3


def noise_points(values: list[float]) -> int:
    """How many points :func:`trend_noise` measures the noise on: the inner points of the series
    that are not local peaks. Fewer than :data:`MIN_NOISE_POINTS`: no noise estimate, so a rule
    that compares a move with the noise has nothing to compare it with."""
    return sum(
        1
        for i in range(1, len(values) - 1)
        if not (values[i] > values[i - 1] and values[i] > values[i + 1])
    )


def trend_noise(values: list[float]) -> float:
    """Robust σ of a short series (evals, per-epoch means) around its running median of 3, over
    the points that are not local peaks, so the spikes a detector is judging do not inflate the
    noise they are judged against; 0 with fewer than 3 such points."""
    resid = []
    for i in range(1, len(values) - 1):
        a, v, b = values[i - 1], values[i], values[i + 1]
        if v > a and v > b:
            continue
        resid.append(abs(v - sorted((a, v, b))[1]))
    if len(resid) < MIN_NOISE_POINTS:
        return 0.0
    resid.sort()
    return MAD_TO_STD * resid[len(resid) // 2]
