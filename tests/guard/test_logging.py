"""What the guard says in the user's log: the schedule's routine LR drops at DEBUG, the guard's
own LR changes (eval plateau cut, back-off cap) at INFO or above with old → new and the reason."""

from __future__ import annotations

import logging
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from stabletrain.guard.guard import Guard

LR_LOGGERS = ("stabletrain.guard.reporting", "stabletrain.guard.guard")


def _lr_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        r for r in caplog.records
        if r.name in LR_LOGGERS and r.getMessage().startswith("learning rate")
    ]  # fmt: skip


def test_a_cosine_tail_logs_its_drops_at_debug_only(
    h: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = h.linear_data()
    torch.manual_seed(0)
    model = nn.Linear(32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=30)
    guard = Guard(model, opt, scheduler=sched)
    caplog.set_level(logging.DEBUG, logger="stabletrain")
    for i in range(29):
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
    drops = _lr_records(caplog)
    assert len(drops) >= 5  # the tail's ≥10% drops are still there, for whoever wants them
    assert all(r.levelno == logging.DEBUG and "(schedule)" in r.getMessage() for r in drops)


def test_an_eval_plateau_cut_is_logged_at_info_with_old_new_and_reason(
    h: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = h.linear_data()
    model = nn.Linear(32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(model, opt)
    caplog.set_level(logging.DEBUG, logger="stabletrain")
    guard.step(F.cross_entropy(model(x[:32]), y[:32]))
    for v in (0.80, 0.81, 0.8101, 0.805, 0.81):
        guard.observe_eval(v, mode="max")
    guard.step(F.cross_entropy(model(x[32:64]), y[32:64]))
    (cut,) = _lr_records(caplog)
    assert cut.levelno >= logging.INFO
    assert "0.1 → 0.05 (" in cut.getMessage()  # old → new (the reason)


def test_a_guard_back_off_logs_its_lr_drop_at_info_with_the_reason(
    h: SimpleNamespace, caplog: pytest.LogCaptureFixture
) -> None:
    from stabletrain.guard.config import GuardConfig

    x, y = h.linear_data()
    torch.manual_seed(0)
    model = nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = GuardConfig(spike_action="rollback", snapshot_every=5, rollback_skip_batches=0,
                      lr_backoff_factor=0.5, lr_rewarm_steps=10)  # fmt: skip
    guard = Guard(model, opt, config=cfg)
    caplog.set_level(logging.DEBUG, logger="stabletrain")
    for i in range(55):
        xb = x[i * 32 : (i + 1) * 32] * (1e6 if i in (40, 50) else 1.0)  # two corrupted batches
        guard.step(F.cross_entropy(model(xb), y[i * 32 : (i + 1) * 32]))
    assert guard.policy.lr_scale == 0.5  # the second spike backed the LR off
    drops = [r for r in _lr_records(caplog) if "guard LR cap" in r.getMessage()]
    assert drops and all(r.levelno == logging.INFO for r in drops)
    assert "0.01 → 0.0005 (guard LR cap)" in drops[0].getMessage()  # old → new (reason)
