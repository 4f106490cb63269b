"""An instability finding's LR cut needs a run that was at its own LR (fix loop: the wrong
direction on r2_cnn_plateau_collapse, development data from session 5).

A plateau schedule read as a step schedule (patience 0, factor 0.001, a large threshold) cuts the
LR a thousandfold at the first eval that does not improve enough, and the run stops learning.
Its report had a clip firing on most steps and eval swings read as instability, and both halved
the configured LR: lower, for a run that had been at a thousandth of it. On real digits-CNN runs
(guard off): the collapse is read from the logged LRs; with it, no instability finding lowers the
LR; a cosine schedule is no collapse.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.doctor import diagnose
from stabletrain.report.changeset import lr_collapse, resolve
from stabletrain.report.model import Report

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OFF = ("guard.preset=off", "run.tensorboard=false")
COLLAPSE = ("schedule.name=plateau", "schedule.warmup_ratio=0", "schedule.plateau_patience=0",
            "schedule.plateau_factor=0.001", "schedule.plateau_threshold=0.9")  # fmt: skip


def _train(run_dir: Path, *overrides: str) -> Report:
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv + [a for o in (*OFF, *overrides) for a in ("--set", o)]) == 0
    return diagnose(run_dir)


@pytest.fixture(scope="module")
def collapsed(tmp_path_factory: pytest.TempPathFactory) -> Report:
    return _train(tmp_path_factory.mktemp("plateau") / "run", "train.epochs=3", *COLLAPSE)


def test_the_collapse_is_read_from_the_logged_lrs(collapsed: Report) -> None:
    got = lr_collapse(collapsed.records)
    assert got is not None
    step, peak, top = got
    assert peak == pytest.approx(3e-3) and top <= peak / 100
    assert 0 < step <= 2 * 184 // 8 + 1  # the first cut, at the end of epoch 1 or 2 of 3


def test_no_instability_finding_lowers_the_lr_of_a_collapsed_run(collapsed: Report) -> None:
    """The run's own clip finding, stated as instability (as the eval swings of the 8-epoch run
    made it): its LR cut is left out and says why."""
    clip = next(f for f in collapsed.findings if f.id == "clip-saturated")
    assert any("optim.lr" in x.changes for x in clip.fixes)
    hot = replace(clip, evidence={**clip.evidence, "direction": "instability"})
    cs = resolve([hot], collapsed.facts, collapsed.records)
    assert "optim.lr" not in cs.changes, cs
    assert any("a hundredth" in d for d in cs.dropped), cs.dropped
    assert collapsed.change_set.changes.get("optim.lr", 3e-3) >= 3e-3


def test_a_cosine_schedule_is_no_collapse(tmp_path: Path) -> None:
    report = _train(tmp_path / "run", "train.epochs=2")
    assert lr_collapse(report.records) is None
