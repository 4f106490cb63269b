"""Read CSV metric logs: Lightning ``CSVLogger`` metrics.csv, Keras ``CSVLogger``, generic CSV.

Lightning writes one row per log call with sparse columns (``step``, ``epoch``, ``train_loss``,
``val_loss``, ``lr-AdamW``...); Keras one row per epoch (``epoch,loss,accuracy,val_loss,...``),
where the epoch is the step. A generic CSV needs a step-like column or uses the row number (said
in the notes); ``mapping={"loss": "my_loss_col"}`` names columns the table does not know.
A malformed row (wrong number of cells, a half-written last line) is skipped with a note.
"""

from __future__ import annotations

import csv
from pathlib import Path

from stabletrain.errors import LogReadError
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup, records_from_row, step_of, to_float


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as f:
            rows = list(csv.reader(f))
    except (OSError, csv.Error) as e:
        raise LogReadError(f"{path}: not a readable CSV file ({e})") from e
    if not rows or not rows[0]:
        raise LogReadError(f"{path}: empty CSV file (no header row)")
    header = [h.strip() for h in rows[0]]
    lower = {h.lower() for h in header}
    has_step = bool(lower & {"step", "global_step", "iteration", "steps"}) or bool(
        mapping and "step" in mapping
    )
    if has_step:
        fmt = "lightning-csv" if "epoch" in lower else "csv"
    elif "epoch" in lower:
        fmt = "keras-csv"
    else:
        fmt = "csv"
    data = RunData(path=path, format=fmt)
    # whose keys fixes use: Lightning's Trainer arguments (gradient_clip_val...), else generic
    data.facts.format = "lightning" if fmt == "lightning-csv" else "generic-log"
    lookup = build_lookup(header, mapping)
    if fmt == "keras-csv":
        # the epoch is the step: keep it out of the metrics and use it as the record's step
        lookup[next(h for h in header if h.lower() == "epoch")] = ("step", None, "epoch")
    bad: list[int] = []
    numbered = 0
    for i, cells in enumerate(rows[1:], 2):
        if not cells:
            continue
        if len(cells) != len(header):
            bad.append(i)
            continue
        row = dict(zip(header, cells, strict=True))
        step = step_of(row, lookup)
        if step is None:
            if has_step and all(to_float(c) is None for c in cells):
                bad.append(i)
                continue
            step = len(data.raw)
            numbered += 1
        tr, ev = records_from_row(row, step, lookup)
        if fmt == "keras-csv":
            for r in (tr, ev):
                if r is not None:
                    r.epoch = float(step)
        if tr is not None:
            data.raw.append(tr)
        if ev is not None:
            data.raw.append(ev)
    if bad:
        shown = ", ".join(map(str, bad[:5])) + (" ..." if len(bad) > 5 else "")
        data.notes.append(f"{path.name}: {len(bad)} malformed row(s) skipped: line {shown}")
    if numbered and fmt == "csv":
        data.notes.append(f"{path.name}: no step column; steps are row numbers")
    return data
