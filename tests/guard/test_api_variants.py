"""The guard under loops outsiders write that the other tests don't: float64 weights, sparse
embedding gradients, a plateau scheduler passed to the guard. Each crashed inside the guard
before (a dtype error in the weight-norm read, torch's norm has no sparse kernel, a
TypeError from ReduceLROnPlateau.step() with no metric)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import stabletrain
from stabletrain.errors import ConfigError

from .conftest import linear_data


def test_float64_model_trains_and_skips_a_nan_batch() -> None:
    torch.manual_seed(0)
    x, y = linear_data(1024)
    x = x.double()
    model = nn.Sequential(nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 2)).double()
    guard = stabletrain.Guard(model, torch.optim.AdamW(model.parameters(), lr=1e-2))
    first = None
    for i in range(40):
        xb = x[i * 16 : (i + 1) * 16].clone()
        if i == 10:
            xb[0, 0] = math.nan  # a corrupt row
        loss = F.cross_entropy(model(xb), y[i * 16 : (i + 1) * 16])
        out = guard.step(loss)
        first = first if first is not None else float(loss.detach())
        assert out.skipped == (i == 10)
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert F.cross_entropy(model(x), y).item() < 0.6 * first


class BagModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.bag = nn.EmbeddingBag(64, 2, mode="sum", sparse=True)

    def forward(self, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.bag(idx, per_sample_weights=w)


def test_sparse_embedding_gradients_are_measured_and_clipped() -> None:
    torch.manual_seed(0)
    idx = torch.randint(0, 64, (512, 4))
    y = (idx[:, 0] < 32).long()  # the first token decides the class
    w = torch.ones(512, 4)
    model = BagModel()
    opt = torch.optim.SparseAdam(list(model.parameters()), lr=5e-2)
    guard = stabletrain.Guard(model, opt)
    before = F.cross_entropy(model(idx, w), y).item()
    for i in range(60):
        sl = slice((i % 16) * 32, (i % 16 + 1) * 32)
        wb = w[sl].clone()
        if i == 20:
            wb[0, 0] = math.nan  # a NaN feature weight: the loss and the sparse grad go NaN
        out = guard.step(F.cross_entropy(model(idx[sl], wb), y[sl]))
        assert out.skipped == (i == 20)
        assert out.grad_norm is None or out.grad_norm > 0 or i == 20
    assert torch.isfinite(model.bag.weight).all()
    assert F.cross_entropy(model(idx, w), y).item() < 0.8 * before


def test_a_plateau_scheduler_passed_to_the_guard_is_refused_with_the_way_to_use_it() -> None:
    model = nn.Linear(32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=2)
    with pytest.raises(ConfigError, match=r"observe_eval.*"):
        stabletrain.Guard(model, opt, scheduler=plateau)
    stabletrain.Guard(model, opt)  # stepped by the caller instead: fine
