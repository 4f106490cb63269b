from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from stabletrain.errors import ConfigError
from stabletrain.train.config import CorruptSection, DataSection
from stabletrain.train.data import (
    corrupt,
    epoch_order,
    iter_batches,
    load_dataset,
    num_batches,
    read_cifar_batch,
    unigram_entropy,
)


def test_digits_split_is_deterministic_and_normalised() -> None:
    a = load_dataset(DataSection(name="digits"), seed=0)
    b = load_dataset(DataSection(name="digits"), seed=0)
    assert a.x_train.shape[1:] == (1, 8, 8)
    assert len(a.x_train) + len(a.x_val) == 1797
    assert len(a.x_val) == round(1797 * 0.2)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_val, b.y_val)
    assert abs(float(a.x_train.mean())) < 1e-5 and abs(float(a.x_train.std()) - 1) < 1e-4
    c = load_dataset(DataSection(name="digits"), seed=1)
    assert not torch.equal(a.y_val, c.y_val)


def test_charcorpus_blocks_and_entropy() -> None:
    d = load_dataset(DataSection(name="charcorpus", seq_len=32, val_fraction=0.1), seed=0)
    assert d.task == "lm" and d.x_train.shape[1] == 32
    assert torch.equal(d.x_train[:, 1:], d.y_train[:, :-1])  # targets are the next character
    assert len(d.vocab) == d.num_classes and int(d.x_train.max()) < d.num_classes
    h = unigram_entropy(d.y_train, d.num_classes)
    assert 2.5 < h < np.log(d.num_classes)  # text is far from uniform over its vocabulary
    uniform = torch.arange(8).repeat(10)
    assert unigram_entropy(uniform, 8) == pytest.approx(np.log(8))


def _write_cifar(root: Path, n: int, batches: list[str]) -> None:
    rng = np.random.default_rng(0)
    root.mkdir(parents=True)
    for name in batches:
        data = {
            b"data": rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            b"labels": list(rng.integers(0, 10, size=n)),
        }
        with open(root / name, "wb") as f:
            pickle.dump(data, f)


def test_cifar10_reads_local_pickle_batches(tmp_path: Path) -> None:
    files = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    _write_cifar(tmp_path / "cifar-10-batches-py", 8, files)
    d = load_dataset(DataSection(name="cifar10", path=str(tmp_path)), seed=0)
    assert d.x_train.shape == (40, 3, 32, 32) and d.x_val.shape == (8, 3, 32, 32)
    assert d.in_channels == 3 and d.y_train.dtype == torch.long
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(3), atol=1e-5)


