"""Read stabletrain's own run directory (or a bare steps.jsonl): the fast path of the doctor.

A run dir holds meta.json, config.yaml, steps.jsonl, evals.jsonl and events.jsonl (see
``stabletrain.logs.runlog``). Lines are parsed in one ``json.loads`` call over the whole file when
it is intact (a million steps in about a second), and line by line up to the damage when it is
not: a run killed mid-write leaves a half line, which becomes a note, never an error.
"""

from __future__ import annotations

import json
import logging
from dataclasses import fields
from pathlib import Path
from typing import Any

from stabletrain.errors import ConfigError, LogReadError
from stabletrain.logs.readers.base import RunData
from stabletrain.records import StepRecord

log = logging.getLogger(__name__)

_KNOWN = frozenset(f.name for f in fields(StepRecord))
_FLOAT_FIELDS: tuple[str, ...] = ("epoch", "loss", "grad_norm", "clip_coef", "lr", "loss_scale")
_FLOAT_FIELDS += ("accuracy", "eval_loss", "eval_accuracy", "wall_time", "step_time")


def read_json_lines(path: Path, notes: list[str]) -> list[dict[str, Any]]:
    """Every JSON object line of ``path``; damaged lines are skipped with a note naming them."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise LogReadError(f"{path}: cannot read ({e.strerror or e})") from e
    body = text.strip()
    if not body:
        return []
    try:
        # one C-level parse of the whole file: fast when every line is intact
        # blank lines would make ",," (invalid): they send the file down the line-by-line path
        rows = json.loads("[" + body.replace("\n", ",") + "]")
        if all(isinstance(r, dict) for r in rows):
            return rows
    except ValueError:
        pass
    rows = []
    bad: list[int] = []
    lines = body.split("\n")
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
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
    if strings or odd:
        _fix_strings(out)
    return out


def _fix_strings(records: list[StepRecord]) -> None:
    """Non-finite floats are stored as "nan"/"inf" strings; turn them back into floats."""
    for r in records:
        if type(r.step) is not int:
            r.step = int(r.step)
        for name in _FLOAT_FIELDS:
            v = getattr(r, name)
            if isinstance(v, str):
                try:
                    setattr(r, name, float(v))
                except ValueError:
                    setattr(r, name, None)
        if r.metrics and any(isinstance(v, str) for v in r.metrics.values()):
            r.metrics = {k: float(v) for k, v in r.metrics.items() if _floatable(v)}


def _has_strings(p: Path) -> bool:
    """Whether a run-log file may hold values stored as strings ("nan", "inf", "5")."""
    tail = b""
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            block = tail + chunk  # overlap so a token split across chunks is still seen
            if b'"nan"' in block or b'inf"' in block or b'"step": "' in block:
                return True
            tail = chunk[-16:]
    return False


def _floatable(v: Any) -> bool:
    try:
        float(v)
    except (TypeError, ValueError):
        return False
    return True


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    """Read a stabletrain run dir, or one of its JSONL files on its own."""
    run_dir = path if path.is_dir() else path.parent
    data = RunData(path=path, format="stabletrain")
    files = ["steps.jsonl", "evals.jsonl"] if path.is_dir() else [path.name]
    for name in files:
        p = run_dir / name
        if not p.exists():
            if name == "steps.jsonl":
                data.notes.append(f"{p}: missing; the run logged no steps")
            continue
        rows = read_json_lines(p, data.notes)
        data.raw.extend(records_from_rows(rows, p, data.notes, strings=_has_strings(p)))
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
    return data
