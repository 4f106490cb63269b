"""Tiny real models and data for the guard tests: Linear(32, 2), a 3-conv CNN, a 2-layer GPT."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn


def linear_data(n: int = 4096, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 32, generator=g)
    return x, (x[:, 0] + x[:, 1] > 0).long()


class CNN(nn.Module):
    """3 conv + linear head on 1x8x8 inputs (the seeds' digits shape)."""

    def __init__(self, init_std: float | None = None) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1), nn.ReLU(),
            nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2),
        )  # fmt: skip
        if init_std is not None:
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.normal_(m.weight, std=init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convs(x)


def cnn_data(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 8, 8, generator=g)
    return x, (x[:, :, :4].mean(dim=(1, 2, 3)) > 0).long()


def tiny_gpt() -> nn.Module:
    from stabletrain.train.config import GPTSection
    from stabletrain.train.models import GPT

    return GPT(GPTSection(n_layer=2, n_head=2, n_embd=32), vocab_size=16, block_size=16)


def gpt_batch(i: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(i)
    start = torch.randint(0, 16, (8, 1), generator=g)
    seq = (start + torch.arange(17)) % 16  # learnable: next token = previous + 1
    return seq[:, :-1], seq[:, 1:]


def digits(val: int = 360) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits, standardised: 1437 train, then the first ``val`` of the rest."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(d.target)
    return x[:1437], y[:1437], x[1437 : 1437 + val], y[1437 : 1437 + val]


def digits_fit(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    step: Any = None,
    *,
    seed: int = 0,
    batch: int = 32,
    steps: int = 150,
) -> float:
    """``steps`` steps of ``batch`` on digits, each loss handed to ``step(loss)`` (a guarded
    step), or, without ``step``, the plain loop with the guard's default clip (1.0); the val
    accuracy at the end."""
    xt, yt, xv, yv = digits()
    perm = torch.randperm(1437, generator=torch.Generator().manual_seed(seed))
    for s in range(steps):
        at = (s * batch) % (1437 // batch * batch)
        idx = perm[at : at + batch]
        loss = F.cross_entropy(model(xt[idx]), yt[idx])
        if step is not None:
            step(loss)
            continue
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    with torch.no_grad():
        return float((model(xv).argmax(1) == yv).float().mean())


def deep_mlp(depth: int = 6, width: int = 64, init_std: float | None = None) -> nn.Module:
    """A ReLU MLP on the 64 digits pixels, no normalisation; Kaiming init unless ``init_std``."""
    layers: list[nn.Module] = []
    for i in range(depth):
        layers += [nn.Linear(64 if i == 0 else width, width), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(width, 10))
    if init_std is not None:
        for m in model.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=init_std)
    return model


def gpt_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def snapshot_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Deep copy of model + optimizer state for bitwise comparisons."""
    from stabletrain.guard.snapshots import to_cpu

    return {"model": to_cpu(model.state_dict()), "opt": to_cpu(opt.state_dict())}


def same(a: Any, b: Any) -> bool:
    """Bitwise equality of nested states (tensors compared with torch.equal, NaN == NaN)."""
    if isinstance(a, torch.Tensor):
        return (
            isinstance(b, torch.Tensor)
            and a.shape == b.shape
            and a.dtype == b.dtype
            and torch.equal(torch.nan_to_num(a), torch.nan_to_num(b))
            and torch.equal(a.isnan(), b.isnan())
        )
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


@pytest.fixture
def h() -> SimpleNamespace:
    """The helpers above, as ``h.linear_data()`` etc. (test modules cannot import conftest)."""
    return SimpleNamespace(
        linear_data=linear_data,
        cnn_data=cnn_data,
        CNN=CNN,
        tiny_gpt=tiny_gpt,
        gpt_batch=gpt_batch,
        gpt_loss=gpt_loss,
        digits=digits,
        digits_fit=digits_fit,
        deep_mlp=deep_mlp,
        snapshot_state=snapshot_state,
        same=same,
    )
