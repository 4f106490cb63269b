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
    # re-evaluated at the step of the rollback (the run may go on after it)
    again = [i for i in range(1, len(evals)) if evals[i]["step"] == evals[i - 1]["step"]]
    assert again, "the restored weights must be evaluated again at the rollback's step"
    best = min(e["eval_loss"] for e in evals[: again[0]])
    # the restored weights are the best evaluation's: evaluated again, they score exactly that
    assert evals[again[0]]["eval_loss"] == pytest.approx(best, rel=1e-6)
