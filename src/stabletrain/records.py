"""The one vocabulary of stabletrain: StepRecord, ConfigFacts, Finding.

Everything flows through these (see DESIGN.md): the guard writes StepRecords while a run trains,
readers turn foreign logs into StepRecords, config readers produce ConfigFacts, and detectors and
lint rules speak Findings, which one renderer prints.

These are plain dataclasses of Python floats: no torch tensors, so detectors run identically on a
live run and on a replayed log.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal

Severity = Literal["info", "warning", "error"]
SEVERITY_ORDER: dict[str, int] = {"info": 0, "warning": 1, "error": 2}

RecordKind = Literal["train", "eval"]

#: Actions the guard (or a foreign trainer) took on a step. ``None`` means a plain update.
Action = Literal["skip_nonfinite_loss", "skip_nonfinite_grad", "skip_spike", "rollback", "abort"]

SCHEMA_VERSION = 1


def _finite_or_none(x: Any) -> float | None:
    if x is None:
        return None
    return float(x)


@dataclass(slots=True)
class StepRecord:
    """One training step, one eval, or one epoch summary. Every field but ``step`` may be missing.

    ``grad_norm`` is the global norm *before* clipping. ``clip_coef`` is the factor the gradients
    were multiplied by (1.0 = not clipped). ``loss`` may be NaN/inf: that is information.
    Eval records (``kind="eval"``) carry ``eval_loss``/``eval_accuracy`` and any other metric in
    ``metrics``.
    """

    step: int
    kind: RecordKind = "train"
    epoch: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    clip_coef: float | None = None
    lr: float | None = None
    loss_scale: float | None = None
    skipped: bool | None = None
    action: str | None = None
    accuracy: float | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    samples: int | None = None
    tokens: int | None = None
    wall_time: float | None = None
    step_time: float | None = None
    rank: int | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict without ``None`` fields; non-finite floats become strings."""
        out: dict[str, Any] = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if v is None or (f.name == "metrics" and not v):
                continue
            if f.name == "kind" and v == "train":
                continue
            out[f.name] = json_float(v) if isinstance(v, float) else v
        if self.metrics:
            out["metrics"] = {k: json_float(v) for k, v in self.metrics.items()}
        return out

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> StepRecord:
        """Inverse of :meth:`to_json`; unknown keys go to ``metrics`` when numeric."""
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        metrics: dict[str, float] = {}
        for k, v in data.items():
            if k in ("v", "schema"):
                continue
            if k == "metrics" and isinstance(v, dict):
                metrics.update({mk: _parse_float(mv) for mk, mv in v.items()})
            elif k in known:
                kwargs[k] = (
                    _parse_float(v) if isinstance(v, str) and k not in ("kind", "action") else v
                )
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics[k] = float(v)
        try:
            kwargs["step"] = int(kwargs["step"])
        except OverflowError as e:  # inf: a ValueError like any other unusable step
            raise ValueError(f"step {kwargs['step']!r} is not a finite number") from e
        for k in ("samples", "tokens", "rank"):
            if kwargs.get(k) is not None:
                try:
                    kwargs[k] = int(kwargs[k])
                except (OverflowError, ValueError):
                    kwargs[k] = None  # a non-finite count is no count; the step stays
        return cls(**kwargs, metrics=metrics)


def json_float(v: Any) -> Any:
    """Strict-JSON float: non-finite floats become "nan"/"inf"/"-inf"; anything else unchanged."""
    if not isinstance(v, float):
        return v
    if math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _parse_float(v: Any) -> Any:
    if isinstance(v, str) and v.lower() in ("nan", "inf", "-inf", "+inf", "infinity", "-infinity"):
        return float(v)
    return v


FactName = Literal[
    "lr",
    "min_lr",
    "batch_size",
    "grad_accum",
    "world_size",
    "epochs",
    "max_steps",
    "warmup_steps",
    "warmup_ratio",
    "schedule",
    "optimizer",
    "beta1",
    "beta2",
    "eps",
    "weight_decay",
    "max_grad_norm",
    "precision",
    "loss_scale_init",
    "loss_scale_growth_factor",
    "loss_scale_growth_interval",
    "loss_scale_backoff",
    "loss_scale_min",
    "plateau_patience",
    "plateau_factor",
    "early_stop_patience",
    "early_stop_min_delta",
    "num_classes",
    "vocab_size",
    "model",
    "logging_steps",
    "logging_nan_inf_filter",
]


@dataclass(slots=True, frozen=True)
class Fact:
    """One normalised setting and where it came from, so a fix can use the user's own key."""

    name: str
    value: Any
    file: str | None = None
    key: str | None = None

    def where(self) -> str:
        if self.file and self.key:
            return f"{self.file}:{self.key}"
        return self.key or self.name


@dataclass(slots=True)
class ConfigFacts:
    """The stability-relevant settings of one run, normalised from any config format."""

    facts: dict[str, Fact] = field(default_factory=dict)
    source: str | None = None
    format: str | None = None

    def set(self, name: str, value: Any, key: str | None = None, file: str | None = None) -> None:
        if value is None:
            return
        self.facts[name] = Fact(name, value, file or self.source, key)

    def get(self, name: str, default: Any = None) -> Any:
        fact = self.facts.get(name)
        return default if fact is None else fact.value

    def number(self, name: str, *, positive: bool = False) -> float | None:
        """The fact as a float when it is a finite number (not a bool; > 0 with ``positive``)."""
        v = self.get(name)
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return None
        try:
            f = float(v)
        except OverflowError:  # an integer beyond a float's range (JSON's ints have no bound)
            return None
        if not math.isfinite(f):
            return None
        return None if positive and not f > 0 else f

    def key(self, name: str) -> str:
        """The user's key for a fact (falls back to the normalised name)."""
        fact = self.facts.get(name)
        return fact.key if fact is not None and fact.key else name

    def __contains__(self, name: object) -> bool:
        return name in self.facts

    def merged(self, other: ConfigFacts) -> ConfigFacts:
        """A copy with ``other``'s facts added where this one has none."""
        out = ConfigFacts(dict(self.facts), self.source, self.format)
        for k, v in other.facts.items():
            out.facts.setdefault(k, v)
        return out


@dataclass(slots=True)
class Fix:
    """A concrete change: config keys to set (in the user's key names) and/or a code change.

    ``relative``: fact name → factor of the run's current value (``{"lr": 0.5}`` halves the LR);
    the report's change set turns it into a value from the right base (report/changeset.py).
    """

    description: str
    changes: dict[str, Any] = field(default_factory=dict)
    code: str | None = None
    relative: dict[str, float] = field(default_factory=dict)


@dataclass(slots=True)
class Finding:
    """One diagnosis. ``id`` is a stable kebab-case name (``loss-spike``, ``clip-saturated``...)."""

    id: str
    severity: Severity
    title: str
    explanation: str = ""
    steps: list[int] = field(default_factory=list)
    epochs: list[int] = field(default_factory=list)
    evidence: dict[str, Any] = field(default_factory=dict)
    fixes: list[Fix] = field(default_factory=list)
    source: Literal["log", "config", "guard", "both"] = "log"
    related: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["evidence"] = {
            k: (json_float(v) if isinstance(v, float) else v) for k, v in self.evidence.items()
        }
        return d

    @property
    def first_step(self) -> int | None:
        return min(self.steps) if self.steps else None
