"""Datasets of the reference trainer, deterministic batching, and fault injection.

- ``digits``: scikit-learn's bundled ``load_digits`` (1797 8x8 images, no download), as 1x8x8
  float images standardised with the training split's statistics.
- ``charcorpus``: character-level text made from the ``.py`` files of the running Python's
  standard library (a deterministic ~300 KB subset), cut into ``seq_len + 1`` blocks.
- ``cifar10``: the standard python-pickle batches (``data_batch_1..5``, ``test_batch``) read from a
  local folder with a restricted unpickler (numpy arrays and plain data only: a crafted batch is
  refused, never run). Never downloaded: a missing folder is a ConfigError naming the files.

Batching is by index: each epoch's order is a permutation drawn from a ``torch.Generator`` seeded
with ``(seed, epoch)``, so a resumed run regenerates the same order and skips the batches it
already consumed. Distributed ranks take disjoint, equally long strided shards of it.
"""

from __future__ import annotations

import math
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from stabletrain import safe_io
from stabletrain.errors import ConfigError
from stabletrain.train.config import CorruptSection, DataSection

CORPUS_CHARS = 300_000
CIFAR_TRAIN = [f"data_batch_{i}" for i in range(1, 6)]
CIFAR_TEST = "test_batch"


@dataclass
class Dataset:
    """Train/val tensors plus what the model needs to know about them."""

    task: Literal["classify", "lm"]
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_val: torch.Tensor
    y_val: torch.Tensor
    num_classes: int  # classes, or vocabulary size for ``lm``
    in_channels: int = 1
    vocab: str = ""


def load_dataset(cfg: DataSection, seed: int) -> Dataset:
    if cfg.name == "digits":
        return _digits(cfg, seed)
    if cfg.name == "charcorpus":
        return _charcorpus(cfg)
    return _cifar10(cfg)


def _digits(cfg: DataSection, seed: int) -> Dataset:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = torch.tensor(bunch.data, dtype=torch.float32).reshape(-1, 1, 8, 8)
    y = torch.tensor(bunch.target, dtype=torch.long)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = max(1, round(len(x) * cfg.val_fraction))
    val, train = perm[:n_val], perm[n_val:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return Dataset("classify", x[train], y[train], x[val], y[val], num_classes=10)


def stdlib_corpus(max_chars: int = CORPUS_CHARS) -> str:
    """The first ``max_chars`` characters of the stdlib's top-level ``.py`` files, sorted by name."""
    root = Path(os.path.dirname(os.__file__))
    parts: list[str] = []
    total = 0
    for f in sorted(root.glob("*.py")):
        text = f.read_text(encoding="utf-8", errors="replace")
        if not text.isascii():  # keep the vocabulary small and stable across versions
            continue
        parts.append(text)
        total += len(text)
        if total >= max_chars:
            break
    return "".join(parts)[:max_chars]


def unigram_entropy(tokens: torch.Tensor, num_classes: int) -> float:
    """Entropy in nats of the token frequencies: the loss of a model that ignores context."""
    counts = torch.bincount(tokens.flatten(), minlength=num_classes).double()
    p = counts[counts > 0] / counts.sum()
    return float(-(p * p.log()).sum())


def _charcorpus(cfg: DataSection) -> Dataset:
    text = stdlib_corpus()
    vocab = "".join(sorted(set(text)))
    index = {c: i for i, c in enumerate(vocab)}
    ids = torch.tensor([index[c] for c in text], dtype=torch.long)
    n_val = round(len(ids) * cfg.val_fraction)
    block = cfg.seq_len + 1

    def blocks(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = len(t) // block
        b = t[: n * block].view(n, block)
        return b[:, :-1].contiguous(), b[:, 1:].contiguous()

    x_tr, y_tr = blocks(ids[:-n_val])
    x_va, y_va = blocks(ids[-n_val:])
    return Dataset("lm", x_tr, y_tr, x_va, y_va, num_classes=len(vocab), vocab=vocab)


def _cifar10(cfg: DataSection) -> Dataset:
    if cfg.path is None:
        raise ConfigError("data.path: cifar10 needs the folder holding the python-pickle batches")
    root = Path(cfg.path).expanduser()
    if (root / "cifar-10-batches-py").is_dir():
        root = root / "cifar-10-batches-py"
    train_files = [root / n for n in CIFAR_TRAIN if (root / n).is_file()]
    if not train_files or not (root / CIFAR_TEST).is_file():
        raise ConfigError(
            f"data.path: {root} must hold the CIFAR-10 python batches "
            f"({', '.join(CIFAR_TRAIN)}, {CIFAR_TEST}); stabletrain never downloads data"
        )
    x_tr, y_tr = _read_cifar(train_files)
    x_va, y_va = _read_cifar([root / CIFAR_TEST])
    mean = x_tr.mean(dim=(0, 2, 3), keepdim=True)
    std = x_tr.std(dim=(0, 2, 3), keepdim=True).clamp_min(1e-6)
    return Dataset(
        "classify", (x_tr - mean) / std, y_tr, (x_va - mean) / std, y_va, 10, in_channels=3
    )


#: What a CIFAR-10 python batch may reference: numpy's array/scalar rebuilders, nothing else.
_CIFAR_GLOBALS = frozenset(
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in (
        (f"{core}.multiarray", "_reconstruct"),
        (f"{core}.multiarray", "scalar"),
        (f"{core}.numeric", "_frombuffer"),
    )
) | {("numpy", "ndarray"), ("numpy", "dtype")}
_CIFAR_MAX_BYTES = 64 << 20  # an official batch is ~31 MB


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles only plain data and numpy arrays: any other global is refused, never called."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # how protocol 2 from Python 3 stores bytes
            return _latin1
        if (module, name) not in _CIFAR_GLOBALS:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: a CIFAR-10 batch references only numpy"
            )
        # numpy 2 moved numpy.core (the module official batches name) to numpy._core
        return super().find_class(module.replace("numpy.core", "numpy._core"), name)


def _latin1(text: str, encoding: str) -> bytes:
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"refusing to decode bytes with {encoding!r}")
    return text.encode("latin1")


