"""After the guard restores the best evaluation's weights, the trainer evaluates them again, so the
run's last evaluation (its "final" figures, the next plateau/early-stop decision) is about the model
it keeps, not the one it threw away (the demo reported 91.36% for a run holding 97.21% weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .helpers import read_jsonl, train

pytestmark = pytest.mark.slow


def test_the_last_eval_is_of_the_restored_weights(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train("unstable-digits.yaml", run) == 0
    events = read_jsonl(run / "events.jsonl")
    rollbacks = [e for e in events if e["event"] == "rollback" and "evaluation" in e["message"]]
    assert rollbacks, "the scenario must restore the best evaluation's weights"
    evals = read_jsonl(run / "evals.jsonl")
    best = min(e["eval_loss"] for e in evals)
    # the restored weights are the best evaluation's: evaluated again, they score exactly that
    assert evals[-1]["eval_loss"] == pytest.approx(best, rel=1e-6)
    assert evals[-1]["step"] == evals[-2]["step"]  # re-evaluated at the step of the rollback
