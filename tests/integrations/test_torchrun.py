"""The reference trainer under ``torchrun --nproc_per_node=2`` (DDP over gloo, CPU).

One real 2-process run of the digits CNN with a NaN batch, then a ``--resume`` of it: our log
lines appear once (rank 0's), except a rank's own bad batch, which that rank names; rank 0 alone
writes one run log with one line per step across the resume, and the checkpoint continues the run.
(That every rank takes the same decision: tests/guard/test_distributed.py.)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.dist, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
CONFIG = REPO / "configs" / "digits-cnn.yaml"


def _torchrun(run_dir: Path, log_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent)) or "torchrun"
    cmd = [
        torchrun, "--standalone", "--nproc_per_node=2", "--log-dir", str(log_dir), "--redirects", "3",
        "-m", "stabletrain.cli", "train", str(CONFIG), "--run-dir", str(run_dir), "--no-progress",
        "--set", "data.corrupt.nan_batches=[2]", "--set", "run.checkpoint_every=0",
        "--set", "run.tensorboard=false", *extra,
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=150, cwd=REPO)


def _skips_by_rank(log_dir: Path) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for err in sorted(log_dir.rglob("stderr.log")):
        rank = int(err.parent.name)
        found = re.findall(r"step (\d+) skipped", err.read_text())
        out.setdefault(rank, []).extend(int(s) for s in found)
    return out


@pytest.mark.skipif(not CONFIG.exists(), reason="configs/digits-cnn.yaml missing")
def test_torchrun_two_ranks_one_log_same_decisions_and_resume(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    first = _torchrun(run_dir, tmp_path / "logs1", "--set", "train.epochs=1")
    assert first.returncode == 0, first.stderr[-3000:]
    # said once, by rank 0, not once per rank (seed 004's symptom)
    assert _skips_by_rank(tmp_path / "logs1") == {0: [2], 1: []}
    rank1 = "".join(p.read_text() for p in (tmp_path / "logs1").rglob("1/std*.log"))
    assert "learning rate" not in rank1 and "epoch 1/1" not in rank1
    assert all("rank 1" in line for line in rank1.splitlines() if "stabletrain" in line)
    assert (run_dir / "checkpoint.pt").is_file()

    per_epoch = len((run_dir / "steps.jsonl").read_text().splitlines())
    # resume from the end-of-epoch checkpoint for a second epoch (a run stopped by
    # train.max_steps keeps status "max-steps" in its checkpoint and does not continue)
    second = _torchrun(run_dir, tmp_path / "logs2", "--set", "train.epochs=2", "--resume")
    assert second.returncode == 0, second.stderr[-3000:]
    rank0_out = next((tmp_path / "logs2").rglob("0/stdout.log")).read_text()
    assert f"resumed from step {per_epoch}" in rank0_out
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    steps = [json.loads(x)["step"] for x in lines]
    assert steps == list(range(2 * per_epoch))  # one writer, no duplicates, continued
    skipped = [json.loads(x)["step"] for x in lines if json.loads(x).get("skipped")]
    assert skipped == [2]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "skip"] == [2]
