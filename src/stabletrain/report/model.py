"""The Report: what ``diagnose`` and ``lint`` return, and what every renderer prints.

A Report holds the findings (already ordered cause → effect by the doctor), the merged config
facts (so fixes can show the user's own keys and current values), the records that were read
(for plots and the summary), and the reader's notes (damage, truncation, ambiguities).

``to_json()`` is the machine format::

    {"read": {"file", "format", "dialect", "train_records", "eval_records", "first_step",
              "last_step", "roles", "lines_total", "lines_understood", "understood", "config"},
     "change_set": {"cause", "changes": {key: value}, "reasons": {key: "finding-id: why"},
                    "alternatives": [{"description", "changes", "code"}], "dropped": [str],
                    "base_lr", "base_lr_source"},
     "findings": [{"id", "severity", "title", "steps", "epochs", "evidence", "explanation",
                   "fix": [{"description", "changes", "code"}], "source", "related", "watch"}],
     "guard_timeline": [{"step", "action", "reason"}],
     "summary": {"kind", "source", "format", "config", "records", "first_step", "last_step",
                 "epochs", "loss": {...}, "counts": {...}, "worst_severity", "notes"}}

Limits: the summary's loss statistics skip non-finite values (they are counted separately).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from stabletrain.records import SEVERITY_ORDER, ConfigFacts, Finding, Severity, StepRecord
from stabletrain.report.advice import watch_for
from stabletrain.report.changeset import ChangeSet, resolve

ReportKind = Literal["doctor", "lint"]


@dataclass(slots=True)
class Report:
    """Findings about one run (doctor) or one set of config files (lint)."""

    findings: list[Finding] = field(default_factory=list)
    facts: ConfigFacts = field(default_factory=ConfigFacts)
    source: str | None = None
    format: str | None = None
    config: str | None = None
    records: Sequence[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: ReportKind = "doctor"
    #: what the reader understood (``RunData``): the dialect within the format, {the log's own
    #: metric name: the role it was given}, and how many lines/rows it understood of how many
    dialect: str | None = None
    roles: dict[str, str] = field(default_factory=dict)
    lines_total: int | None = None
    lines_understood: int | None = None
    #: the guard's actions from the run's events.jsonl, ``[{"step", "action", "reason"}]``
    #: (``report.timeline``; empty for a run without one)
    guard_timeline: list[dict[str, Any]] = field(default_factory=list)

    @property
    def worst_severity(self) -> Severity | None:
        """The most severe finding's severity; None for a report with no findings."""
        if not self.findings:
            return None
        worst = max(self.findings, key=lambda f: SEVERITY_ORDER[f.severity])
        return worst.severity

    @property
    def problems(self) -> list[Finding]:
        """Findings at warning or above (a clean run has none)."""
        return [f for f in self.findings if SEVERITY_ORDER[f.severity] >= 1]

    def fails(self, threshold: Severity | None) -> bool:
        """True when some finding is at or above ``threshold`` (the CLI's ``--fail-on``)."""
        if threshold is None:
            return False
        return any(SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[threshold] for f in self.findings)

    def counts(self) -> dict[str, int]:
        out = {"error": 0, "warning": 0, "info": 0}
        for f in self.findings:
            out[f.severity] += 1
        return out

    def summary(self) -> dict[str, Any]:
        """Run-level numbers for the report header and the JSON ``summary``."""
        numbers = _numbers(self.records)
        loss = numbers.pop("loss")
        out: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "format": self.format,
            "config": self.config,
            **numbers,
            "counts": self.counts(),
            "worst_severity": self.worst_severity,
            "notes": list(self.notes),
        }
        if loss is not None:
            out["loss"] = loss
        return out

    def read(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """What was read, for the top of every report: file, format and dialect, train and eval
        records, each metric's role, the share of lines understood (None when the reader did not
        count them) and the config used ("none" without one). ``summary`` saves recomputing it."""
        s = summary if summary is not None else self.summary()
        total, understood = self.lines_total, self.lines_understood
        share = None
        if total and understood is not None:
            share = round(understood / total, 4)
        return {
            "file": self.source,
            "format": self.format,
            "dialect": self.dialect,
            "train_records": s["records"],
            "eval_records": s["evals"],
            "first_step": s["first_step"],
            "last_step": s["last_step"],
            "roles": dict(self.roles),
            "lines_total": total,
            "lines_understood": understood,
            "understood": share,
            "config": self.config or self._own_settings(),
        }

    def _own_settings(self) -> str:
        """Without a config given: "none", and which files of the run the settings came from."""
        files = sorted({f.file for f in self.facts.facts.values() if f.file})
        if not files:
            return "none"
        return f"none given (the run's own settings read from {', '.join(files)})"

    @property
    def change_set(self) -> ChangeSet:
        """The one set of config changes to apply: the findings' fixes resolved root cause first,
        one value per key, in the right direction (``report.changeset``)."""
        return resolve(self.findings, self.facts, self.records)

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (strict JSON: non-finite floats become strings)."""
        summary = self.summary()
        return {
            "read": _jsonable(self.read(summary)),
            "change_set": _jsonable(self.change_set.to_json()),
            "findings": [finding_json(f) for f in self.findings],
            "guard_timeline": _jsonable(self.guard_timeline),
            "summary": _jsonable(summary),
        }


def _numbers(records: Sequence[StepRecord]) -> dict[str, Any]:
    """records, evals, first/last train step, epochs, loss (first, last, min, nonfinite) — from
    the columns when the records are a table or a Batch (a million records read no objects)."""
    from stabletrain.detectors.columns import Batch, TableRecords, Unsupported

    if isinstance(records, (Batch, TableRecords)):
        try:
            return _column_numbers(Batch(records))
        except Unsupported:
            pass
    train = [r for r in records if r.kind == "train"]
    evals = [r for r in records if r.kind == "eval" or r.eval_loss is not None]
    losses = [r.loss for r in train if r.loss is not None]
    finite = [x for x in losses if math.isfinite(x)]
    # an epoch that is not a finite number ("epoch": Infinity in a log) places nothing
    epochs = [r.epoch for r in records if r.epoch is not None and math.isfinite(r.epoch)]
    return {
        "records": len(train),
        "evals": len(evals),
        "first_step": train[0].step if train else None,
        "last_step": train[-1].step if train else None,
        "epochs": (max(epochs) if epochs else None),
        "loss": {
            "first": _num(losses[0]),
            "last": _num(losses[-1]),
            "min": min(finite) if finite else None,
            "nonfinite": len(losses) - len(finite),
        }
        if losses
        else None,
    }


def _column_numbers(b: Any) -> dict[str, Any]:
    """``_numbers`` on a Batch's columns (the same values, taken from the stored objects), with
    masks rather than index arrays (a 10M-row log: +380 MB of temporaries with indices)."""
    import numpy as np

    train = b.train
    el_none = b.none("eval_loss")
    n_train = int(np.count_nonzero(train))
    n_evals = (
        len(train)
        - n_train
        + (n_train if el_none is None else int(np.count_nonzero(train & ~el_none)))
    )
    epoch = b.floats("epoch")
    has_epoch = np.isfinite(epoch)
    steps = b.objects("step")
    ends = _ends(train)
    out: dict[str, Any] = {
        "records": n_train,
        "evals": n_evals,
        "first_step": steps[ends[0]] if ends else None,
        "last_step": steps[ends[1]] if ends else None,
        # the first of the largest finite epochs, as argmax over them gives
        "epochs": b.objects("epoch")[_argbest(np.argmax, epoch, has_epoch, -np.inf)]
        if has_epoch.any()
        else None,
        "loss": None,
    }
    loss_none = b.none("loss")
    logged = train if loss_none is None else train & ~loss_none
    ends = _ends(logged)
    if ends:
        loss, objs = b.floats("loss"), b.objects("loss")
        fin = logged & np.isfinite(loss)
        out["loss"] = {
            "first": _num(objs[ends[0]]),
            "last": _num(objs[ends[1]]),
            "min": objs[_argbest(np.argmin, loss, fin, np.inf)] if fin.any() else None,
            "nonfinite": int(np.count_nonzero(logged)) - int(np.count_nonzero(fin)),
        }
    return out


def _argbest(arg: Any, values: Any, mask: Any, worst: float) -> int:
    """``arg`` (argmin/argmax: the first best) of ``values`` where ``mask``, others ``worst``.
    Mask everywhere: the first index equal to the best value (numpy's argmax copies a read-only
    column first: 80 MB at 10M rows)."""
    import numpy as np

    if not mask.all():
        return int(arg(np.where(mask, values, worst)))
    best = values.max() if arg is np.argmax else values.min()
    return int(np.argmax(values == best))


def _ends(mask: Any) -> tuple[int, int] | None:
    """(first, last) index where ``mask`` is set; None when nowhere."""
    import numpy as np

    if not mask.any():
        return None
    return int(np.argmax(mask)), len(mask) - 1 - int(np.argmax(mask[::-1]))


def finding_json(f: Finding) -> dict[str, Any]:
    """One finding in the JSON schema (``fix`` is the list of Fixes; ``watch`` what to check after)."""
    return {
        "id": f.id,
        "severity": f.severity,
        "title": f.title,
        "steps": list(f.steps),
        "epochs": list(f.epochs),
        "evidence": {k: _jsonable(v) for k, v in f.evidence.items()},
        "explanation": f.explanation,
        "fix": [
            {"description": x.description, "changes": _jsonable(x.changes), "code": x.code}
            for x in f.fixes
        ],
        "source": f.source,
        "related": list(f.related),
        "watch": watch_for(f.id),
    }


def _num(x: float) -> float | str:
    if math.isfinite(x):
        return x
    return "nan" if math.isnan(x) else ("inf" if x > 0 else "-inf")


def _jsonable(v: Any) -> Any:
    if isinstance(v, float):
        return _num(v)
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if v is None or isinstance(v, (bool, int, str)):
        return v
    return str(v)
