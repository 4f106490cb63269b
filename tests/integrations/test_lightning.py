"""StableTrainCallback in real Lightning runs: an MLP on sklearn's digits with one NaN row.

In-process runs (1 device) show the failure and the cure; a 2-process ``strategy="ddp"`` run (gloo,
CPU), launched as a subprocess running this very file, puts the NaN row in rank 0's data only and
checks that both ranks skip the same step, stay identical and finite, and that one run log exists.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

L = pytest.importorskip("lightning.pytorch")

from stabletrain.integrations.lightning import StableTrainCallback  # noqa: E402
from stabletrain.records import StepRecord  # noqa: E402

pytestmark = [
    pytest.mark.lightning,
]

BATCH, BAD_ROW = 16, 48  # unshuffled: row 48 is in batch 3 (on one rank only under ddp)


def digits(bad_row: int | None) -> torch.utils.data.TensorDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x[:256], dtype=torch.float32) / 16.0
    if bad_row is not None:
        xt[bad_row] = float("nan")
    return torch.utils.data.TensorDataset(xt, torch.tensor(y[:256]))


class DigitsMLP(L.LightningModule):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10)
        )
        self.nan_batches: list[int] = []  # the batches this rank saw with NaN inputs

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        if not bool(torch.isfinite(x).all()):
            self.nan_batches.append(batch_idx)
        loss = torch.nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)


def fit(root: Path, callbacks: list[Any], **trainer_kw: Any) -> DigitsMLP:
    torch.manual_seed(0)
    model = DigitsMLP()
    loader = torch.utils.data.DataLoader(digits(BAD_ROW), batch_size=BATCH, shuffle=False)
    kw: dict[str, Any] = {
        "accelerator": "cpu",
        "devices": 1,
        "max_epochs": 1,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "logger": L.loggers.CSVLogger(str(root), name="csv"),
        "log_every_n_steps": 1,
        "default_root_dir": str(root),
    }
    kw.update(trainer_kw)
    L.Trainer(callbacks=callbacks, **kw).fit(model, loader)
    return model


def finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def steps(run_dir: Path) -> list[StepRecord]:
    return [
        StepRecord.from_json(json.loads(x))
        for x in (run_dir / "steps.jsonl").read_text().splitlines()
    ]


def test_without_callback_nan_row_poisons_weights(tmp_path: Path) -> None:
    assert not finite(fit(tmp_path, []))


@pytest.fixture(scope="module")
def guarded(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, StableTrainCallback, DigitsMLP]:
    root = tmp_path_factory.mktemp("lightning")
    cb = StableTrainCallback()
    loggers = [
        L.loggers.CSVLogger(str(root), name="csv"),
        L.loggers.TensorBoardLogger(str(root), name="tb"),
    ]
    model = fit(root, [cb], gradient_clip_val=0.5, logger=loggers)
    return root, cb, model


def test_callback_skips_nan_step_clips_once_and_logs(
    guarded: tuple[Path, StableTrainCallback, DigitsMLP],
) -> None:
    root, cb, model = guarded
    assert finite(model)
    # the run log sits in the (first) Lightning logger's versioned dir
    assert (
        cb.run_log is not None and cb.run_log.run_dir == root / "csv" / "version_0" / "stabletrain"
    )
    records = steps(cb.run_log.run_dir)
    assert len(records) == 256 // BATCH
    assert [r.step for r in records if r.skipped] == [BAD_ROW // BATCH] == cb.skipped_steps
    assert cb.guard.config.max_norm == 0.5  # Trainer(gradient_clip_val=0.5), applied by the guard
    assert any(r.clip_coef is not None and r.clip_coef < 1.0 for r in records)


@pytest.mark.parametrize("log", ["stabletrain", "metrics.csv", "tb"])
def test_doctor_finds_the_nan_step_in_every_log(
    guarded: tuple[Path, StableTrainCallback, DigitsMLP], log: str
) -> None:
    diagnose = pytest.importorskip("stabletrain.doctor").diagnose
    root = guarded[0]
    path = {
        "stabletrain": root / "csv" / "version_0" / "stabletrain",
        "metrics.csv": next((root / "csv").rglob("metrics.csv")),
        "tb": next((root / "tb").rglob("events.out.tfevents.*")).parent,
    }[log]
    found = {f.id: f.steps for f in diagnose(path).findings}
    nonfinite = found.get("nonfinite-loss", []) + found.get("nonfinite-grad", [])
    assert BAD_ROW // BATCH in nonfinite, found


def test_guard_metrics_reach_the_lightning_loggers(
    guarded: tuple[Path, StableTrainCallback, DigitsMLP],
) -> None:
    import csv

    root = guarded[0]
    text = (root / "csv" / "version_0" / "metrics.csv").read_text()
    rows = list(csv.DictReader(text.splitlines()))
    skipped = {int(r["step"]): r["stabletrain/skipped"] for r in rows if r["stabletrain/skipped"]}
    assert len(skipped) == 256 // BATCH
    assert [s for s, v in skipped.items() if float(v) == 1.0] == [BAD_ROW // BATCH]
    names = {k for k in rows[0] if k.startswith("stabletrain/")}
    assert {"stabletrain/grad_norm", "stabletrain/clip_rate", "stabletrain/skips",
            "stabletrain/rollbacks", "stabletrain/lr"} <= names  # fmt: skip
    tb = next((root / "tb").rglob("events.out.tfevents.*"))
    assert b"stabletrain/grad_norm" in tb.read_bytes()  # the TensorBoard logger has them too


def test_a_second_run_gets_its_own_run_log(tmp_path: Path) -> None:
    runs = [StableTrainCallback(), StableTrainCallback()]
    for cb in runs:
        fit(tmp_path, [cb], max_steps=3)
    dirs = [cb.run_log.run_dir for cb in runs if cb.run_log is not None]
    assert dirs == [tmp_path / "csv" / f"version_{v}" / "stabletrain" for v in (0, 1)]
    assert all(len(steps(d)) == 3 for d in dirs)  # the first one was not overwritten


@pytest.mark.dist
@pytest.mark.slow
def test_ddp_two_ranks_skip_the_same_step(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.run(
        [sys.executable, __file__, str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    seen = [r["nan_batches"] for r in results]
    assert sorted(seen, key=len) == [[], [3]]  # the NaN row reached exactly one rank
    assert results[0]["skipped"] == results[1]["skipped"] == [3]  # both ranks skipped it
    assert results[0]["finite"] and results[1]["finite"]
    assert results[0]["checksum"] == pytest.approx(results[1]["checksum"], rel=1e-6)
    records = steps(tmp_path / "csv" / "version_0" / "stabletrain")  # written once, by rank 0
    assert [r.step for r in records] == list(range(256 // (2 * BATCH)))


def _ddp_main(root: Path) -> None:
    cb = StableTrainCallback()
    model = fit(root, [cb], devices=2, strategy="ddp", num_nodes=1)
    rank = int(os.environ.get("LOCAL_RANK", "0"))
    out = {
        "skipped": cb.skipped_steps,
        "nan_batches": model.nan_batches,
        "finite": finite(model),
        "checksum": float(sum(p.double().sum() for p in model.parameters())),
    }
    (root / f"rank{rank}.json").write_text(json.dumps(out))


if __name__ == "__main__":
    _ddp_main(Path(sys.argv[1]))


class DigitsWithVal(DigitsMLP):
    def validation_step(self, batch: Any, batch_idx: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.cross_entropy(self.net(x), y))


def test_validation_metric_reaches_observe_eval(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = DigitsWithVal()
    train = torch.utils.data.DataLoader(digits(None), batch_size=BATCH, shuffle=False)
    val = torch.utils.data.DataLoader(digits(None), batch_size=64, shuffle=False)
    cb = StableTrainCallback()
    L.Trainer(
        callbacks=[cb], accelerator="cpu", devices=1, max_epochs=3, enable_progress_bar=False,
        enable_model_summary=False, enable_checkpointing=False, logger=False,
        default_root_dir=str(tmp_path), num_sanity_val_steps=2,
    ).fit(model, train, val)  # fmt: skip
    assert cb.guard.evals.count == 3  # one per epoch, not the sanity check
    assert cb.guard.evals.best is not None and cb.guard.evals.best < 2.3
