"""Per-epoch series printed whole: a training history dumped as lists, not as one line per step.

Two shapes are common in issues and notebooks:

- Keras' ``print(history.history)``: ``{'loss': [0.69, 0.52, ...], 'accuracy': [...],
  'val_loss': [...], 'val_accuracy': [...]}`` (one line or wrapped over several);
- MATLAB-style struct displays: ``objective: [1.5653 1.1478 ...]`` rows, wrapped, under a header
  line that names the split (``info.train =``, ``info.val =``).

Each list of three or more numbers is a series; element ``i`` of every series is epoch ``i + 1``.
A series is an eval series when its name says so (``val_loss``) or when the nearest header line
above it does (``info.val =``, ``Validation:``). Names get their roles from the shared table
(:mod:`~stabletrain.logs.readers.fields`), so a name it does not know (MatConvNet's
``objective``) stays a metric and the caller asks for ``--map`` instead of judging a run whose
loss it cannot name.

The text reader calls this only when its line-by-line pass found no record (a history dump has
no ``name: number`` item a step could come from).

Limits: series of different lengths are aligned from their start; a list element that is no
number (``[1x20 double]``) makes the list no series; at most ``MAX_VALUES`` numbers are read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup, records_from_row, to_float
from stabletrain.logs.readers.lines import normalise, strip_ansi

__all__ = ["read_series"]

MAX_VALUES = 1_000_000
_SERIES = re.compile(
    r"""(?P<name>['"]?[A-Za-z_][\w./@-]{0,63}['"]?)\s*[:=]\s*\[(?P<body>[^\[\]]{1,2000000})\]"""
)
_HEADER = re.compile(r"^\s*(?P<head>[A-Za-z_][\w. ]{0,63}?)\s*[:=]\s*$", re.M)
_EVAL_WORDS = re.compile(
    r"(?<![A-Za-z])(?:val|valid|validation|eval|evaluation|test|dev)(?![A-Za-z])"
)
_EVAL_NAME = re.compile(r"^(?:val|valid|validation|eval|test)[_/ ]", re.I)
_SEP = re.compile(r"[\s,;]+")


def _numbers(body: str) -> list[float] | None:
    """The list's values, or None when one of them is no number."""
    out: list[float] = []
    for tok in _SEP.split(body.strip()):
        if not tok:
            continue
        x = to_float(tok)
        if x is None:
            return None
        out.append(x)
    return out


def read_series(text: str, path: Path, mapping: dict[str, str] | None = None) -> RunData | None:
    """The run in a history dump, or None when ``text`` holds no series of ≥ 3 numbers."""
    # each line as the line reader sees it: no ANSI colours, ``> `` quotes, rank or time prefixes
    text = "\n".join(normalise(line)[0] for line in strip_ansi(text).split("\n"))
    headers = [
        (m.start(), _EVAL_WORDS.search(m["head"].lower()) is not None)
        for m in _HEADER.finditer(text)
    ]
    series: dict[str, list[float]] = {}
    total = 0
    spanned = 0  # lines the series were read from
    for m in _SERIES.finditer(text):
        vals = _numbers(m["body"])
        if vals is None or len(vals) < 3:
            continue
        total += len(vals)
        if total > MAX_VALUES:
            break
        spanned += m[0].count("\n") + 1
        name = m["name"].strip("'\"")
        under_eval = False
        for start, is_eval in headers:
            if start > m.start():
                break
            under_eval = is_eval
        if under_eval and not _EVAL_NAME.match(name):
            name = f"val_{name}"
        series.pop(name, None)  # the same name again (a second dump): the later one wins
        series[name] = vals
    if not series:
        return None
    data = RunData(path=path, format="text", dialect="series-dump")
    lookup = build_lookup(list(series), mapping)
    n = max(len(v) for v in series.values())
    for i in range(n):
        row: dict[str, Any] = {k: v[i] for k, v in series.items() if i < len(v)}
        row["epoch"] = i + 1
        tr, ev = records_from_row(row, i + 1, lookup)
        data.raw += [r for r in (tr, ev) if r is not None]
    for name in series:
        kind, field, _ = lookup.get(name) or ("train", None, name)
        data.roles[name] = field or ("eval metric" if kind == "eval" else "metric")
    lines = text.count("\n") + 1
    data.lines_total, data.lines_understood = lines, min(lines, spanned)
    data.notes.append(
        f"a training history printed as {len(series)} per-epoch series ({n} epochs): element i "
        "of each list is epoch i + 1"
    )
    return data
