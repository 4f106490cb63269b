"""measure: the fused norm equals torch's clip_grad_norm_ norm; NaN propagates; int flags."""

from __future__ import annotations

import math

import pytest
import torch

from stabletrain import measure


def _model_with_grads() -> torch.nn.Module:
    m = torch.nn.Sequential(torch.nn.Linear(32, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    m(torch.randn(8, 32)).sum().backward()
    return m


@pytest.mark.parametrize("p", [2.0, 1.0, math.inf])
def test_total_norm_matches_clip_grad_norm(p: float) -> None:
    m = _model_with_grads()
    ours = measure.total_grad_norm(measure.grads_of(m.parameters()), norm_type=p)
    theirs = torch.nn.utils.clip_grad_norm_(m.parameters(), max_norm=math.inf, norm_type=p)
    assert float(ours) == pytest.approx(float(theirs), rel=1e-6)


def test_nan_propagates_and_empty_is_zero() -> None:
    m = _model_with_grads()
    m[0].weight.grad[0, 0] = float("nan")  # type: ignore[index]
    assert math.isnan(float(measure.total_grad_norm(measure.grads_of(m.parameters()))))
    assert float(measure.total_grad_norm([])) == 0.0
    assert not measure.all_finite([m[0].weight.grad])  # type: ignore[list-item]


def test_single_process_reductions_are_identity() -> None:
    n = torch.tensor(3.0)
    assert measure.reduce_norm_across_ranks(n) is n
    flag = measure.any_rank_flag(torch.tensor([1, 0]))
    assert flag.dtype == torch.int32 and flag.tolist() == [1, 0]
