"""Atomic checkpoints that let ``--resume`` continue a run exactly.

A checkpoint holds the model, optimizer, scheduler, GradScaler and guard state, the Python /
NumPy / torch RNG states, and the loop position (optimizer step, epoch, micro-batch within the
epoch, early-stopping state, summary history). It is written to a temp file in the same
directory, fsynced, then ``os.replace``d over the old one: a run killed mid-write keeps the
previous checkpoint intact, never a truncated file.

Loading never executes anything from the file: checkpoints are read with
``torch.load(weights_only=True)``, which admits tensors and plain data only. Everything a run saves
is made of those (``encode``): the NumPy RNG state and other numpy arrays are stored as their raw
bytes in a uint8 tensor beside their dtype and shape, and restored by ``decode``.

Limits: CUDA RNG state is saved per device when CUDA is in use; bitwise-identical resume is
guaranteed on CPU (GPU kernels may be non-deterministic).
"""

from __future__ import annotations

import errno
import os
import pickle
import random
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from stabletrain import safe_io
from stabletrain.errors import CheckpointError

CHECKPOINT_FILE = "checkpoint.pt"
_DISK_FULL = frozenset({errno.ENOSPC, errno.EDQUOT})
_TAG = "__stabletrain_type__"  # marks an encoded non-tensor value (see ``encode``)


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
    """Write ``state`` atomically (temp file + fsync + ``os.replace``) in the safe-load format."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    payload = encode(state)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)
    except BaseException as e:
        tmp.unlink(missing_ok=True)  # never leave a partial file that keeps the disk full
        cause = _os_error(e)
        if cause is not None and cause.errno in _DISK_FULL:
            head = f"disk full writing checkpoint {p} ({cause.strerror}): removed the partial file"
            raise CheckpointError(
                f"{head}; kept the previous checkpoint and the run log; free space, then "
                "continue with --resume"
                if p.exists()
                else f"{head}; no earlier checkpoint exists, the run log is kept; free space, "
                "then start again with --overwrite"
            ) from None
        raise
    return p


def _os_error(e: BaseException) -> OSError | None:
    """The OSError behind ``e`` (torch.save wraps write errors in RuntimeError)."""
    seen: BaseException | None = e
    while seen is not None:
        if isinstance(seen, OSError):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint with ``torch.load(weights_only=True)``: tensors and plain data only.

    Nothing in the file is executed: a pickle that names any other class or function (a crafted
    file, or a checkpoint written by another tool) is a :class:`CheckpointError`.
    """
    p = Path(path)
    if not p.exists():
        raise CheckpointError(f"no checkpoint at {p}: nothing to resume (run without --resume)")
    try:
        with safe_io.open_regular(p, max_bytes=None, error=CheckpointError) as f:
            raw = torch.load(f, map_location="cpu", weights_only=True)
        state = decode(raw)
    except CheckpointError:
        raise
    except pickle.UnpicklingError as e:
        # torch's message advises weights_only=False, the very thing not to do with a file one
        # did not write: keep only the line that names what the file asked to import
        found = [ln.strip() for ln in str(e).splitlines() if "unsupported global" in ln.lower()]
        reason = (found[0] if found else "not a weights-only checkpoint")[:300]
        raise CheckpointError(
            f"checkpoint {p} cannot be read safely: it holds more than tensors and plain data "
            f"(not written by this stabletrain, or crafted); nothing in it was run ({reason})"
        ) from None
    except Exception as e:  # torch raises many types for a damaged file
        raise CheckpointError(f"checkpoint {p} cannot be read: {e}") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {p} is not a stabletrain checkpoint")
    missing = {"model", "optimizer", "loop", "rng"} - set(state)
    if missing:
        raise CheckpointError(
            f"checkpoint {p} lacks {sorted(missing)}: not a stabletrain checkpoint"
        )
    return state


def encode(obj: Any, where: str = "state") -> Any:
    """``obj`` made of what ``torch.load(weights_only=True)`` accepts, and nothing else.

    Tensors, str/int/float/bool/None, dicts, lists and tuples pass through; a numpy array becomes
    a tagged dict holding its raw bytes as a uint8 tensor (the NumPy RNG state, the guard's
    snapshots of it), a numpy scalar its Python value. Anything else is a CheckpointError naming
    where it sits, so a state nobody can reload is never written.
    """
    if obj is None or isinstance(
        obj, (torch.Tensor, str, bool, int, float, torch.dtype, torch.Size)
    ):
        return obj
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        if arr.dtype.hasobject:
            raise CheckpointError(f"cannot checkpoint {where}: a numpy array of Python objects")
        data = (
            torch.frombuffer(bytearray(arr.tobytes()), dtype=torch.uint8)
            if arr.size
            else torch.zeros(0, dtype=torch.uint8)
        )
        return {_TAG: "ndarray", "dtype": arr.dtype.str, "shape": list(arr.shape), "data": data}
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, dict):
        if _TAG in obj:
            raise CheckpointError(f"cannot checkpoint {where}: the key {_TAG!r} is reserved")
        out = {k: encode(v, f"{where}.{k}") for k, v in obj.items()}
        if isinstance(obj, OrderedDict):  # a module state_dict: keep its version metadata
            ordered: OrderedDict[Any, Any] = OrderedDict(out)
            meta = getattr(obj, "_metadata", None)
            if meta is not None:
                ordered._metadata = encode(dict(meta), f"{where}._metadata")  # type: ignore[attr-defined]
            return ordered
        return out
    if isinstance(obj, list):
        return [encode(v, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, tuple):
        return tuple(encode(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise CheckpointError(
        f"cannot checkpoint {where}: {type(obj).__qualname__} is not a tensor or plain data"
    )


def decode(obj: Any) -> Any:
    """The inverse of :func:`encode`."""
    if isinstance(obj, dict):
        if obj.get(_TAG) == "ndarray":
            dtype = np.dtype(obj["dtype"])
            if dtype.hasobject:
                raise CheckpointError("a numpy array of Python objects in the checkpoint")
            flat = np.frombuffer(obj["data"].numpy().tobytes(), dtype=dtype)
            return flat.reshape(tuple(obj["shape"])).copy()
        out = {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, OrderedDict):
            ordered: OrderedDict[Any, Any] = OrderedDict(out)
            meta = getattr(obj, "_metadata", None)
            if meta is not None:
                ordered._metadata = meta  # type: ignore[attr-defined]
            return ordered
        return out
    if isinstance(obj, list):
        return [decode(v) for v in obj]
    if isinstance(obj, tuple) and not isinstance(obj, torch.Size):
        return tuple(decode(v) for v in obj)
    return obj
