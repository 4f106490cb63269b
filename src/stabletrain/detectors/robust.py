"""Robust statistics of a window of values: the median and 1.4826·MAD (a std that outliers
cannot inflate), for one window (the live path) or many at once (the doctor's bulk replay).
Both give the same numbers: the same sorted-order medians and arithmetic."""

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
