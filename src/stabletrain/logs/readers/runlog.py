"""Read stabletrain's own run directory (or a bare steps.jsonl): the fast path of the doctor.

A run dir holds meta.json, config.yaml, steps.jsonl, evals.jsonl and events.jsonl (see
``stabletrain.logs.runlog``). Lines are parsed in one ``json.loads`` call over the whole file when
it is intact (a million steps in about a second), and line by line up to the damage when it is
not: a run killed mid-write leaves a half line, which becomes a note, never an error. When every
line holds only StepRecord fields (what the writer produces), records are built column-wise with
positional arguments, a third faster than one ``StepRecord(**row)`` per line, and the columns are
kept for the doctor (``read_columns``).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import fields
from itertools import repeat
from operator import itemgetter
from pathlib import Path
from typing import Any

from stabletrain import safe_io
from stabletrain.errors import ConfigError, LogReadError
from stabletrain.logs.readers.base import RunData
from stabletrain.records import StepRecord

log = logging.getLogger(__name__)

_ORDER = tuple(f.name for f in fields(StepRecord))
_KNOWN = frozenset(_ORDER)
_FLOAT_FIELDS: tuple[str, ...] = ("epoch", "loss", "grad_norm", "clip_coef", "lr", "loss_scale")
_FLOAT_FIELDS += ("accuracy", "eval_loss", "eval_accuracy", "wall_time", "step_time")


def read_json_lines(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Every JSON object line of ``path``; damaged lines are skipped with a note naming them."""
    return _rows(_read_text(path), path, notes)


def _read_text(path: Path) -> str:
    return safe_io.read_text(path, errors="replace")


def _rows(text: str, path: Path, notes: list[str]) -> list[dict[str, Any]]:
    body = text.strip()
    if not body:
        return []
    try:
        # one C-level parse of the whole file: fast when every line is intact (bounded depth,
        # a 400-digit integer read as inf); blank lines would make ",," (invalid), and a line
        # nested too deeply fails the whole: both send the file down the line-by-line path
        rows = safe_io.parse_json("[" + body.replace("\n", ",") + "]", source=str(path))
        if set(map(type, rows)) <= {dict}:
            return rows  # type: ignore[no-any-return]
    except (ValueError, LogReadError):
        pass
    rows = []
    bad: list[int] = []
    lines = body.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line, parse_int=safe_io.number)
        except (ValueError, RecursionError):  # damaged, or nested past the parser's stack
            bad.append(i)
            continue
        if isinstance(obj, dict):
            rows.append(obj)
        else:
            bad.append(i)
    if bad:
        last = " (the last line: a run killed mid-write)" if bad == [len(lines)] else ""
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        notes.append(f"{path.name}: {len(bad)} unreadable line(s) skipped: line {shown}{last}")
    return rows


def records_from_rows(
    rows: list[dict[str, Any]], path: Path, notes: list[str], *, strings: bool = True
) -> list[StepRecord]:
    """StepRecords from run-log rows; the common case builds them directly, the rest via from_json.

    ``strings=False`` says the file holds no quoted non-finite floats (checked on the raw text),
    which skips a second pass over every record.
    """
    return _records(rows, path, notes, strings)[0]


Columns = dict[str, list[Any]]


def _records(
    rows: list[dict[str, Any]], path: Path, notes: list[str], strings: bool
) -> tuple[list[StepRecord], Columns | None]:
    """``records_from_rows``, and the records' columns when they were built from columns."""
    built = _by_columns(rows)
    if built is not None:
        records, columns = built
        usable = _usable_steps(records, path, notes)
        if strings or usable is not records:
            _fix_strings(usable)
            return usable, None  # values changed since: the columns are stale
        return records, columns
    out: list[StepRecord] = []
    append = out.append
    odd = 0
    for d in rows:
        try:
            r = StepRecord(**d)
        except TypeError:
            try:
                r = StepRecord.from_json(d)
            except (KeyError, TypeError, ValueError):
                odd += 1
                continue
        append(r)
    if odd:
        notes.append(f"{path.name}: {odd} line(s) without a usable 'step' skipped")
    out = _usable_steps(out, path, notes)
    _fix_strings(out)
    return out, None


def _by_columns(rows: list[dict[str, Any]]) -> tuple[list[StepRecord], Columns] | None:
    """``[StepRecord(**row) for row in rows]`` built from columns with positional arguments, and
    those columns (every field but metrics), when every row has a ``step`` and only StepRecord
    fields (``metrics`` aside: those rows go through ``from_json``); else None. A field a row
    lacks is the field's default, as with ``**row``."""
    n = len(rows)
    if not rows:
        return [], {f: [] for f in _ORDER if f != "metrics"}
    keys = rows[0].keys()
    if set(map(len, rows)) == {len(keys)} and "step" in keys and keys <= _KNOWN:
        try:  # the same length and every key of the first row: the same keys
            cols = {k: list(map(itemgetter(k), rows)) for k in keys}
        except KeyError:
            cols = None
    else:
        cols = None
    if cols is None:  # lines with different fields (a skipped step has "skipped", "action")
        union = set().union(*rows)
        if not union <= _KNOWN or sum(map(dict.__contains__, rows, repeat("step"))) != n:
            return None
        cols = {k: list(map(dict.get, rows, repeat(k))) for k in union if k != "kind"}
        if "kind" in union:
            cols["kind"] = list(map(dict.get, rows, repeat("kind"), repeat("train")))
    if "metrics" in cols:
        return None
    last = max(_ORDER.index(k) for k in cols)
    args = [
        cols[f] if f in cols else repeat("train" if f == "kind" else None)
        for f in _ORDER[: last + 1]
    ]
    records = list(map(StepRecord, *args))
    for f in _ORDER:
        if f not in cols and f != "metrics":
            cols[f] = ["train"] * n if f == "kind" else [None] * n
    return records, cols


