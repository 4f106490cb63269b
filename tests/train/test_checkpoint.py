"""Checkpoints: atomic writes, clear errors, and exact resume after a real ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from stabletrain.errors import CheckpointError
from stabletrain.train.checkpoint import load_checkpoint, save_checkpoint

from .helpers import CONFIGS, REPO, losses_by_step, read_jsonl, train

# 4 epochs x 23 steps, a checkpoint every 7 steps, dropout on: resume must restore the RNG too
RUN = ("train.epochs=4", "run.checkpoint_every=7", "run.tensorboard=false")


def test_save_is_atomic_and_load_validates(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    save_checkpoint(path, {"model": {"w": torch.ones(2)}, "optimizer": {}, "loop": {}, "rng": {}})
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]  # no temp file left behind
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    with pytest.raises(CheckpointError, match="nothing to resume"):
        load_checkpoint(tmp_path / "missing.pt")
    path.write_bytes(b"truncated")
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_checkpoint(path)
    save_checkpoint(path, {"model": {}})
    with pytest.raises(CheckpointError, match="not a stabletrain checkpoint"):
        load_checkpoint(path)


def _kill_mid_training(run_dir: Path, after_steps: int) -> None:
    cmd = [sys.executable, "-m", "stabletrain.cli", "train", str(CONFIGS / "digits-cnn.yaml"),
           "--run-dir", str(run_dir), "--no-progress"]  # fmt: skip
    cmd += [a for o in RUN for a in ("--set", o)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    steps = run_dir / "steps.jsonl"
    deadline = time.monotonic() + 60
    with subprocess.Popen(
        cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    ) as proc:
        while time.monotonic() < deadline and proc.poll() is None:
            if steps.is_file() and steps.read_text().count("\n") >= after_steps:
                break
            time.sleep(0.002)
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, err.decode()


@pytest.mark.slow
def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path: Path) -> None:
    killed = tmp_path / "killed"
    _kill_mid_training(killed, after_steps=20)

    # the log survived the crash: every line parses, every completed step is there
    logged = read_jsonl(killed / "steps.jsonl")
    assert [r["step"] for r in logged] == list(range(len(logged)))
    assert 20 <= len(logged) < 92
    ck = load_checkpoint(killed / "checkpoint.pt")["loop"]
    assert ck["step"] % 7 == 0 and ck["step"] <= len(logged)

    assert train("digits-cnn.yaml", killed, *RUN, resume=True) == 0
    assert train("digits-cnn.yaml", tmp_path / "straight", *RUN) == 0

    resumed, straight = losses_by_step(killed), losses_by_step(tmp_path / "straight")
    assert len(straight) == 92 and resumed.keys() == straight.keys()
    after = [s for s in straight if s >= ck["step"]]
    assert [resumed[s] for s in after] == [straight[s] for s in after]  # bitwise: exact floats
    ev = read_jsonl(killed / "evals.jsonl")[-1]
    assert ev == {
        **ev,
        **{
            k: v
            for k, v in read_jsonl(tmp_path / "straight" / "evals.jsonl")[-1].items()
            if k != "wall_time"
        },
    }
    summary = json.loads((killed / "summary.json").read_text())
    assert summary["steps"] == 92 and summary["epochs"] == 4


def test_resume_without_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    assert train("digits-cnn.yaml", tmp_path / "none", "train.epochs=1", resume=True) == 2
