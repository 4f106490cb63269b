"""A spike finding's warm-up fix is bounded by the run the log shows: a guarded SGD regression of
300 steps with two early spikes was told to add ``warmup_steps: 500`` (longer than the run; the
fix's own text says "at most a fifth of the run")."""

from __future__ import annotations

import logging

import torch
from torch import nn

import stabletrain
from stabletrain.doctor import diagnose


def test_warmup_fix_of_a_spike_fits_in_the_run(tmp_path) -> None:
    logging.disable(logging.WARNING)
    try:
        torch.manual_seed(0)
        x = torch.randn(512, 16)
        y = x @ torch.randn(16, 1) + 0.1 * torch.randn(512, 1)
        model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))
        guard = stabletrain.Guard(
            model, torch.optim.SGD(model.parameters(), lr=0.05), run_dir=tmp_path / "run"
        )
        for _ in range(300):
            idx = torch.randint(0, 512, (32,))
            guard.step(nn.functional.mse_loss(model(x[idx]), y[idx]))
        guard.close()
    finally:
        logging.disable(logging.NOTSET)
    report = diagnose(tmp_path / "run")
    warmups = [
        f.changes["warmup_steps"]
        for finding in report.findings
        for f in finding.fixes
        if "warmup_steps" in f.changes
    ]
    assert warmups and all(0 < w <= 60 for w in warmups), warmups
