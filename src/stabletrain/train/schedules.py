"""Optimizers and LR schedules, built from ``torch.optim`` and ``torch.optim.lr_scheduler``.

Per-step schedules (constant, cosine, onecycle — with linear warmup as steps or a ratio of the
total) are handed to the guard, which advances them only on applied steps, so a skipped step
does not eat the warmup. ReduceLROnPlateau is per-eval: the loop steps it with the val loss and
reports each reduction ("Learning rate reduced: X -> Y (val loss Z)", the line seed 003 had to
add by hand to see what its scheduler did).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR, ReduceLROnPlateau

from stabletrain.train.config import OptimSection, ScheduleSection


def build_optimizer(cfg: OptimSection, model: torch.nn.Module) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    fused = cfg.fused if cfg.fused is not None else bool(params) and params[0].is_cuda
    if cfg.name == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, fused=fused
        )
    cls = torch.optim.AdamW if cfg.name == "adamw" else torch.optim.Adam
    return cls(params, lr=cfg.lr, betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay,
               fused=fused)  # fmt: skip


def warmup_steps(cfg: ScheduleSection, total_steps: int) -> int:
    return cfg.warmup_steps or round(cfg.warmup_ratio * total_steps)


def lr_factor(cfg: ScheduleSection, base_lr: float, total_steps: int) -> Callable[[int], float]:
    """The LR multiplier at each step: linear warmup, then constant or cosine down to ``min_lr``."""
    warm = warmup_steps(cfg, total_steps)
    floor = min(cfg.min_lr / base_lr, 1.0)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.name != "cosine":
            return 1.0
        progress = min(1.0, (step - warm) / max(1, total_steps - warm))
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def build_scheduler(
    cfg: ScheduleSection, optimizer: torch.optim.Optimizer, total_steps: int
) -> LRScheduler | ReduceLROnPlateau:
    """A per-step scheduler (for the guard) or a ReduceLROnPlateau (for the loop's evals)."""
    if cfg.name == "plateau":
        return ReduceLROnPlateau(
            optimizer,
            mode="min",
            factor=cfg.plateau_factor,
            patience=cfg.plateau_patience,
            threshold=cfg.plateau_threshold,
        )
    if cfg.name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        warm = warmup_steps(cfg, total_steps)
        return OneCycleLR(
            optimizer,
            max_lr=max_lr,
            total_steps=max(total_steps, 2),
            pct_start=warm / total_steps if warm else 0.3,
        )
    base = optimizer.param_groups[0]["lr"]
    return LambdaLR(optimizer, lr_factor(cfg, base, total_steps))


def current_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.param_groups[0]["lr"])
