"""Adam betas given in the wrong order: swapped back before the first update, and said so."""

from __future__ import annotations

import functools
import logging
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from tests.guard.conftest import gpt_batch, tiny_gpt

from stabletrain import Guard, GuardConfig
from stabletrain.train.config import DataSection, GPTSection
from stabletrain.train.data import load_dataset
from stabletrain.train.models import GPT


@functools.cache
def _chars() -> Any:
    return load_dataset(DataSection(name="charcorpus", seq_len=32), seed=0)


def _train(
    betas: tuple[float, float], guarded: bool, steps: int = 100
) -> tuple[float, torch.optim.Optimizer]:
    """A 2-layer GPT as a character LM on the Python standard library's sources (the fault
    matrix's gpt family), AdamW 3e-3; the mean train loss of the last 10 steps."""
    ds = _chars()
    torch.manual_seed(0)
    model = GPT(GPTSection(n_layer=2, n_head=2, n_embd=48), ds.num_classes, 32)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=betas)
    guard = Guard(model, opt, config=GuardConfig.preset("default")) if guarded else None
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        idx = torch.randint(0, len(ds.x_train), (16,), generator=g)
        x, y = ds.x_train[idx], ds.y_train[idx]
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        if guard is not None:
            guard.step(loss)
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            opt.zero_grad()
        losses.append(float(loss.detach()))
    return sum(losses[-10:]) / 10, opt


def test_swapped_adam_betas_are_put_back_before_the_first_update(
    caplog: pytest.LogCaptureFixture,
) -> None:
    right, _ = _train((0.9, 0.999), guarded=False)
    wrong, _ = _train((0.999, 0.9), guarded=False)
    assert wrong > right + 0.1  # the fault is real on this model (2.83 against 2.62)
    with caplog.at_level(logging.WARNING, logger="stabletrain"):
        repaired, opt = _train((0.999, 0.9), guarded=True)
    assert opt.param_groups[0]["betas"] == (0.9, 0.999)
    assert repaired < right + 0.05
    assert any("optimizer-betas" in r.getMessage() or "Adam's bound" in r.getMessage()
               for r in caplog.records)  # fmt: skip


def test_betas_inside_the_bound_are_left_alone() -> None:
    for betas in ((0.9, 0.999), (0.9, 0.95), (0.9, 0.9), (0.0, 0.99), (0.5, 0.9)):
        torch.manual_seed(0)
        model = tiny_gpt()
        opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=betas)
        guard = Guard(model, opt)
        x, y = gpt_batch(0)
        guard.step(F.cross_entropy(model(x).flatten(0, 1), y.flatten()))
        assert opt.param_groups[0]["betas"] == betas
