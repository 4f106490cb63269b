"""The Report: what ``diagnose`` and ``lint`` return, and what every renderer prints.

A Report holds the findings (already ordered cause → effect by the doctor), the merged config
facts (so fixes can show the user's own keys and current values), the records that were read
(for plots and the summary), and the reader's notes (damage, truncation, ambiguities).

``to_json()`` is the machine format::

    {"findings": [{"id", "severity", "title", "steps", "epochs", "evidence", "explanation",
                   "fix": [{"description", "changes", "code"}], "source", "related", "watch"}],
     "summary": {"kind", "source", "format", "config", "records", "first_step", "last_step",
                 "epochs", "loss": {...}, "counts": {...}, "worst_severity", "notes"}}

Limits: the summary's loss statistics skip non-finite values (they are counted separately).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from stabletrain.records import SEVERITY_ORDER, ConfigFacts, Finding, Severity, StepRecord
from stabletrain.report.advice import watch_for

ReportKind = Literal["doctor", "lint"]


@dataclass(slots=True)
class Report:
    """Findings about one run (doctor) or one set of config files (lint)."""

    findings: list[Finding] = field(default_factory=list)
    facts: ConfigFacts = field(default_factory=ConfigFacts)
    source: str | None = None
    format: str | None = None
    config: str | None = None
    records: list[StepRecord] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    kind: ReportKind = "doctor"

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
        train = [r for r in self.records if r.kind == "train"]
        evals = [r for r in self.records if r.kind == "eval" or r.eval_loss is not None]
        losses = [r.loss for r in train if r.loss is not None]
        finite = [x for x in losses if math.isfinite(x)]
        # an epoch that is not a finite number ("epoch": Infinity in a log) places nothing
        epochs = [r.epoch for r in self.records if r.epoch is not None and math.isfinite(r.epoch)]
        out: dict[str, Any] = {
            "kind": self.kind,
            "source": self.source,
            "format": self.format,
            "config": self.config,
            "records": len(train),
            "evals": len(evals),
            "first_step": train[0].step if train else None,
            "last_step": train[-1].step if train else None,
            "epochs": (max(epochs) if epochs else None),
            "counts": self.counts(),
            "worst_severity": self.worst_severity,
            "notes": list(self.notes),
        }
        if losses:
            out["loss"] = {
                "first": _num(losses[0]),
                "last": _num(losses[-1]),
                "min": min(finite) if finite else None,
                "nonfinite": len(losses) - len(finite),
            }
        return out

    def to_json(self) -> dict[str, Any]:
        """The machine-readable report (strict JSON: non-finite floats become strings)."""
        return {
            "findings": [finding_json(f) for f in self.findings],
            "summary": _jsonable(self.summary()),
        }


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
