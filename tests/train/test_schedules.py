from __future__ import annotations

import itertools
import math

import pytest
import torch

from stabletrain.train.config import OptimSection, ScheduleSection
from stabletrain.train.schedules import build_optimizer, build_scheduler, warmup_steps


def _lrs(schedule: ScheduleSection, total: int, lr: float = 1.0) -> list[float]:
    opt = build_optimizer(OptimSection(name="sgd", lr=lr), torch.nn.Linear(2, 1))
    sched = build_scheduler(schedule, opt, total)
    out = []
    for _ in range(total):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def test_warmup_then_cosine_to_min_lr() -> None:
    lrs = _lrs(ScheduleSection(name="cosine", warmup_steps=4, min_lr=0.1), total=24)
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert lrs[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in itertools.pairwise(lrs[4:]))
    assert lrs[-1] == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 19 / 20)))


def test_warmup_ratio_and_constant() -> None:
    cfg = ScheduleSection(name="constant", warmup_ratio=0.1)
    assert warmup_steps(cfg, 50) == 5
    lrs = _lrs(cfg, total=50, lr=0.5)
    assert lrs[0] == pytest.approx(0.1) and lrs[5:] == pytest.approx([0.5] * 45)


def test_onecycle_peaks_at_lr() -> None:
    lrs = _lrs(ScheduleSection(name="onecycle", warmup_steps=10), total=40, lr=2.0)
    assert max(lrs) == pytest.approx(2.0, rel=1e-3) and lrs.index(max(lrs)) in (9, 10)
    assert lrs[0] < 0.2 and lrs[-1] < 0.01


def test_optimizer_settings() -> None:
    opt = build_optimizer(
        OptimSection(name="adamw", lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1),
        torch.nn.Linear(2, 1),
    )
    assert isinstance(opt, torch.optim.AdamW)
    assert (
        opt.param_groups[0]["betas"] == (0.9, 0.95) and opt.param_groups[0]["weight_decay"] == 0.1
    )
