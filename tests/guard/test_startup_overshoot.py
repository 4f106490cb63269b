"""The start-up overshoot rule (``guard/startup.py``, the early best) on a real tiny GPT: a
transformer started at too high an AdamW LR without warm-up falls for a few steps, then gives
its early best back and stalls at the unigram level while the updates throw the init away; the
guard rolls back to the start and ramps the LR. A healthy fast start (the same GPT at a third
of that LR) is left alone, and the evaluations of the blown-up start are forgotten."""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from stabletrain.guard.guard import Guard
from stabletrain.train.config import DataSection, GPTSection
from stabletrain.train.data import Dataset, load_dataset
from stabletrain.train.models import GPT


@functools.cache
def _text() -> Dataset:
    """Character blocks of 32 from the Python standard library's sources (the fault matrix's)."""
    return load_dataset(DataSection(name="charcorpus", seq_len=32), seed=0)


def _loss(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = model(x)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))


def _run(lr: float, steps: int, *, eval_every: int = 0) -> tuple[Guard, list[str]]:
    """A 2-layer pre-LN GPT, AdamW at ``lr`` with no warm-up, batch 16, under the default
    guard; the violations of 'a start-up rollback forgets the evaluations before it'."""
    ds = _text()
    torch.manual_seed(0)
    model = GPT(GPTSection(n_layer=2, n_head=2, n_embd=48), ds.num_classes, 32)
    guard = Guard(model, torch.optim.AdamW(model.parameters(), lr=lr))
    gen = torch.Generator().manual_seed(1000)
    problems: list[str] = []
    for s in range(steps):
        i = torch.randint(0, len(ds.x_train), (16,), generator=gen)
        before = guard.policy.rollbacks
        guard.step(_loss(model, ds.x_train[i], ds.y_train[i]))
        if guard.policy.rollbacks > before and (
            guard.evals.best is not None or guard.snapshots.best_eval is not None
        ):
            problems.append(f"step {s}: the best evaluation of the blown-up start was kept")
        if eval_every and s % eval_every == eval_every - 1:
            with torch.no_grad():
                guard.observe_eval(float(_loss(model, ds.x_val[:64], ds.y_val[:64])))
    return guard, problems


def test_a_gpt_without_warm_up_that_gives_up_its_early_best_is_rolled_back_and_ramped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("WARNING", logger="stabletrain")
    guard, _ = _run(3e-2, 40)
    # the loss never rose above its first value (the first-loss rule cannot see it), but it
    # gave its early best back while the weights moved more than their own norm
    assert guard.startup.rule == "early-best" and guard.policy.rollbacks == 1
    # the ramp's ceiling: 3e-2 x 0.5 / how far the weights moved (~1.7x their norm), below
    # lr_backoff_factor x 3e-2: the overshoot says how much too high the LR was
    assert guard.policy.lr_cap is not None and 0.005 < guard.policy.lr_cap < 0.01
    (msg,) = [r.getMessage() for r in caplog.records if "start-up overshoot" in r.getMessage()]
    assert "early best" in msg and "away from step 1's" in msg and "rolled back" in msg, msg


def test_a_healthy_fast_gpt_start_is_left_alone() -> None:
    """AdamW 1e-2 without warm-up trains this GPT (the matrix: 0.41-0.43 accuracy, post-LN);
    its weights move ~60-80% of their norm in 20 steps and its loss jitters above its early
    best: no rollback, no LR change."""
    guard, _ = _run(1e-2, 60)
    assert guard.policy.rollbacks == 0 and guard.policy.lr_cap is None
    assert guard.policy.rewarm_start is None


def test_a_start_up_rollback_forgets_the_evaluations_of_the_blown_up_start() -> None:
    """Evaluations every 5 steps: before the rollback at ~step 16 they saw the blown-up
    weights; an eval rollback to them later would restore the damage."""
    guard, problems = _run(3e-2, 25, eval_every=5)
    assert guard.policy.rollbacks == 1
    assert problems == []
