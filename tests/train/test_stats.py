"""The epoch summary line: what a skipped step contributes (a count, not a mean)."""

from __future__ import annotations

import math

from stabletrain.train.stats import EpochStats


def test_a_skipped_step_is_counted_not_averaged() -> None:
    s = EpochStats()
    s.add(0.5, 0.8, 1.0, 1e-3)
    s.add(5208.0, 0.1, 4.0e6, 1e-3, skipped=True)  # a 1e6-scaled batch the guard skipped
    s.add(0.3, 0.9, 2.0, 1e-3)
    line = s.line(3, 6)
    assert "loss 0.4000" in line and "accuracy 85.00%" in line
    assert "grad-norm mean 1.500 max 2.000" in line and "skipped 1 (not in the means)" in line


def test_nonfinite_steps_are_counted_with_or_without_a_skip() -> None:
    s = EpochStats()
    s.add(math.nan, 0.1, math.nan, 1e-3)  # no guard: the NaN step was applied
    s.add(math.nan, 0.1, None, 1e-3, skipped=True)
    assert s.nonfinite == 2 and s.skipped == 1 and s.loss_n == 0
    assert "non-finite steps 2" in s.line(1, 1)
