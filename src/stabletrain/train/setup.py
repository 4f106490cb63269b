"""Builds everything the loop needs from a validated config: data, model, optimizer, schedule,
GradScaler, guard and run log — so loop.py holds only the loop.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.optim.lr_scheduler import ReduceLROnPlateau

from stabletrain.guard.guard import Guard
from stabletrain.logs.runlog import RunLog
from stabletrain.train.config import TrainConfig, guard_config
from stabletrain.train.data import Dataset, load_dataset, num_batches
from stabletrain.train.distributed import DistInfo, init_distributed
from stabletrain.train.models import build_model
from stabletrain.train.schedules import build_optimizer, build_scheduler

_AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class Parts:
    cfg: TrainConfig
    run_dir: Path
    dist: DistInfo
    device: torch.device
    data: Dataset
    model: torch.nn.Module  # DDP-wrapped when distributed
    raw_model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: Any  # per-step LRScheduler, or ReduceLROnPlateau (stepped at eval)
    scaler: torch.amp.GradScaler | None
    guard: Guard
    run_log: RunLog
    batches_per_epoch: int
    total_steps: int
    autocast: Callable[[], contextlib.AbstractContextManager[Any]]

    @property
    def plateau(self) -> ReduceLROnPlateau | None:
        return self.scheduler if isinstance(self.scheduler, ReduceLROnPlateau) else None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build(cfg: TrainConfig, run_dir: Path, *, resume: bool = False) -> Parts:
    info, device = init_distributed(cfg.run.device)
    seed_everything(cfg.run.seed)
    data = load_dataset(cfg.data, cfg.run.seed)
    raw = build_model(
        cfg.model,
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        seq_len=cfg.data.seq_len,
    ).to(device)
    model: torch.nn.Module = raw
    if info.enabled:
        model = torch.nn.parallel.DistributedDataParallel(
            raw, device_ids=[device.index] if device.type == "cuda" else None
        )
    optimizer = build_optimizer(cfg.optim, raw)
    per_epoch = num_batches(len(data.x_train), cfg.data.batch_size, info.world_size)
    steps_per_epoch = -(-per_epoch // cfg.train.grad_accum)
    total = cfg.train.max_steps or cfg.train.epochs * steps_per_epoch
    scheduler = build_scheduler(cfg.schedule, optimizer, total)
    scaler = None
    if cfg.train.precision == "fp16":
        scaler = torch.amp.GradScaler(device.type, **cfg.amp.model_dump())
    run_log = RunLog(
        run_dir,
        enabled=info.is_main,
        tensorboard=cfg.run.tensorboard,
        resume=resume,
        meta={
            "name": cfg.run.name,
            "world_size": info.world_size,
            "trainer": "stabletrain.train",
            # the doctor's scale for "no better than a guess" (ln C): not in config.yaml
            ("vocab_size" if data.task == "lm" else "num_classes"): data.num_classes,
        },
    )
    if not resume:
        run_log.write_config(cfg.to_yaml())
    guard = Guard(
        raw,
        optimizer,
        scaler=scaler,
        scheduler=None if isinstance(scheduler, ReduceLROnPlateau) else scheduler,
        config=guard_config(cfg),
        run_log=run_log,
    )
    dtype = _AMP_DTYPES.get(cfg.train.precision)

    def autocast() -> contextlib.AbstractContextManager[Any]:
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    return Parts(
        cfg, run_dir, info, device, data, model, raw, optimizer, scheduler, scaler, guard,
        run_log, per_epoch, total, autocast,
    )  # fmt: skip
