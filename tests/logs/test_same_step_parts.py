"""One record written as several lines at one step is one record, not a rewind.

Lightning's CSVLogger writes an ``on_epoch`` metric on a row of its own at the epoch's last step,
beside that step's own row. Before, the later row replaced the earlier one: the step's loss was
lost and the report said "replaced by later records ... (resumed/rewound run or duplicate
logging)". Both readers (polars' columns and the per-row Python reader) must join the parts; an
identical repeat (ranks logging without a guard) and a rewind are still replaced, and noted.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import lightning as L
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers import table
from stabletrain.report import jsonfmt

pytestmark = [pytest.mark.slow, pytest.mark.lightning]  # (its warnings: conftest)


class _Digits(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _i: int) -> torch.Tensor:
        x, t = batch
        out = self.net(x)
        loss = nn.functional.cross_entropy(out, t)
        self.log("train_loss", loss, on_step=True, on_epoch=True)
        self.log("train_acc", (out.argmax(1) == t).float().mean(), on_step=True, on_epoch=True)
        return loss

    def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _i: int) -> None:
        x, t = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), t))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), 1e-2)


@pytest.fixture(scope="module")
def metrics_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    data = torch.utils.data.TensorDataset(
        torch.tensor(x / 16, dtype=torch.float32), torch.tensor(y)
    )
    train = torch.utils.data.Subset(data, range(256))
    val = torch.utils.data.Subset(data, range(1500, 1628))
    root = tmp_path_factory.mktemp("lightning")
    L.Trainer(
        max_epochs=3,
        logger=L.pytorch.loggers.CSVLogger(str(root), name="csv"),
        log_every_n_steps=1,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    ).fit(
        _Digits(),
        torch.utils.data.DataLoader(train, batch_size=32),
        torch.utils.data.DataLoader(val, batch_size=64),
    )
    return root / "csv" / "version_0" / "metrics.csv"


def _step_losses(path: Path) -> dict[int, float]:
    with open(path, newline="") as f:
        return {int(r["step"]): float(r["train_loss_step"]) for r in csv.DictReader(f)
                if r.get("train_loss_step")}  # fmt: skip


@pytest.fixture(params=["python", "polars"])
def reader(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each test once per reader: the per-row Python reader (small files) and polars' columns."""
    if request.param == "polars":
        monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    return str(request.param)


def test_lightning_epoch_row_joins_its_step(metrics_csv: Path, reader: str) -> None:
    logged = _step_losses(metrics_csv)
    assert len(logged) == 24  # 8 steps x 3 epochs, each epoch's last step also has an epoch row
    data = read_run(metrics_csv)
    kept = {r.step: r.loss for r in data.train if r.loss is not None}
    assert kept == pytest.approx(logged)  # every step's loss, the epoch-end ones included
    assert not any("replaced by later records" in n for n in data.notes)
    ends = [r for r in data.train if "train_loss_epoch" in r.metrics]
    assert len(ends) == 3 and all(r.loss is not None for r in ends)  # joined, not replaced


def test_both_readers_give_one_report(metrics_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    python = json.loads(jsonfmt.render(diagnose(metrics_csv)))
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    assert json.loads(jsonfmt.render(diagnose(metrics_csv))) == python


def test_repeats_and_rewinds_are_still_replaced(tmp_path: Path, reader: str) -> None:
    # near misses: an identical line twice (no guard on ranks), a conflicting value at one step
    rows = ["step,loss,lr"] + [f"{i},{2.0 - 0.01 * i},0.001" for i in range(1, 30)]
    rows.insert(6, "5,1.95,0.001")  # the same line again
    rows.insert(12, "10,9.0,0.001")  # step 10 logged again with another loss
    log = tmp_path / "log.csv"
    log.write_text("\n".join(rows) + "\n")
    data = read_run(log)
    assert any("2 train record(s) replaced" in n for n in data.notes)
    assert {r.step: r.loss for r in data.train}[10] == 9.0
