"""torchrun support: process-group setup from the environment, rank helpers.

Under ``torchrun`` (``WORLD_SIZE > 1``) the trainer joins a process group — gloo on CPU, nccl on
CUDA, each rank on ``cuda:LOCAL_RANK`` — wraps the model in DistributedDataParallel, shards each
epoch's order by rank (see data.epoch_order) and lets only rank 0 write the run log, summary,
plot and checkpoints. Every rank loads the checkpoint on resume.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def resolve_device(pref: str, info: DistInfo) -> torch.device:
    if pref == "cuda" or (pref == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            from stabletrain.errors import ConfigError

            raise ConfigError("run.device: cuda requested but no CUDA device is available")
        return torch.device("cuda", info.local_rank)
    return torch.device("cpu")


def init_distributed(device_pref: str) -> tuple[DistInfo, torch.device]:
    """Join the torchrun process group when ``WORLD_SIZE > 1``; a no-op otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    info = DistInfo(
        rank=int(os.environ.get("RANK", "0")),
        world_size=world,
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
    )
    device = resolve_device(device_pref, info)
    if info.enabled and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return info, device


def shutdown_distributed(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(info: DistInfo) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()
