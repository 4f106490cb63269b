"""``stabletrain train``'s exit status on real tiny runs: a run that diverged is a failed run.

A CI script or a sweep reads the exit status first. A run whose summary status is ``diverged``
(its last loss NaN/inf) left no usable model, so it exits 3 like a run the guard stopped
(``ExitCode.RUN_FAILED``); summary.json's ``status`` tells the two apart.
"""

from __future__ import annotations

import json
from pathlib import Path

from stabletrain.errors import ExitCode

from .helpers import train

# the digits CNN at an LR of 1e3 with the guard off: the loss is NaN from step 4 (23 steps)
DIVERGING = ("guard.preset=off", "optim.lr=1e3", "train.epochs=1")


def test_a_diverged_run_exits_3_not_0(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = train("digits-cnn.yaml", run, *DIVERGING)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "diverged"
    assert code == ExitCode.RUN_FAILED == 3


def test_the_same_run_at_a_sane_lr_exits_0(tmp_path: Path) -> None:
    run = tmp_path / "run"
    code = train("digits-cnn.yaml", run, "guard.preset=off", "train.epochs=1")
    assert json.loads((run / "summary.json").read_text())["status"] == "completed"
    assert code == ExitCode.CLEAN
