from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from stabletrain.logs.runlog import RunLog, atomic_write_text
from stabletrain.records import StepRecord


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_run_log_writes_every_file_with_strict_json(tmp_path: Path) -> None:
    with RunLog(tmp_path, tensorboard=False, meta={"world_size": 1}) as rl:
        rl.write_config("optim:\n  lr: 0.001\n")
        rl.log_step(StepRecord(step=0, loss=2.3, grad_norm=1.5, lr=1e-3))
        rl.log_step(
            StepRecord(step=1, loss=float("nan"), skipped=True, action="skip_nonfinite_loss")
        )
        rl.log_eval(StepRecord(step=1, eval_loss=2.1, eval_accuracy=0.4))
        rl.log_event(1, "skip", "step 1 skipped", severity="warning", data={"why": "nan"})
    meta = json.loads((tmp_path / "meta.json").read_text())
    assert (
        meta["version"] == 1 and meta["schema"] == "stabletrain.runlog" and meta["world_size"] == 1
    )
    steps = _lines(tmp_path / "steps.jsonl")
    assert [s["step"] for s in steps] == [0, 1]
    assert steps[1]["loss"] == "nan" and steps[1]["skipped"] is True
    assert math.isnan(StepRecord.from_json(steps[1]).loss or 0.0)
    evals = _lines(tmp_path / "evals.jsonl")
    assert evals[0]["kind"] == "eval" and evals[0]["eval_accuracy"] == 0.4
    events = _lines(tmp_path / "events.jsonl")
    assert events[0]["event"] == "skip" and events[0]["data"] == {"why": "nan"}
    assert (tmp_path / "config.yaml").read_text().startswith("optim:")


def test_disabled_run_log_writes_nothing(tmp_path: Path) -> None:
    rl = RunLog(tmp_path / "rank1", enabled=False)
    rl.log_step(StepRecord(step=0, loss=1.0))
    rl.log_event(0, "skip", "x")
    rl.close()
    assert not (tmp_path / "rank1").exists()


def test_resume_appends(tmp_path: Path) -> None:
    with RunLog(tmp_path, tensorboard=False) as rl:
        rl.log_step(StepRecord(step=0, loss=1.0))
    with RunLog(tmp_path, tensorboard=False, resume=True) as rl:
        rl.log_step(StepRecord(step=1, loss=0.9))
    assert [s["step"] for s in _lines(tmp_path / "steps.jsonl")] == [0, 1]


def test_lines_survive_sigkill(tmp_path: Path) -> None:
    # A process killed without any cleanup keeps every line it logged.
    code = (
        "import os, signal, sys\n"
        "from stabletrain.logs.runlog import RunLog\n"
        "from stabletrain.records import StepRecord\n"
        "rl = RunLog(sys.argv[1], tensorboard=False)\n"
        "for i in range(5): rl.log_step(StepRecord(step=i, loss=1.0 / (i + 1)))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=False)
    assert proc.returncode != 0
    assert [s["step"] for s in _lines(tmp_path / "steps.jsonl")] == [0, 1, 2, 3, 4]


def test_tensorboard_mirror_is_written(tmp_path: Path) -> None:
    with RunLog(tmp_path, tensorboard=True) as rl:
        rl.log_step(StepRecord(step=0, loss=1.0, grad_norm=0.5))
    assert list((tmp_path / "tb").glob("events.out.tfevents.*"))


def test_atomic_write_replaces_whole_file(tmp_path: Path) -> None:
    p = tmp_path / "x.txt"
    atomic_write_text(p, "old")
    atomic_write_text(p, "new")
    assert p.read_text() == "new"
    assert [f.name for f in tmp_path.iterdir()] == ["x.txt"]
