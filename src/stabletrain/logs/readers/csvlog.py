"""Read CSV metric tables into columns: Lightning ``metrics.csv``, Keras ``CSVLogger``, ultralytics
``results.csv``, W&B chart exports, TensorBoard's "Download CSV", and generic CSV.

Dialects (from the header, and for TensorBoard from the file name):

- Lightning ``CSVLogger``: one row per log call, sparse columns (``step``, ``epoch``,
  ``train_loss``, ``val_loss``, ``lr-AdamW``...).
- Keras ``CSVLogger``: one row per epoch (``epoch,loss,accuracy,val_loss,...``); the epoch is
  the step.
- ultralytics ``results.csv`` (YOLOv8+, and YOLOv5's with names and cells padded to 20
  characters): one row per epoch; the train loss is the sum of the ``train/*_loss`` components
  (what the trainer backpropagates, per image), the eval loss the sum of ``val/*_loss``, the LR the
  first param group's (``lr/pg0``, YOLOv5 ``x/lr0``); mAP/precision/recall are eval metrics.
- W&B chart export: ``Step`` plus ``"<run> - <metric>"`` columns with ``__MIN``/``__MAX``
  companions (the band W&B draws when it samples); the companions are left out, and a file
  holding several runs is read for its first run (the note names the others).
- TensorBoard "Download CSV": ``Wall time,Step,Value``, one tag per file; the tag is taken from
  the file name TensorBoard gives it (``run-<run>-tag-<tag>.csv``, ``/`` written as ``_``), the
  run name ``validation``/``val``/``eval`` making it an eval metric (Keras' ``epoch_loss`` in
  ``validation/``).

Reading: polars parses a file of ``table.POLARS_MIN_BYTES`` or more into typed columns (0.26 s
per million rows here, against 0.56 s for pyarrow.csv and ~10 s for ``csv.reader`` with per-row
records; see docs/benchmarks-doctor.md); one row per line and no empty cell, or every line with
all its separators (counted on the raw bytes), says no row was short. A file with a malformed row
(wrong number of cells, a half-written last line), blank lines or quoted cells with empty ones,
and every smaller file, goes through ``csv.reader`` instead, which skips bad rows with a note.
A cell that is not a number is empty.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain.errors import LogReadError
from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import Slot, build_lookup
from stabletrain.logs.readers.table import Column

_STEPS = ("step", "global_step", "iteration", "steps")
_WANDB = re.compile(r"^(?P<run>.+?) - (?P<metric>.+?)(?P<band>__MIN|__MAX)?$")
_TB_NAME = re.compile(r"^run[-_](?P<run>.*?)-tag-(?P<tag>.+)$")
_EVAL_RUNS = ("validation", "val", "eval", "valid", "test")
_CHUNK = 1 << 24


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    header = _header(path)
    names, cols, total, bad = _columns(path, header)
    data = RunData(path=path, format="csv")
    data.dialect = _dialect(path, names)
    lower = {h.lower() for h in names}
    has_step = bool(lower & set(_STEPS)) or bool(mapping and "step" in mapping)
    renamed: dict[str, str] = {}  # a dialect's name for a column -> the file's own name
    if data.dialect == "tensorboard-csv":
        renamed = dict(zip(["Step", "wall_time"], names[1::-1], strict=True))
        names, cols = _tensorboard(path, names, cols, data)
        renamed[names[2]] = "Value"
    elif data.dialect == "wandb-export":
        old_names = names
        names, cols = _wandb(names, cols, data)
        renamed = {data.roles[n]: n for n in old_names if data.roles.get(n) not in (None, "skip")}
        has_step = True
    elif data.dialect == "ultralytics":
        renamed = _ultralytics(names, cols, data)
    if data.dialect in ("keras", "ultralytics"):
        data.format = "keras-csv" if data.dialect == "keras" else "csv"
    elif has_step:
        data.format = "lightning-csv" if "epoch" in lower else "csv"
    elif "epoch" in lower:
        data.format, data.dialect = "keras-csv", "keras"
    # whose keys fixes use: Lightning's Trainer arguments (gradient_clip_val...), else generic
    data.facts.format = "lightning" if data.format == "lightning-csv" else "generic-log"
    if mapping and renamed:  # --map names the file's own columns
        back = {orig: new for new, orig in renamed.items()}
        mapping = {field: back.get(col, col) for field, col in mapping.items()}
    lookup = build_lookup(names, mapping)
    epoch: Column | None = None
    if data.format == "keras-csv" or data.dialect == "ultralytics":
        # the epoch is the step: keep it out of the metrics, use it as the records' step and epoch
        name = next(h for h in names if h.lower() == "epoch")
        lookup[name] = ("step", None, name)
        epoch, has_step = cols[name], True
    step, keep, numbered = _steps(names, cols, lookup, has_step)
    if keep is not None:
        cols = {k: (v[keep], None if m is None else m[keep]) for k, (v, m) in cols.items()}
        epoch = None if epoch is None else (epoch[0][keep], None)
        bad += int((~keep).sum())
    table.to_run(data, step, {n: cols[n] for n in names}, lookup, epoch=epoch)
    # the header shows the file's own column names, not the names a dialect gave them
    data.roles = {renamed.get(k, k): v for k, v in data.roles.items()}
    if bad:
        data.notes.append(f"{path.name}: {bad} malformed row(s) skipped")
    if numbered and data.format == "csv":
        data.notes.append(f"{path.name}: no step column; steps are row numbers")
    table.note_rows(data, total, total - bad)
    return data


# -- reading ----------------------------------------------------------------------------------
def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            first = next(csv.reader(f), [])
    except (OSError, csv.Error) as e:
        raise LogReadError(f"{path}: not a readable CSV file ({e})") from e
    if not first or not any(h.strip() for h in first):
        raise LogReadError(f"{path}: empty CSV file (no header row)")
    return first


def _columns(path: Path, header: list[str]) -> tuple[list[str], dict[str, Column], int, int]:
    """(names, {name: column}, data rows, malformed rows skipped)."""
    names = _unique([h.strip() for h in header])
    if path.stat().st_size >= table.POLARS_MIN_BYTES:
        rows = _data_lines(path)
        got = _polars(path, names, rows)
        # polars fills a short row's missing cells with nulls and keeps blank lines as empty
        # rows: one row per line and no empty cell, or every line with all its separators
        if got is not None and (
            all(m is None for _, m in got.values()) or _regular_rows(path, len(header)) == rows
        ):
            return names, got, rows, 0
    return _python(path, names)


def _data_lines(path: Path) -> int:
    """Lines after the header (a last line without a newline counted)."""
    newlines = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            newlines += chunk.count(b"\n")
            last = chunk[-1:]
    return newlines - 1 + (1 if last not in (b"\n", b"") else 0)


def _regular_rows(path: Path, ncols: int) -> int | None:
    """The number of data rows when every line has ``ncols`` cells, no cell is quoted and no
    line is blank (counted on the raw bytes, in chunks); None otherwise."""
    commas = newlines = 0
    last = b""
    head_done = False
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            if not head_done:
                end = chunk.find(b"\n")
                if end < 0:
                    return None
                chunk, head_done = chunk[end + 1 :], True
            if (
                b'"' in chunk
                or b"\n\n" in chunk
                or b"\n\r\n" in chunk
                or (last == b"\n" and chunk[:1] in (b"\n", b"\r"))
            ):
                return None
            commas += chunk.count(b",")
            newlines += chunk.count(b"\n")
            last = chunk[-1:] or last
    rows = newlines + (1 if last not in (b"\n", b"") else 0)
    return rows if rows and commas == rows * (ncols - 1) else None


def _polars(path: Path, names: list[str], rows: int) -> dict[str, Column] | None:
    """The columns as polars parses them, streamed in batches (``table.READ_ROWS``) into arrays
    of ``rows`` (the file's data lines); None when polars cannot read the file or reads another
    number of rows (csv.reader then decides)."""
    pl = table.import_polars()
    if pl is None:  # (a dependency; without it every file takes the slow path)
        return None
    # types from the first 10,000 rows; a later cell that does not fit them fails the parse, and
    # the second try reads every cell as text (parsed per distinct value by polars_column)
    for options in ({"infer_schema_length": 10_000}, {"infer_schema": False}):
        filler = table.Filler(rows)
        try:
            frame = pl.scan_csv(path, has_header=True, new_columns=names, **options)
            for batch in table.polars_batches(frame):
                cols = {name: polars_column(batch.get_column(name)) for name in names}
                if not filler.add(cols, len(batch)):
                    return None
        except Exception:  # polars raises many kinds
            continue
        return filler.columns(names) if filler.filled == rows else None
    return None


def polars_column(s: Any) -> Column:
    """A polars Series as (float64, empty mask): numbers as they are, strings parsed once per
    distinct value ("nan", "inf", "Infinity" are numbers; other text is empty); booleans and
    anything else empty, as ``fields.to_float`` (the per-row path) has them."""
    import polars as pl

    if s.dtype == pl.String:
        uniq = s.drop_nulls().unique().to_list()
        parsed = {u: table.parse_number(u) for u in uniq}
        s = s.replace_strict(
            list(parsed), [parsed[u] for u in parsed], default=None, return_dtype=pl.Float64
        )
    elif not s.dtype.is_numeric():
        return np.full(len(s), np.nan), np.ones(len(s), dtype=bool)
    nulls = s.null_count()
    vals = s.cast(pl.Float64).to_numpy()
    if nulls == 0:
        return np.asarray(vals, dtype=np.float64), None
    mask = s.is_null().to_numpy()
    return np.asarray(vals, dtype=np.float64), mask


def _python(path: Path, names: list[str]) -> tuple[list[str], dict[str, Column], int, int]:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f))[1:]
    except (OSError, csv.Error) as e:
        raise LogReadError(f"{path}: not a readable CSV file ({e})") from e
    good = [r for r in rows if r and len(r) == len(names)]
    total = sum(1 for r in rows if r)
    cells = list(zip(*good, strict=True)) if good else [() for _ in names]
    cols = {n: table.floats(list(c)) for n, c in zip(names, cells, strict=True)}
    return names, cols, total, total - len(good)


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for n in names:
        k = seen.get(n, 0)
        seen[n] = k + 1
        out.append(n if k == 0 else f"{n}.{k}")
    return out


def _steps(
    names: list[str], cols: dict[str, Column], lookup: dict[str, Slot], has_step: bool
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(step per kept row, the rows kept or None for all, rows numbered by position)."""
    n = len(next(iter(cols.values()))[0]) if cols else 0
    if not has_step:
        return np.arange(n, dtype=np.int64), None, n
    # the first step-like column with a finite value wins, as step_of does
    step = table.first_steps((cols[k][0] for k in names if lookup[k][0] == "step"), n)
    missing = np.isnan(step)
    if not missing.any():
        return step.astype(np.int64), None, 0
    keep = ~missing
    return step[keep].astype(np.int64), keep, 0


# -- dialects ---------------------------------------------------------------------------------
def _dialect(path: Path, names: list[str]) -> str | None:
    low = [n.lower() for n in names]
    if low == ["wall time", "step", "value"]:
        return "tensorboard-csv"
    if any(_WANDB.match(n) for n in names) and any(" - " in n for n in names):
        return "wandb-export"
    if (
        "epoch" in low
        and any(n.startswith(("train/", "metrics/", "val/")) for n in low)
        and any(n.startswith(("lr/pg", "x/lr")) for n in low)
    ):
        return "ultralytics"
    if "epoch" in low and not set(low) & set(_STEPS):
        return "keras"
    if path.name == "metrics.csv" and "step" in low:
        return "lightning"
    return None


def _tensorboard(
    path: Path, names: list[str], cols: dict[str, Column], data: RunData
) -> tuple[list[str], dict[str, Column]]:
    m = _TB_NAME.match(path.stem)
    run, tag = (m.group("run"), m.group("tag")) if m else ("", path.stem)
    if tag.startswith("epoch_"):  # Keras writes epoch_loss / epoch_accuracy
        tag = tag[len("epoch_") :]
    if run.lower().rstrip("/").rsplit("_", 1)[-1] in _EVAL_RUNS or run.lower() in _EVAL_RUNS:
        tag = f"val_{tag}"
    data.notes.append(f"{path.name}: TensorBoard CSV of one tag; its values read as {tag!r}")
    return ["Step", "wall_time", tag], {
        "Step": cols[names[1]],
        "wall_time": cols[names[0]],
        tag: cols[names[2]],
    }


def _wandb(
    names: list[str], cols: dict[str, Column], data: RunData
) -> tuple[list[str], dict[str, Column]]:
    runs: list[str] = []
    out_names: list[str] = []
    out: dict[str, Column] = {}
    for n in names:
        m = _WANDB.match(n)
        if m is None:
            out_names.append(n)
            out[n] = cols[n]
            continue
        if m.group("run") not in runs:
            runs.append(m.group("run"))
        if m.group("band") or m.group("run") != runs[0]:
            data.roles[n] = "skip"
            continue
        metric = m.group("metric")
        out_names.append(metric)
        out[metric] = cols[n]
        data.roles[n] = metric
    if len(runs) > 1:
        data.notes.append(
            f"W&B export holds {len(runs)} runs ({', '.join(runs[:5])}); read the first, "
            f"{runs[0]!r} (export one run per file to read the others)"
        )
    return out_names, out


def _ultralytics(names: list[str], cols: dict[str, Column], data: RunData) -> dict[str, str]:
    """Adds the summed losses, renames metrics/* and the LR; returns {new name: file's name}."""
    renamed: dict[str, str] = {}

    def total(prefix: str) -> Column | None:
        parts = [n for n in names if n.startswith(prefix) and n.endswith("_loss")]
        if not parts:
            return None
        with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: data, as read
            vals = np.sum([cols[p][0] for p in parts], axis=0)
        mask = None
        for p in parts:
            m = cols[p][1]
            if m is not None:
                mask = m if mask is None else mask | m
        data.notes.append(f"ultralytics: {prefix[:-1]} loss = {' + '.join(parts)}")
        return vals, mask

    for prefix, name in (("train/", "loss"), ("val/", "val_loss")):
        got = total(prefix)
        if got is not None and name not in cols:
            names.append(name)
            cols[name] = got
    for n in list(names):
        if n.startswith("metrics/"):
            new = f"val_{n[len('metrics/') :]}"
            cols[new] = cols.pop(n)
            names[names.index(n)] = new
            renamed[new] = n
    for first in ("lr/pg0", "x/lr0"):  # ultralytics 8 / YOLOv5: the first param group
        if first in cols and "lr" not in cols:
            cols["lr"] = cols.pop(first)
            names[names.index(first)] = "lr"
            renamed["lr"] = first
    return renamed