def read_cifar_batch(f: Path) -> tuple[np.ndarray, np.ndarray]:
    """One CIFAR-10 python batch as (uint8 images N x 3 x 32 x 32, int64 labels), or ConfigError.

    The batch is a pickle; it is read with a restricted unpickler that admits only numpy's array
    rebuilders (the official files reference nothing else), so a crafted file cannot run code, and
    the result must be the expected dict of a uint8 ``data`` array and ``labels`` in 0..9.
    """
    bad = f"data.path: {f} is not a CIFAR-10 python batch"
    try:
        with safe_io.open_regular(f, max_bytes=_CIFAR_MAX_BYTES, error=ConfigError) as fh:
            d = _CifarUnpickler(fh, encoding="bytes").load()
    except ConfigError:
        raise
    except Exception as e:  # pickle raises many types for a damaged file
        raise ConfigError(f"{bad} ({e})") from None
    if not isinstance(d, dict) or not {b"data", b"labels"} <= d.keys():
        raise ConfigError(f"{bad} (expected a dict with b'data' and b'labels')")
    data, labels = d[b"data"], d[b"labels"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2:
        raise ConfigError(f"{bad} (b'data' must be a 2-D uint8 array)")
    if data.shape[1] != 3 * 32 * 32:
        raise ConfigError(f"{bad} (b'data' rows hold {data.shape[1]} values, not 3072)")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{bad} (b'labels' must be integers)") from None
    if y.shape != (len(data),) or (y.size and (y.min() < 0 or y.max() > 9)):
        raise ConfigError(f"{bad} (need {len(data)} labels in 0..9)")
    return data.reshape(-1, 3, 32, 32), y


def _read_cifar(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    batches = [read_cifar_batch(f) for f in files]
    x = torch.from_numpy(np.concatenate([b[0] for b in batches])).float() / 255.0
    return x, torch.from_numpy(np.concatenate([b[1] for b in batches]))


def epoch_order(
    n: int, *, seed: int, epoch: int, rank: int = 0, world_size: int = 1
) -> torch.Tensor:
    """This rank's sample order for ``epoch``: same on every resume, disjoint across ranks."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    perm = torch.randperm(n, generator=g)
    usable = n - n % world_size  # equal shard lengths: every rank runs the same number of steps
    return perm[:usable][rank::world_size]


def num_batches(n: int, batch_size: int, world_size: int = 1) -> int:
    return math.ceil((n - n % world_size) // world_size / batch_size)


def iter_batches(
    x: torch.Tensor, y: torch.Tensor, order: torch.Tensor, batch_size: int, start: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of ``order``, skipping the first ``start`` (already consumed before a resume)."""
    for i in range(start * batch_size, len(order), batch_size):
        idx = order[i : i + batch_size]
        yield x[idx], y[idx]


def corrupt(x: torch.Tensor, global_batch: int, cfg: CorruptSection) -> torch.Tensor:
    """Fault injection, as real runs get it: a NaN batch, or inputs blown up by ``scale``."""
    if global_batch in cfg.nan_batches:
        return torch.full_like(x, float("nan"))
    if global_batch in cfg.scale_batches:
        return x * cfg.scale
    return x
