"""Datasets of the reference trainer, deterministic batching, and fault injection.

- ``digits``: scikit-learn's bundled ``load_digits`` (1797 8x8 images, no download), as 1x8x8
  float images standardised with the training split's statistics.
- ``charcorpus``: character-level text made from the ``.py`` files of the running Python's
  standard library (a deterministic ~300 KB subset), cut into ``seq_len + 1`` blocks.
- ``cifar10``: the standard python-pickle batches (``data_batch_1..5``, ``test_batch``) read from a
  local folder. Never downloaded: a missing folder is a ConfigError naming the expected files.

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
from typing import Literal

import numpy as np
import torch

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


def _read_cifar(files: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    xs, ys = [], []
    for f in files:
        try:
            with open(f, "rb") as fh:
                d = pickle.load(fh, encoding="bytes")
            data, labels = d[b"data"], d[b"labels"]
        except (OSError, pickle.UnpicklingError, KeyError, EOFError) as e:
            raise ConfigError(f"data.path: {f} is not a CIFAR-10 python batch ({e})") from None
        xs.append(np.asarray(data, dtype=np.uint8).reshape(-1, 3, 32, 32))
        ys.append(np.asarray(labels, dtype=np.int64))
    x = torch.from_numpy(np.concatenate(xs)).float() / 255.0
    return x, torch.from_numpy(np.concatenate(ys))


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
