"""Atomic checkpoints that let ``--resume`` continue a run exactly.

A checkpoint holds the model, optimizer, scheduler, GradScaler and guard state, the Python /
NumPy / torch RNG states, and the loop position (optimizer step, epoch, micro-batch within the
epoch, early-stopping state, summary history). It is written to a temp file in the same
directory, fsynced, then ``os.replace``d over the old one: a run killed mid-write keeps the
previous checkpoint intact, never a truncated file.

Limits: CUDA RNG state is saved per device when CUDA is in use; bitwise-identical resume is
guaranteed on CPU (GPU kernels may be non-deterministic).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stabletrain.errors import CheckpointError

CHECKPOINT_FILE = "checkpoint.pt"


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> Path:
    """Write ``state`` atomically (temp file + fsync + ``os.replace``)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
    return p


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {p}: nothing to resume (run without --resume)")
    try:
        # our own file, holding RNG tuples and numpy arrays: needs full unpickling
        state = torch.load(p, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {p} cannot be read: {e}") from None
    missing = {"model", "optimizer", "loop", "rng"} - set(state)
    if missing:
        raise CheckpointError(
            f"checkpoint {p} lacks {sorted(missing)}: not a stabletrain checkpoint"
        )
    return state
