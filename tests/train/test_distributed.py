"""A real 2-rank CPU run under torchrun (gloo): one writer, disjoint shards, same decisions."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers import CONFIGS, REPO, read_jsonl


@pytest.mark.dist
@pytest.mark.slow
def test_torchrun_two_ranks_gloo(tmp_path: Path) -> None:
    run = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--standalone", "-m", "stabletrain.cli", "train", str(CONFIGS / "digits-cnn.yaml"),
           "--run-dir", str(run), "--no-progress"]  # fmt: skip
    for o in ("train.epochs=1", "data.batch_size=128", "run.tensorboard=false"):
        cmd += ["--set", o]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    steps = read_jsonl(run / "steps.jsonl")
    # 1438 samples -> 719 per rank -> 6 batches of 128 per rank; one writer, so 6 lines
    assert [r["step"] for r in steps] == list(range(6))
    assert steps[0]["samples"] == 256  # both ranks' samples
    assert out.stdout.count("epoch 1/1:") == 1  # only rank 0 prints
    assert json.loads((run / "summary.json").read_text())["steps"] == 6
