"""Clipping math with hand-computed expectations; adaptive stats never poisoned; state round-trips."""

from __future__ import annotations

import math

import pytest
import torch

from stabletrain.guard.clipping import (
    PercentileClipper,
    ZScoreClipper,
    agc_,
    clip_coef,
    percentile,
    zscore_target,
)


def test_fixed_coef_matches_clip_grad_norm() -> None:
    assert float(clip_coef(torch.tensor(4.0), 1.0)) == pytest.approx(0.25, rel=1e-5)
    assert float(clip_coef(torch.tensor(0.5), 1.0)) == 1.0


def test_zscore_reciprocal_clips_bigger_outliers_harder() -> None:
    assert zscore_target(1.2, 1.0, 0.1, 2.5) is None  # z = 2 < 2.5
    t3 = zscore_target(1.3, 1.0, 0.1, 2.5)  # z = 3 → 1 + 6.25/3 * 0.1
    t10 = zscore_target(2.0, 1.0, 0.1, 2.5)  # z = 10 → 1 + 0.625 * 0.1
    assert t3 == pytest.approx(1.0 + 6.25 / 3 * 0.1)
    assert t10 == pytest.approx(1.0625)
    assert t10 < t3


def test_zscore_clipper_ignores_nan_and_round_trips() -> None:
    c = ZScoreClipper(warmup=4)
    for v in [1.0, 1.2, 0.8, 1.0]:
        c.observe(v)
    assert c.mean == pytest.approx(1.0) and c.var == pytest.approx(0.02)
    c.observe(float("nan"))
    c.observe(float("inf"))
    assert math.isfinite(c.mean) and math.isfinite(c.var) and c.n == 4
    assert c.max_norm(5.0) is not None and c.max_norm(1.0) is None
    d = ZScoreClipper(warmup=4)
    d.load_state_dict(c.state_dict())
    assert d.state_dict() == c.state_dict()


def test_percentile_hand_computed_and_round_trip() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 90) == pytest.approx(4.6)
    c = PercentileClipper(q=50, window=10, warmup=3)
    for v in [1.0, 2.0, 3.0, float("nan")]:
        c.observe(v)
    assert list(c.history) == [1.0, 2.0, 3.0]
    assert c.max_norm(10.0) == 2.0 and c.max_norm(1.5) is None
    d = PercentileClipper(q=50, window=10, warmup=3)
    d.load_state_dict(c.state_dict())
    assert d.state_dict() == c.state_dict()


def test_agc_is_unit_wise() -> None:
    w = torch.nn.Parameter(torch.tensor([[3.0, 4.0], [0.3, 0.4]]))  # unit norms 5 and 0.5
    w.grad = torch.tensor([[0.03, 0.04], [3.0, 4.0]])  # grad unit norms 0.05 and 5
    agc_([w], clip=0.1)
    assert torch.allclose(w.grad[0], torch.tensor([0.03, 0.04]))  # 0.05 <= 0.1 * 5: untouched
    assert float(w.grad[1].norm()) == pytest.approx(0.05, rel=1e-4)  # clipped to 0.1 * 0.5
