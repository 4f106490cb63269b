"""Robust statistics: the median and 1.4826·MAD of a window (a std that outliers cannot
inflate), for one window (the live path) or many at once (the doctor's bulk replay), giving the
same numbers; a rank correlation with time (is a series trending?); and the noise of a short
series around its own trend (:func:`trend_noise`)."""

from __future__ import annotations

import statistics

import numpy as np

_MAD_TO_STD = 1.4826


def robust_stats(values: list[float]) -> tuple[float, float]:
    """``(median, robust std)`` of ``values``: 1.4826·MAD, floored at 1e-3·|median| (and 1e-12)."""
    med = statistics.median(values)
    mad = statistics.median([abs(v - med) for v in values])
    return med, max(_MAD_TO_STD * mad, 1e-3 * abs(med), 1e-12)


def robust_stats_many(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`robust_stats` of each row of a float64 array: the same sorted-order medians and
    arithmetic, so the same values (a zero median may come out as -0.0)."""
    s = np.sort(windows, axis=1)
    h = s.shape[1] // 2
    med = s[:, h] if s.shape[1] % 2 else (s[:, h - 1] + s[:, h]) / 2
    d = np.sort(np.abs(s - med[:, None]), axis=1)
    mad = d[:, h] if s.shape[1] % 2 else (d[:, h - 1] + d[:, h]) / 2
    return med, np.maximum(np.maximum(_MAD_TO_STD * mad, 1e-3 * np.abs(med)), 1e-12)


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
    return _MAD_TO_STD * resid[len(resid) // 2]
