"""Read an MLflow run: the file store (``mlruns/<experiment>/<run>/metrics/<key>``) or the sqlite
backend (``mlflow.db``, MLflow 3's default), without importing mlflow.

File store: each metric is a text file of ``<timestamp ms> <value> <step>`` lines (``nan``/``inf``
spelled out), a key with ``/`` nested in folders (``metrics/train/loss``); ``params/<key>``
holds one value each, ``tags/mlflow.runName`` the run's name. sqlite: the ``metrics`` table
(``key, value, timestamp, run_uuid, step, is_nan``; a NaN is stored as 0 with ``is_nan``), and
``params``/``runs``. Each metric becomes a column over the union of the steps (a key logged twice
at one step keeps its latest value, as MLflow's UI does); params become facts through the generic
config reader's key table.

Which run: a run folder, or a store holding exactly one run; with several, the error lists them
(``name (id)``): pass a run folder; a database holding several runs is not read (choosing one
by name is not supported yet).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain import safe_io
from stabletrain.errors import LogReadError
from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup

Series = dict[str, tuple[np.ndarray, np.ndarray]]  # key -> (steps, values), in logged order


def is_run_dir(p: Path) -> bool:
    return p.is_dir() and (p / "metrics").is_dir() and (p / "meta.yaml").is_file()


def is_file_store(p: Path) -> bool:
    """A run folder, an experiment folder or an ``mlruns`` root."""
    return is_run_dir(p) or bool(_runs(p))


def is_sqlite(head: bytes) -> bool:
    return head.startswith(b"SQLite format 3\x00")


def _runs(p: Path) -> list[Path]:
    if not p.is_dir():
        return []
    out = [d for d in sorted(p.iterdir()) if is_run_dir(d)]
    if out:
        return out
    return [
        r for d in sorted(p.iterdir()) if d.is_dir() for r in sorted(d.iterdir()) if is_run_dir(r)
    ]


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    """Read the run at ``path`` (run folder, experiment folder, mlruns root, or sqlite file)."""
    if path.is_file():
        return _read_sqlite(path, mapping)
    run = path if is_run_dir(path) else _one(path, _runs(path))
    series: Series = {}
    for f in sorted((run / "metrics").rglob("*")):
        if f.is_file():
            series[f.relative_to(run / "metrics").as_posix()] = _metric_file(f)
    params = {
        f.relative_to(run / "params").as_posix(): safe_io.read_text(f, errors="replace").strip()
        for f in (run / "params").rglob("*")
        if f.is_file()
    }
    data = RunData(path=path, format="mlflow", dialect="file-store")
    _fill(data, series, params, mapping, run)
    return data


def _one(root: Path, runs: list[Path]) -> Path:
    if len(runs) == 1:
        return runs[0]
    if not runs:
        raise LogReadError(f"{root}: no MLflow run (a folder with metrics/ and meta.yaml)")
    shown = ", ".join(f"{_name(r)} ({r.relative_to(root)})" for r in runs[:8])
    raise LogReadError(f"{root}: {len(runs)} MLflow runs ({shown}); pass the run folder to read")


def _name(run: Path) -> str:
    f = run / "tags" / "mlflow.runName"
    return f.read_text(encoding="utf-8", errors="replace").strip() if f.is_file() else run.name


def _metric_file(f: Path) -> tuple[np.ndarray, np.ndarray]:
    steps: list[int] = []
    vals: list[float] = []
    for line in safe_io.read_text(f, errors="replace").splitlines():
        parts = line.split()
        if len(parts) < 2:
            continue
        try:
            v = float(parts[1])
            s = int(parts[2]) if len(parts) > 2 else len(steps)
        except ValueError:
            continue
        if abs(s) >= table.STEP_LIMIT:
            continue
        steps.append(s)
        vals.append(v)
    return np.array(steps, dtype=np.int64), np.array(vals, dtype=np.float64)


def _read_sqlite(path: Path, mapping: dict[str, str] | None) -> RunData:
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    except sqlite3.Error as e:
        raise LogReadError(f"{path}: cannot open the sqlite file ({e})") from e
    try:
        names = {r[0] for r in con.execute("select name from sqlite_master where type='table'")}
        if not {"metrics", "runs"} <= names:
            raise LogReadError(f"{path}: an sqlite file without MLflow's metrics/runs tables")
        runs = con.execute(
            "select run_uuid, name from runs where lifecycle_stage != 'deleted' order by start_time"
        ).fetchall()
        if len(runs) != 1:
            if not runs:
                raise LogReadError(f"{path}: the MLflow database holds no run")
            shown = ", ".join(f"{n} ({u})" for u, n in runs[:8])
            raise LogReadError(
                f"{path}: {len(runs)} MLflow runs ({shown}); export one run or keep one per file"
            )
        target = runs[0][0]
        rows = con.execute(
            "select key, step, value, is_nan from metrics where run_uuid = ? "
            "order by key, step, timestamp",
            (target,),
        ).fetchall()
        params = dict(
            con.execute("select key, value from params where run_uuid = ?", (target,)).fetchall()
        )
    except sqlite3.Error as e:
        raise LogReadError(f"{path}: not a readable MLflow database ({e})") from e
    finally:
        con.close()
    grouped: dict[str, tuple[list[int], list[float]]] = {}
    for key, step, value, is_nan in rows:
        if not isinstance(step, int) or abs(step) >= table.STEP_LIMIT:
            continue
        s, v = grouped.setdefault(key, ([], []))
        s.append(int(step))
        v.append(float("nan") if is_nan else float(value))
    series = {k: (np.array(s, dtype=np.int64), np.array(v)) for k, (s, v) in grouped.items()}
    data = RunData(path=path, format="mlflow", dialect="sqlite")
    _fill(data, series, params, mapping, None)
    return data


def _fill(
    data: RunData,
    series: Series,
    params: dict[str, Any],
    mapping: dict[str, str] | None,
    run: Path | None,
) -> None:
    if not series:
        data.tried = ["mlflow"]
        return
    step, cols = merge_series(series)
    table.to_run(data, step, cols, build_lookup(list(cols), mapping))
    data.lines_total = data.lines_understood = sum(len(s) for s, _ in series.values())
    data.facts.format = "generic-log"
    if params:
        from stabletrain.configs.keys import extract

        extract(params, data.facts, str(run / "params" if run else data.path))


def merge_series(series: Series) -> tuple[np.ndarray, dict[str, table.Column]]:
    """Per-key (steps, values) series on the union of their steps: one row per step, a key's
    latest value at a step kept, empty where a key has no value."""
    all_steps = np.unique(np.concatenate([s for s, _ in series.values()]))
    n = len(all_steps)
    cols: dict[str, table.Column] = {}
    for key, (s, v) in series.items():
        vals = np.full(n, np.nan)
        empty = np.ones(n, dtype=bool)
        # the latest entry of each step: the first of the reversed series
        _, first = np.unique(s[::-1], return_index=True)
        keep = len(s) - 1 - first
        pos = np.searchsorted(all_steps, s[keep])
        vals[pos] = v[keep]
        empty[pos] = False
        cols[key] = (vals, empty if empty.any() else None)
    return all_steps, cols
