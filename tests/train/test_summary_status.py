"""A run that ends with a NaN/inf loss is labelled diverged, never completed (real tiny runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from .helpers import train

# unstable-digits feeds a NaN batch at step 30 and 1e6-scaled batches; 23 steps/epoch
TWO_EPOCHS = ("train.epochs=2",)


def test_a_run_that_ends_nan_is_diverged_not_completed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "off"
    train("unstable-digits.yaml", run, *TWO_EPOCHS, "guard.preset=off")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["final_loss"] is None  # NaN, written as null
    assert summary["status"] == "diverged"
    assert summary["diverged_at_step"] == 30 and summary["stopped_as"] == "completed"
    out = capsys.readouterr().out
    assert "status diverged (loss NaN/inf from step 30 to the end)" in out
    assert "status completed" not in out


def test_the_guarded_run_that_skipped_the_nan_batch_completed(tmp_path: Path) -> None:
    run = tmp_path / "default"
    train("unstable-digits.yaml", run, *TWO_EPOCHS)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["skipped_steps"] >= 1
    assert summary["status"] == "completed" and "diverged_at_step" not in summary
