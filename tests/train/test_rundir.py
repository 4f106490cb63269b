"""A run dir is never reused by mistake: refused, resumed with the same config, or overwritten."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.train.rundir import config_differences

from .helpers import read_jsonl, train

QUICK = ("train.epochs=1", "train.max_steps=4")


def test_reusing_a_run_dir_without_resume_or_overwrite_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "R"
    assert train("digits-cnn.yaml", run, *QUICK) == 0
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    capsys.readouterr()
    assert train("digits-cnn.yaml", run, *QUICK, "optim.lr=0.01") == 2
    err = capsys.readouterr().err.strip()
    assert (
        f"run dir {run} already holds a run" in err and "--resume" in err and "--overwrite" in err
    )
    assert "\n" not in err
    after = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert after == before  # nothing of the earlier run was touched


def test_overwrite_replaces_the_earlier_run(tmp_path: Path) -> None:
    run = tmp_path / "R"
    assert train("digits-cnn.yaml", run, "train.epochs=1", "train.max_steps=6") == 0
    (run / "notes.txt").write_text("mine", encoding="utf-8")
    assert train("digits-cnn.yaml", run, *QUICK, "optim.lr=0.01", overwrite=True) == 0
    steps = read_jsonl(run / "steps.jsonl")
    assert len(steps) == 4  # the earlier run's 6 steps are gone, not appended to
    assert "lr: 0.01" in (run / "config.yaml").read_text()
    assert (run / "notes.txt").read_text() == "mine"  # only stabletrain's own files are removed


def test_resume_with_a_different_config_names_the_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run = tmp_path / "R"
    assert train("digits-cnn.yaml", run, *QUICK) == 0
    capsys.readouterr()
    code = train("digits-cnn.yaml", run, *QUICK, "optim.lr=0.01", "model.cnn.hidden=8", resume=True)
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert "was trained with a different config" in err and "\n" not in err
    assert (
        "optim.lr (saved 0.003, now 0.01)" in err and "model.cnn.hidden (saved 128, now 8)" in err
    )
    # settings that do not change the arithmetic may differ
    assert train("digits-cnn.yaml", run, *QUICK, "run.log_every=2", resume=True) == 0


def test_resume_and_overwrite_together_is_refused(tmp_path: Path) -> None:
    assert train("digits-cnn.yaml", tmp_path / "R", *QUICK, resume=True, overwrite=True) == 2


def test_config_differences() -> None:
    saved = {"run": {"dir": "a", "seed": 0}, "optim": {"lr": 0.1, "betas": [0.9, 0.99]}}
    now = {"run": {"dir": "b", "seed": 0}, "optim": {"lr": 0.1, "betas": [0.9, 0.95]}, "x": 1}
    assert config_differences(saved, now) == [
        "optim.betas (saved [0.9, 0.99], now [0.9, 0.95])",
        "x (saved '<unset>', now 1)",
    ]
