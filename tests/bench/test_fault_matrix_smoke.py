"""The fault matrix's harness on one tiny case: faults really enter, verdicts and crashes count."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))
import fault_matrix as fm  # noqa: E402


@pytest.fixture(autouse=True)
def _short_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fm, "STEPS", 40)


def test_nan_batches_reach_the_plain_loop_and_the_skip_loop_survives() -> None:
    sc = fm.BY_NAME["nan_sparse"]  # NaN batch at position 30 of 40
    none = fm.run_one(sc, "none", 0)
    skip = fm.run_one(sc, "skipclip", 0)
    ref = fm.run_one(fm.BY_NAME["stable_mlp"], "none", 0)
    judge = fm.Judge([none, skip, ref])
    assert not none.finite and fm.diverged(none) and judge.failed(none)
    assert skip.finite and not fm.diverged(skip) and skip.steps == 40
    assert judge.rel(ref) == 1.0 and len(ref.evals) == 4
    assert judge.worse_than_none(skip) is False


def test_a_crash_is_counted_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("stepper exploded")

    monkeypatch.setattr(fm, "make_stepper", broken)
    r = fm.run_one(fm.BY_NAME["stable_mlp"], "guard", 0)
    assert r.crashed is not None and "stepper exploded" in r.crashed
    assert r.metric == 0.0
    assert fm.Judge([r]).failed(r)


def test_gradient_accumulation_counts_optimizer_steps() -> None:
    r = fm.run_one(fm.BY_NAME["nan_accum"], "skipclip", 0)  # 4 micro-batches per step
    assert r.steps == 40 and r.finite
    assert torch.isfinite(torch.tensor(r.val_loss))