def test_cifar10_missing_or_damaged_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="never downloads"):
        load_dataset(DataSection(name="cifar10", path=str(tmp_path / "nope")), seed=0)
    with pytest.raises(ConfigError, match=r"data\.path: cifar10 needs"):
        load_dataset(DataSection(name="cifar10"), seed=0)
    _write_cifar(tmp_path / "c", 4, ["data_batch_1"])
    (tmp_path / "c" / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(ConfigError, match="test_batch is not a CIFAR-10 python batch"):
        load_dataset(DataSection(name="cifar10", path=str(tmp_path / "c")), seed=0)


class _Touch:
    """A real pickle payload: unpickling it runs ``touch MARKER`` (issue 12, item 1)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("name", ["data_batch_1", "test_batch"])
def test_cifar10_batch_with_a_pickle_payload_is_refused_not_run(tmp_path: Path, name: str) -> None:
    root = tmp_path / "c"
    _write_cifar(root, 4, ["data_batch_1", "test_batch"])
    marker = tmp_path / "pwned"
    with open(root / name, "wb") as f:
        pickle.dump({b"data": _Touch(marker), b"labels": [0] * 4}, f)
    with pytest.raises(
        ConfigError, match=rf"{name} is not a CIFAR-10 .*refusing to load (os|posix)\.system"
    ):
        load_dataset(DataSection(name="cifar10", path=str(root)), seed=0)
    assert not marker.exists(), "the payload ran"


def test_cifar10_batch_as_published_protocol_2_naming_numpy_core(tmp_path: Path) -> None:
    """The official files: protocol 2, ``numpy.core.multiarray`` (numpy 1), extra keys."""
    batch = {
        b"batch_label": b"training batch 1 of 5",
        b"labels": [3, 9],
        b"data": np.arange(2 * 3072, dtype=np.int64).astype(np.uint8).reshape(2, 3072),
        b"filenames": [b"a.png", b"b.png"],
    }
    raw = pickle.dumps(batch, protocol=2).replace(b"numpy._core", b"numpy.core")
    (tmp_path / "data_batch_1").write_bytes(raw)
    x, y = read_cifar_batch(tmp_path / "data_batch_1")
    assert x.shape == (2, 3, 32, 32) and y.tolist() == [3, 9]
    assert np.array_equal(x.reshape(2, 3072), batch[b"data"])


def test_cifar10_batch_of_the_wrong_shape_or_type_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "c"
    _write_cifar(root, 4, ["data_batch_1", "test_batch"])
    bad = [
        {b"data": np.zeros((4, 3072), dtype=np.float32), b"labels": [0] * 4},
        {b"data": np.zeros((4, 100), dtype=np.uint8), b"labels": [0] * 4},
        {b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0] * 3},
        {b"data": np.zeros((4, 3072), dtype=np.uint8), b"labels": [0, 1, 2, 11]},
        [1, 2, 3],
    ]
    for obj in bad:
        with open(root / "test_batch", "wb") as f:
            pickle.dump(obj, f)
        with pytest.raises(ConfigError, match="test_batch is not a CIFAR-10 python batch"):
            load_dataset(DataSection(name="cifar10", path=str(root)), seed=0)


def test_cifar10_payload_through_the_cli_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stabletrain.cli import main

    root = tmp_path / "c"
    _write_cifar(root, 4, ["data_batch_1", "test_batch"])
    marker = tmp_path / "pwned"
    with open(root / "data_batch_1", "wb") as f:
        pickle.dump(_Touch(marker), f)
    config = tmp_path / "cifar.yaml"
    config.write_text(
        "run: {tensorboard: false}\n"
        f"data: {{name: cifar10, path: '{root}'}}\n"
        "model: {name: cnn}\noptim: {name: sgd, lr: 0.01}\nschedule: {name: constant}\n"
        "train: {epochs: 1}\namp: {}\n",
        encoding="utf-8",
    )
    rc = main(["train", str(config), "--run-dir", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and not marker.exists()
    assert "data_batch_1" in err and "Traceback" not in err


def test_epoch_order_is_reproducible_and_sharded() -> None:
    a = epoch_order(101, seed=3, epoch=2)
    assert torch.equal(a, epoch_order(101, seed=3, epoch=2))
    assert not torch.equal(a, epoch_order(101, seed=3, epoch=3))
    r0 = epoch_order(101, seed=3, epoch=2, rank=0, world_size=2)
    r1 = epoch_order(101, seed=3, epoch=2, rank=1, world_size=2)
    assert len(r0) == len(r1) == 50 and not set(r0.tolist()) & set(r1.tolist())
    assert num_batches(101, 16, 2) == 4 and num_batches(101, 16) == 7


def test_iter_batches_skips_consumed_batches() -> None:
    x, y = torch.arange(10.0), torch.arange(10)
    order = torch.arange(10)
    full = list(iter_batches(x, y, order, 3))
    resumed = list(iter_batches(x, y, order, 3, start=2))
    assert len(full) == 4 and [b[1].tolist() for b in resumed] == [[6, 7, 8], [9]]


def test_corrupt_injects_nan_and_scale() -> None:
    cfg = CorruptSection(nan_batches=[1], scale_batches=[2], scale=10.0)
    x = torch.ones(2, 3)
    assert torch.equal(corrupt(x, 0, cfg), x)
    assert torch.isnan(corrupt(x, 1, cfg)).all()
    assert torch.equal(corrupt(x, 2, cfg), x * 10)
