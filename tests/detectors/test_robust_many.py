"""The bulk robust statistics (the doctor's replay) give the very floats the live path does, for
every window width (odd, even, below the two-run search's minimum) and for ties, zeros and huge
values, since the spike baseline's cached state must not depend on which path computed it."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from stabletrain.detectors.robust import robust_stats, robust_stats_many


def _series(kind: str, n: int, rng: np.random.Generator) -> np.ndarray:
    x = rng.standard_normal(n)
    if kind == "ties":
        return np.round(x * 2) / 2
    if kind == "zeros":
        x[::3] = 0.0
        return x
    if kind == "wide":  # tiny values with rare huge ones (a loss with overflow bursts)
        x = np.abs(x) * 1e-9
        x[::5] = 1e300  # the baseline holds finite values only
        return x
    return x


@pytest.mark.parametrize("width", [1, 2, 3, 7, 8, 9, 16, 33, 100, 101])
@pytest.mark.parametrize("kind", ["normal", "ties", "zeros", "wide"])
def test_bulk_stats_equal_live_stats(width: int, kind: str) -> None:
    rng = np.random.default_rng(width)
    x = _series(kind, 600 + width, rng)
    windows = sliding_window_view(x, width)[np.arange(0, 600, 7)]
    med, std = robust_stats_many(windows.copy())
    for r in range(windows.shape[0]):
        assert (float(med[r]), float(std[r])) == robust_stats(windows[r].tolist()), r
