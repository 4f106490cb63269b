"""RunData: what every log reader returns, and the cleaning rules shared by all of them.

Cleaning (``clean_records``): a resumed or rewound run logs a step again; the latest record for a
step wins and everything the old attempt logged past that step is dropped (a restart from a
checkpoint at step *s* discards the old steps >= *s*). Exact repeats (several ranks logging without
a rank guard) collapse the same way. A line that only completes the record before it at the same
step (Lightning's ``on_epoch`` row at an epoch's last step) joins it instead (``parts_of_one``). ``raw`` keeps everything as read, for duplicate-logging
detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from stabletrain.records import ConfigFacts, StepRecord


@dataclass
class RunData:
    """One run as read from disk: cleaned ``records``, ``raw`` records, facts, notes, events."""

    path: Path
    format: str
    records: list[StepRecord] = field(default_factory=list)
    raw: list[StepRecord] = field(default_factory=list)
    facts: ConfigFacts = field(default_factory=ConfigFacts)
    notes: list[str] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    #: what was read, for the report's header (so a user sees at once if the log was misread):
    #: the dialect within the format (``"fairseq"``, ``"keras"``, ``"wandb-export"``...),
    #: {the log's own metric name: the StepRecord field or role it was given},
    #: and how many of the input's lines/rows the reader understood out of how many.
    dialect: str | None = None
    roles: dict[str, str] = field(default_factory=dict)
    lines_total: int | None = None
    lines_understood: int | None = None
    #: the readers the dispatcher tried, in order, when the first gave no records
    tried: list[str] = field(default_factory=list)
    #: which config file ``facts`` came from and why it is the run's own ("the run dir's own
    #: config.yaml: runs/x/config.yaml"); None when no config file beside the log was used
    config_from: str | None = None

    @property
    def train(self) -> list[StepRecord]:
        return [r for r in self.records if r.kind == "train"]

    @property
    def evals(self) -> list[StepRecord]:
        return [r for r in self.records if r.kind == "eval"]


def _same(a: Any, b: Any) -> bool:
    return bool(a == b) or (isinstance(a, float) and isinstance(b, float) and a != a and b != b)


def parts_of_one(a: StepRecord, b: StepRecord) -> bool:
    """Whether ``b`` completes ``a``: the same step and kind, no value the two hold differs, and
    one holds a value the other lacks. Lightning's CSVLogger writes an ``on_epoch`` metric on a
    row of its own at the epoch's last step, HF and W&B log separate calls at one step: one
    record in several lines, not a rewind. Identical lines (ranks logging without a guard) are
    repeats, not parts."""
    if a.step != b.step or a.kind != b.kind:
        return False
    differ = False
    for name in _VALUE_FIELDS:
        va, vb = getattr(a, name), getattr(b, name)
        if va is None or vb is None:
            differ = differ or (va is None) != (vb is None)
        elif not _same(va, vb):
            return False
    for k in a.metrics.keys() | b.metrics.keys():
        if k in a.metrics and k in b.metrics:
            if not _same(a.metrics[k], b.metrics[k]):
                return False
        else:
            differ = True
    return differ


def joined(a: StepRecord, b: StepRecord) -> StepRecord:
    """One record from two parts (:func:`parts_of_one`)."""
    fill = {n: getattr(a, n) for n in _VALUE_FIELDS if getattr(b, n) is None}
    return replace(b, **fill, metrics={**a.metrics, **b.metrics})


_VALUE_FIELDS = tuple(
    f.name for f in fields(StepRecord) if f.name not in ("step", "kind", "metrics")
)


def _resolve_rewinds(records: list[StepRecord]) -> tuple[list[StepRecord], int]:
    """Keep the latest record per step; a step logged again drops the old records from it on.
    A line that completes the record just before it at the same step joins it (parts_of_one)."""
    kept: list[StepRecord] = []
    dropped = 0
    last = None
    for r in records:
        s = r.step
        if kept and parts_of_one(kept[-1], r):
            kept[-1] = joined(kept[-1], r)
            continue
        if last is not None and s <= last:
            while kept and kept[-1].step >= s:
                kept.pop()
                dropped += 1
        kept.append(r)
        last = s
    return kept, dropped


def clean_records(raw: list[StepRecord], notes: list[str]) -> list[StepRecord]:
    """Resolve rewinds/duplicates per kind and merge train and eval records in step order."""
    train = [r for r in raw if r.kind == "train"]
    evals = [r for r in raw if r.kind != "train"]
    train_kept, n_train = _resolve_rewinds(train)
    eval_kept, n_eval = _resolve_rewinds(evals)
    if n_train:
        notes.append(
            f"{n_train} train record(s) replaced by later records of the same or earlier steps "
            "(resumed/rewound run or duplicate logging); the latest were kept"
        )
    if n_eval:
        notes.append(f"{n_eval} eval record(s) replaced by later records for the same steps")
    if not eval_kept:
        return train_kept
    if not train_kept:
        return eval_kept
    merged = train_kept + eval_kept
    # stable sort: train before eval at the same step, original order otherwise
    merged.sort(key=lambda r: (r.step, r.kind != "train"))
    return merged
