"""Structured stores, each written by the real package: MLflow (file store and sqlite backend,
through mlflow's own API) and W&B offline runs (``WANDB_MODE=offline``, no network).

The writers run in a child process: mlflow and wandb start threads and services (wandb-core) and
print warnings of their own, none of which belongs in the test process.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run

#: 50 steps of a run whose loss goes NaN at step 20, an eval every 10 steps
_METRICS = """
def rows():
    for s in range(50):
        d = {"train/loss": 2.0 / (s + 1), "train/grad_norm": 1.0 + 0.01 * s}
        if s == 20:
            d["train/loss"] = float("nan")
        if s % 10 == 9:
            d["val_loss"] = 1.5 / (s + 1)
        yield s, d
"""


def _write(tmp: Path, body: str, **env: str) -> None:
    script = textwrap.dedent(_METRICS) + textwrap.dedent(body)
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]


def _mlflow(tmp: Path, uri: str, runs: int = 1) -> None:
    pytest.importorskip("mlflow")
    body = f"""
    import mlflow
    mlflow.set_tracking_uri({uri!r})
    for k in range({runs}):
        with mlflow.start_run(run_name=f"run{{k}}"):
            mlflow.log_params({{"learning_rate": 0.001, "per_device_train_batch_size": 8}})
            for s, d in rows():
                mlflow.log_metrics(d, step=s)
    """
    _write(tmp, body, MLFLOW_ALLOW_FILE_STORE="true")


def _check_run(data_path: Path) -> None:
    data = read_run(data_path)
    assert data.format == "mlflow" or data.format == "wandb"
    train = data.train
    assert [r.step for r in train] == list(range(50))
    assert math.isnan(train[20].loss or 0.0) and train[19].loss == pytest.approx(0.1)
    assert train[49].grad_norm == pytest.approx(1.49)
    assert [(r.step, r.eval_loss) for r in data.evals][:2] == [(9, 0.15), (19, 0.075)]
    assert data.roles["train/loss"] == "loss" and data.roles["val_loss"] == "eval_loss"
    assert data.facts.get("lr") == 0.001 and data.facts.get("batch_size") == 8
    ids = {f.id for f in diagnose(data_path).findings}
    assert "nonfinite-loss" in ids


def test_mlflow_file_store(tmp_path: Path) -> None:
    _mlflow(tmp_path, (tmp_path / "mlruns").as_uri())
    _check_run(tmp_path / "mlruns")  # the root: one experiment, one run
    run = next(p for p in (tmp_path / "mlruns").glob("*/*") if (p / "metrics").is_dir())
    assert read_run(run).dialect == "file-store"


def test_mlflow_file_store_with_two_runs_names_them(tmp_path: Path) -> None:
    _mlflow(tmp_path, (tmp_path / "mlruns").as_uri(), runs=2)
    with pytest.raises(LogReadError, match=r"2 MLflow runs \(run[01] ") as e:
        read_run(tmp_path / "mlruns")
    assert "run0" in str(e.value) and "run1" in str(e.value)


def test_mlflow_sqlite_backend(tmp_path: Path) -> None:
    # mlflow-skinny alone cannot write sqlite: the backend needs sqlalchemy and alembic
    pytest.importorskip("sqlalchemy")
    pytest.importorskip("alembic")
    db = tmp_path / "mlflow.db"
    _mlflow(tmp_path, f"sqlite:///{db}")
    assert read_run(db).dialect == "sqlite"
    _check_run(db)


def _wandb(tmp: Path) -> Path:
    pytest.importorskip("wandb")
    body = """
    import wandb
    run = wandb.init(project="p", dir=".", config={"learning_rate": 0.001, "batch_size": 8})
    for s, d in rows():
        wandb.log(d, step=s)
    run.finish()
    """
    _write(tmp, body, WANDB_MODE="offline", WANDB_SILENT="true", WANDB_DISABLE_GIT="true")
    return tmp / "wandb"


def test_wandb_offline_run(tmp_path: Path) -> None:
    wdir = _wandb(tmp_path)
    run_dir = next(wdir.glob("offline-run-*"))
    _check_run(run_dir)
    assert read_run(wdir).dialect == "wandb-offline"  # the wandb/ folder: its latest run


def test_wandb_run_cut_short_says_how_much_was_read(tmp_path: Path) -> None:
    run_file = next(_wandb(tmp_path).glob("offline-run-*/run-*.wandb"))
    cut = tmp_path / "cut.wandb"
    blob = run_file.read_bytes()
    cut.write_bytes(blob[: len(blob) * 2 // 3])
    data = read_run(cut)
    assert 0 < len(data.train) < 50
    assert any("cut short" in n and "bytes not read" in n for n in data.notes)


def test_garbage_wandb_file_is_an_error(tmp_path: Path) -> None:
    f = tmp_path / "run-x.wandb"
    f.write_bytes(os.urandom(1000))
    with pytest.raises(LogReadError, match=r"run-x\.wandb"):
        read_run(f)


def test_a_wandb_folder_with_two_runs_names_them(tmp_path: Path) -> None:
    run = next(_wandb(tmp_path).glob("offline-run-*"))
    twin = run.parent / "offline-run-20000101_000000-twin0000"
    twin.mkdir()
    (twin / "run-twin0000.wandb").write_bytes(next(run.glob("run-*.wandb")).read_bytes())
    (run.parent / "latest-run").unlink()
    with pytest.raises(LogReadError, match=r"2 W&B runs \(offline-run-"):
        read_run(run.parent)
