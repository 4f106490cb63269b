"""A bare guard's run dir tells the doctor what the loop was (optimizer, starting LR, the clip the
guard applied), so its advice starts from the run's own settings: a guard clipping at 1.0 was
told to "enable gradient clipping at norm 1", and the LR fix had no configured base."""

from __future__ import annotations

import json
import logging

import torch
from torch import nn

import stabletrain
from stabletrain.doctor import diagnose


def _guarded_sgd_run(run_dir, steps: int = 300) -> None:
    logging.disable(logging.WARNING)
    try:
        torch.manual_seed(0)
        x = torch.randn(512, 16)
        y = x @ torch.randn(16, 1) + 0.1 * torch.randn(512, 1)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
        guard = stabletrain.Guard(
            model, torch.optim.SGD(model.parameters(), lr=0.05), run_dir=run_dir
        )
        for _ in range(steps):
            idx = torch.randint(0, 512, (32,))
            guard.step(nn.functional.mse_loss(model(x[idx]), y[idx]))
        guard.close()
    finally:
        logging.disable(logging.NOTSET)


def test_the_doctor_knows_the_guarded_loop(tmp_path) -> None:
    _guarded_sgd_run(tmp_path / "run")
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert meta["optimizer"] == "SGD" and meta["lr"] == 0.05 and meta["max_grad_norm"] == 1.0
    report = diagnose(tmp_path / "run")
    fixes = [f for finding in report.findings for f in finding.fixes]
    assert fixes, "the run has early spikes: some advice is expected"
    assert not any("Enable gradient clipping" in f.description for f in fixes)
    clip_values = [f.changes["max_grad_norm"] for f in fixes if "max_grad_norm" in f.changes]
    assert all(v < 1.0 for v in clip_values)  # only ever tighter than the clip it had


def test_warmup_fix_of_a_spike_fits_in_the_run(tmp_path) -> None:
    """A spike finding's warm-up fix is bounded by the run the log shows: this 300-step run with
    two early spikes was told to add ``warmup_steps: 500`` (longer than the run; the fix's own
    text says "at most a fifth of the run")."""
    _guarded_sgd_run(tmp_path / "run")
    report = diagnose(tmp_path / "run")
    warmups = [
        f.changes["warmup_steps"]
        for finding in report.findings
        for f in finding.fixes
        if "warmup_steps" in f.changes
    ]
    assert warmups and all(0 < w <= 60 for w in warmups), warmups
