"""Read generic JSON-lines metric logs (one object per line), ms-swift's included.

Each line is a row of metrics mapped with ``stabletrain.logs.readers.fields``; the step comes from
``step``/``global_step``/``iteration`` or ms-swift's ``"global_step/max_steps": "8270/11043"``,
else the line number (said in the notes). Damaged lines are skipped with a note.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup, records_from_row, step_of
from stabletrain.logs.readers.runlog import read_json_lines

_SWIFT_STEP = "global_step/max_steps"


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    data = RunData(path=path, format="jsonl")
    data.facts.format = "generic-log"  # no framework known: fixes use stabletrain's keys
    rows = read_json_lines(path, data.notes)
    if any(_SWIFT_STEP in r for r in rows[:5]):
        data.format = "ms-swift-jsonl"
        data.facts.format = "ms-swift"  # its arguments: HF TrainingArguments' plus torch_dtype
    lookup = build_lookup(sorted({k for r in rows for k in r}), mapping)
    lookup[_SWIFT_STEP] = ("skip", None, _SWIFT_STEP)
    numbered = 0
    for i, row in enumerate(rows):
        step = _swift_step(row, data) if _SWIFT_STEP in row else step_of(row, lookup)
        if step is None:
            step = i
            numbered += 1
        tr, ev = records_from_row(row, step, lookup)
        if tr is not None:
            data.raw.append(tr)
        if ev is not None:
            data.raw.append(ev)
    if numbered:
        data.notes.append(f"{path.name}: {numbered} line(s) without a step; steps are line numbers")
    return data


def _swift_step(row: dict[str, Any], data: RunData) -> int | None:
    cur, _, total = str(row[_SWIFT_STEP]).partition("/")
    try:
        if total and "max_steps" not in data.facts:
            data.facts.set("max_steps", int(total), key=_SWIFT_STEP, file=str(data.path))
        return int(cur)
    except ValueError:
        return None