def _integral_step(step: Any) -> int | None:
    """A record's step as an int ("12", 12.0 → 12); None for no usable step (inf, NaN, 1.5, "x")."""
    if type(step) is int:
        return step
    try:
        value = float(step)
    except (TypeError, ValueError):
        return None
    return int(value) if math.isfinite(value) and value == int(value) else None


def _usable_steps(records: list[StepRecord], path: Path, notes: list[str]) -> list[StepRecord]:
    """``records`` whose step is an integer, each as an int; the rest are named in a note."""
    if all(type(r.step) is int for r in records):
        return records
    kept = []
    for r in records:
        step = _integral_step(r.step)
        if step is not None:
            r.step = step
            kept.append(r)
    if len(kept) < len(records):
        notes.append(
            f"{path.name}: {len(records) - len(kept)} line(s) whose step is not an integer "
            "(NaN, inf, a fraction) skipped"
        )
    return kept


def _fix_strings(records: list[StepRecord]) -> None:
    """Non-finite floats are stored as "nan"/"inf" strings; turn them back into floats."""
    for r in records:
        for name in _FLOAT_FIELDS:
            v = getattr(r, name)
            if isinstance(v, str):
                try:
                    setattr(r, name, float(v))
                except ValueError:
                    setattr(r, name, None)
        if r.metrics and any(isinstance(v, str) for v in r.metrics.values()):
            r.metrics = {k: float(v) for k, v in r.metrics.items() if _floatable(v)}


def _has_strings(text: str) -> bool:
    """Whether run-log text may hold values stored as strings ("nan", "inf", "5")."""
    return '"nan"' in text or 'inf"' in text or '"step": "' in text


def _floatable(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    """Read a stabletrain run dir, or one of its JSONL files on its own."""
    return read_columns(path, mapping)[0]


def read_columns(
    path: Path, mapping: dict[str, str] | None = None
) -> tuple[RunData, Columns | None]:
    """``read``, and the columns of ``RunData.raw`` (``{field: value per record}``, every field
    but metrics) when every file's records were built from columns (uniform lines, no string
    values to fix), so a caller can use them instead of reading every record again."""
    run_dir = path if path.is_dir() else path.parent
    data = RunData(path=path, format="stabletrain")
    files = ["steps.jsonl", "evals.jsonl"] if path.is_dir() else [path.name]
    columns: Columns | None = {f: [] for f in _ORDER if f != "metrics"}
    for name in files:
        p = run_dir / name
        if not p.exists():
            if name == "steps.jsonl":
                data.notes.append(f"{p}: missing; the run logged no steps")
            continue
        text = _read_text(p)
        rows = _rows(text, p, data.notes)
        records, cols = _records(rows, p, data.notes, _has_strings(text))
        data.raw.extend(records)
        data.lines_total = (
            (data.lines_total or 0)
            + text.count("\n")
            + (1 if text and not text.endswith("\n") else 0)
        )
        data.lines_understood = (data.lines_understood or 0) + len(records)
        if columns is not None and cols is not None:
            for f, values in cols.items():
                if values:  # (an empty evals.jsonl adds nothing)
                    columns[f] = columns[f] + values if columns[f] else values
        else:
            columns = None
    data.dialect = "run-log"
    if columns is not None:  # its own field names: each is its role
        data.roles = {
            f: f
            for f, v in columns.items()
            if f not in ("step", "kind") and any(x is not None for x in v)
        }
    events = run_dir / "events.jsonl"
    if path.is_dir() and events.exists():
        data.events = read_json_lines(events, data.notes)
    cfg = run_dir / "config.yaml"
    if path.is_dir() and cfg.exists():
        from stabletrain.configs.read import read_config

        try:
            data.facts = read_config(cfg)
        except ConfigError as e:
            data.notes.append(f"config.yaml not usable: {e}")
    if path.is_dir():
        _classes_from_meta(run_dir / "meta.json", data)
    return data, columns


def _classes_from_meta(meta: Path, data: RunData) -> None:
    """The class count (or an LM's vocabulary size) the trainer recorded in meta.json: the
    doctor's ln(C) scale, which config.yaml does not hold for every dataset."""
    if not meta.is_file():
        return
    try:
        doc = safe_io.load_json(meta, max_bytes=1 << 20)
    except LogReadError:
        return  # the reader judged meta.json already; no class count is no scale, not an error
    if not isinstance(doc, dict):
        return
    for name in ("num_classes", "vocab_size"):
        value = doc.get(name)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 2:
            data.facts.set(name, value, key=None, file=str(meta))
            break
    # what a bare Guard(run_dir=...) records of the loop it guarded (no config.yaml there):
    # the optimizer, its LR at the start, the clip it applied; config.yaml's values win
    for name in ("optimizer", "lr", "max_grad_norm"):
        value = doc.get(name)
        if name in data.facts or value is None:
            continue
        if name == "optimizer" and isinstance(value, str) and 0 < len(value) <= 64:
            data.facts.set(name, value, key=None, file=str(meta))
        elif (
            isinstance(value, (int, float))
            and not isinstance(value, bool)
            and math.isfinite(value)
            and value >= 0
        ):
            data.facts.set(name, float(value), key=None, file=str(meta))
