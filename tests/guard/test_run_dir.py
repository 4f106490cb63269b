"""``Guard(..., run_dir=...)``: one argument, and the doctor reads the hand loop's run."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stabletrain.doctor import diagnose
from stabletrain.errors import ConfigError
from stabletrain.guard.guard import Guard
from stabletrain.logs.runlog import RunLog


def test_run_dir_writes_steps_and_events_the_doctor_reads(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y = h.linear_data(640)
    x[100] = float("nan")  # one corrupted sample in batch 3
    torch.manual_seed(0)
    model = nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    run_dir = tmp_path / "run"
    with Guard(model, opt, run_dir=run_dir) as guard:
        for i in range(20):
            guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
    steps = [json.loads(line) for line in (run_dir / "steps.jsonl").read_text().splitlines()]
    assert [s["step"] for s in steps] == list(range(20))
    assert [s["step"] for s in steps if s.get("skipped")] == [3]
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    assert [e["step"] for e in events if e["event"] == "skip"] == [3]
    report = diagnose(run_dir)
    assert len(report.records) == 20
    assert report.records[3].skipped
    assert guard.run_log is None  # closed on exit


def test_run_dir_and_run_log_together_is_a_config_error(tmp_path: Path) -> None:
    model = nn.Linear(4, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with RunLog(tmp_path / "a", tensorboard=False) as run_log, pytest.raises(ConfigError):
        Guard(model, opt, run_log=run_log, run_dir=tmp_path / "b")
