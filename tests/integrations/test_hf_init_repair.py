"""The guard's init repair inside a real ``transformers.Trainer`` (``StableTrainCallback``, the
``guard.optimizer`` path): an 8-layer ReLU MLP on scikit-learn's digits initialised at
normal(std 0.5), ~2.8x Kaiming per layer, so the output starts ~1e4x too large."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

transformers = pytest.importorskip("transformers")

from stabletrain.integrations.hf import StableTrainCallback  # noqa: E402

pytestmark = [
    pytest.mark.hf,
    pytest.mark.filterwarnings("ignore::FutureWarning:transformers.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:transformers.*"),
]


class Digits(torch.utils.data.Dataset):  # type: ignore[type-arg]
    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "labels": self.y[i]}


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(7):
            layers += [nn.Linear(64, 64), nn.ReLU()]
        self.net = nn.Sequential(*layers, nn.Linear(64, 10))
        for m in self.net.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.5)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        logits = self.net(x)
        return {"loss": F.cross_entropy(logits, labels), "logits": logits}


def _train(tmp_path: Path, guarded: bool) -> float:
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    y = torch.tensor(d.target)
    torch.manual_seed(0)
    model = MLP()
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=32, num_train_epochs=3,
        learning_rate=1e-3, weight_decay=0.0, lr_scheduler_type="constant", max_grad_norm=1.0,
        report_to="none", save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True,
        logging_strategy="no", dataloader_num_workers=0,
    )  # fmt: skip
    trainer = transformers.Trainer(
        model=model, args=args, train_dataset=Digits(x[:1437], y[:1437]),
        callbacks=[StableTrainCallback()] if guarded else [],
    )  # fmt: skip
    trainer.train()
    with torch.no_grad():
        return float((model.net(x[1437:]).argmax(1) == y[1437:]).float().mean())


def test_the_init_repair_runs_under_the_hf_callback(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    plain = _train(tmp_path / "plain", guarded=False)
    caplog.set_level(logging.WARNING, logger="stabletrain")
    repaired = _train(tmp_path / "guarded", guarded=True)
    (msg,) = [r.getMessage() for r in caplog.records if "init repaired" in r.getMessage()]
    assert "8 layer(s)" in msg
    assert repaired > plain + 0.1 and repaired > 0.85, (repaired, plain)
