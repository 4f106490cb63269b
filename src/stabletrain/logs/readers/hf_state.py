"""Read HF Trainer's ``trainer_state.json``: ``log_history`` rows plus the facts stored beside them.

Train rows carry loss/grad_norm/learning_rate/epoch/step (older transformers: no grad_norm);
rows with ``eval_*`` keys become eval records; the final summary row (``train_loss``,
``train_runtime``...) is ignored. TRL rows with many extra keys keep them in ``metrics``.
Trap (reported by the detectors, not here): HF ``loss`` is a mean over the logging window, so a
single-step spike is smoothed, and ``logging_nan_inf_filter`` hides NaN losses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from stabletrain import safe_io
from stabletrain.errors import LogReadError
from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup, records_from_row

#: trainer_state.json top-level key -> fact name
_FACTS = {
    "logging_steps": "logging_steps",
    "train_batch_size": "batch_size",
    "max_steps": "max_steps",
    "num_train_epochs": "epochs",
}
_SUMMARY_KEYS = frozenset({"train_runtime", "train_loss", "total_flos"})


def is_trainer_state(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("log_history"), list)


def read(path: Path, mapping: dict[str, str] | None = None, obj: Any = None) -> RunData:
    if obj is None:
        obj = safe_io.load_json(path)
    if not is_trainer_state(obj):
        raise LogReadError(f"{path}: no 'log_history' list; not an HF trainer_state.json")
    data = RunData(path=path, format="hf-trainer-state")
    data.facts.source = str(path)
    data.facts.format = "hf-trainer-state"
    for key, name in _FACTS.items():
        v = obj.get(key)
        if v is not None and not (key == "max_steps" and v <= 0):
            data.facts.set(name, v, key=key, file=str(path))
    rows = obj["log_history"]
    lookup = build_lookup(sorted({k for r in rows if isinstance(r, dict) for k in r}), mapping)
    no_step = 0
    for row in rows:
        if not isinstance(row, dict) or _SUMMARY_KEYS & row.keys():
            continue
        step = row.get("step")
        if not isinstance(step, int):
            no_step += 1
            continue
        tr, ev = records_from_row(row, step, lookup)
        if tr is not None:
            data.raw.append(tr)
        if ev is not None:
            data.raw.append(ev)
    if no_step:
        data.notes.append(f"{path.name}: {no_step} log_history row(s) without a 'step' skipped")
    data.dialect, data.roles = "hf-trainer", table.roles(lookup)
    data.lines_total = len(rows)  # log_history rows
    data.lines_understood = len(rows) - no_step
    if data.raw and all(r.grad_norm is None for r in data.raw if r.kind == "train"):
        data.notes.append("no grad_norm in log_history (transformers < 4.38 did not log it)")
    return data
