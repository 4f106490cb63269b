"""A run that stopped, still learning, after too few optimizer steps (``too-few-steps``,
detectors/shortrun.py; fix loop round 4, tune half: a multi-GPU recipe's ``grad_accum: 16`` on
the digits CNN makes 16 optimizer steps in 8 epochs and ends at 84 %).

On real digits-CNN runs (guard off): the finding names the accumulation and the change set gives
the run its steps back, never an LR change; a run that is short but learned gets nothing; the
bulk and per-record paths agree.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.detectors.columns import as_batch
from stabletrain.detectors.shortrun import ShortRunDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.report.model import Report

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OFF = ("guard.preset=off", "run.tensorboard=false")


def _train(run_dir: Path, *overrides: str) -> Path:
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv + [a for o in (*OFF, *overrides) for a in ("--set", o)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def accumulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _train(tmp_path_factory.mktemp("accum") / "run", "train.grad_accum=16")


def test_accumulation_that_leaves_too_few_steps_is_named(accumulated: Path) -> None:
    report: Report = diagnose(accumulated)
    f = next((x for x in report.findings if x.id == "too-few-steps"), None)
    assert f is not None and f.severity == "warning", [x.id for x in report.findings]
    assert f.evidence["optimizer_steps"] < 50 and f.evidence["direction"] == "progress"
    cs = report.change_set
    assert cs.changes.get("train.grad_accum") == 1, cs
    assert "optim.lr" not in cs.changes, cs


def test_bulk_and_per_record_paths_agree(accumulated: Path) -> None:
    run = read_run(accumulated)
    one, many = ShortRunDetector(), ShortRunDetector()
    for r in run.records:
        one.update(r)
    many.update_many(as_batch(run.records))
    assert one.state_dict() == many.state_dict()
    assert [f.title for f in one.finish(run.facts)] == [f.title for f in many.finish(run.facts)]


def test_a_short_run_that_learned_gets_nothing(tmp_path: Path) -> None:
    """Two epochs of the stable config (46 steps, under the 50): learned, no finding."""
    report = diagnose(_train(tmp_path / "run", "train.epochs=2"))
    assert not any(x.id == "too-few-steps" for x in report.findings)
