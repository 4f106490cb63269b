"""RunData: what every log reader returns, and the cleaning rules shared by all of them.

Cleaning (``clean_records``): a resumed or rewound run logs a step again; the latest record for a
step wins and everything the old attempt logged past that step is dropped (a restart from a
checkpoint at step *s* discards the old steps >= *s*). Exact repeats (several ranks logging without
a rank guard) collapse the same way. ``raw`` keeps everything as read, for duplicate-logging
detection.
"""

from __future__ import annotations

from dataclasses import dataclass, field
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


def _resolve_rewinds(records: list[StepRecord]) -> tuple[list[StepRecord], int]:
    """Keep the latest record per step; a step logged again drops the old records from it on."""
    kept: list[StepRecord] = []
    dropped = 0
    last = None
    for r in records:
        s = r.step
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
