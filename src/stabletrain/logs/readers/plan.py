"""What one shape of log line says: which of its numbers is the step, the epoch, each metric.

A training log prints the same few line shapes millions of times with different numbers. The text
reader analyses a shape once (:func:`analyse`, the slow generic path of
:mod:`~stabletrain.logs.readers.lines`) and keeps the result as a :class:`LinePlan` keyed by the
line with its digits removed (:func:`shape`); every later line of that shape only needs its
numbers (:func:`numbers`, one C-level regex call) read through the plan. A line whose numbers do
not line up with its shape's plan (same skeleton, different number count) is analysed on its own.

This is what keeps the generic reader as fast as the per-framework parsers it replaced.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from stabletrain.logs.readers import dialects as dl
from stabletrain.logs.readers.lines import items

__all__ = ["LinePlan", "Metric", "analyse", "number", "numbers", "shape"]

_DIGITS = b"0123456789"
#: a line's numbers are its runs of these bytes (every other byte becomes a space): one
#: ``bytes.translate`` and ``split`` per line, several times faster than a number regex
_NUMBER_BYTES = bytes(c if c in b"0123456789.eE+-," else 32 for c in range(256))
_RUN = re.compile(rb"\S+")
_SPACES = re.compile(r"\s+")
_PHASES = {
    "train": False,
    "training": False,
    "test": True,
    "testing": True,
    "eval": True,
    "evaluation": True,
    "val": True,
    "valid": True,
    "validation": True,
    "validation dataloader": True,
    "validating": True,
}
_NOT_STEP = (" per ", "skipped", "nan ", "number of")
#: a split section inside a line: ``[train] ... loss=1.613, ... [valid] loss=1.854`` (ESPnet's
#: epoch summary): the items after ``[valid]`` are eval values
_SECTION = re.compile(r"\[(train|training|valid|validation|val|eval|evaluation|test|dev)\]", re.I)
#: a split label before the names it heads: ``train G: loss=1.0265, val: sm=0.6728, val: em=..``
#: (SAM-Adapter's epoch line); a label before a number or a bracket is a phase header, not this
_LABEL = re.compile(
    r"(?<![\w/.-])(train|training|valid|validation|val|eval|evaluation|test|dev)\s*:\s*(?=[A-Za-z_])",
    re.I,
)
#: seconds per step from a bare rate (``132.41s/it``, ``2ms/step``); ``it/s`` is inverted
_RATE = {"s/it": 1.0, "s/step": 1.0, "sec/step": 1.0, "ms/step": 1000.0, "us/step": 1e6}
_RATE["µs/step"] = 1e6  # divisors to seconds per step


def shape(raw: bytes) -> bytes:
    """The cache key of a line (as UTF-8 bytes): the line without its digits."""
    return raw.translate(None, _DIGITS)


def numbers(raw: bytes) -> list[bytes]:
    """The number-like runs of a line (as UTF-8 bytes), in order: what a plan's indexes point
    into. Runs that are no number (the ``e`` of a word, ``2026-02-24``) are the same in every
    line of a shape and simply never used."""
    return raw.translate(_NUMBER_BYTES).split()


def number(v: bytes | str) -> float:
    """The value of a run: ``10,050`` -> 10050.0, ``52922,`` -> 52922.0, ``nan`` -> nan."""
    try:
        return float(v)
    except ValueError:
        if isinstance(v, str):
            v = v.encode()
        return float(v.replace(b",", b"").rstrip(b".+-eE"))


@dataclass(slots=True)
class Metric:
    """One metric item of a line: where its value is, its own name, the name lower-cased, unit."""

    idx: int
    name: str
    key: str
    unit: str
    #: where the ``/ total`` printed after the value is (``Accuracy: 1000/10000``), or None
    total: int | None = None


@dataclass(slots=True)
class LinePlan:
    """Where a line's context and metrics are, as indexes into its :func:`numbers` (or, for a
    plan built for one line only, into its items' values)."""

    n: int
    dialect: dl.Dialect
    step: int | None = None
    step_total: int | None = None
    epoch: int | None = None
    pos: tuple[int, int] | None = None
    rate: tuple[int, float, bool] | None = None
    #: the line says it is an eval (True) or train (False) line before its metrics; None: silent
    split: bool | None = None
    metrics: list[Metric] = field(default_factory=list)
    #: a header line (no metric) that names a phase (``Test:``, ``--> EVAL PERFORMANCE``)
    marker: bool | None = None
    iter_lines: bool = False
    epoch_header: bool = False
    #: a progress bar (a position and a rate: tqdm, Lightning, Keras): its redraws repeat records
    bar: bool = False
    #: values that are words in this shape (``nan``, ``inf``): indexes ``n``, ``n + 1``... point here
    extra: list[bytes] = field(default_factory=list)
    #: the reader's per-split compilation of ``metrics`` (see ``text._Reader``)
    compiled: dict[Any, Any] = field(default_factory=dict)


def analyse(line: str, values: list[str] | None = None) -> LinePlan | None:
    """The plan of ``line``'s shape, its indexes pointing into :func:`numbers`; None when an
    item's value is not one of those numbers. With ``values`` (an empty list to fill), a plan for
    this line only, its indexes pointing into the items' values that it appends to ``values``."""
    its = items(line)
    aligned = values is None
    starts: dict[int, int] = {}
    runs: list[bytes] = []
    raw = line.encode()
    if aligned:
        found_runs = list(_RUN.finditer(raw.translate(_NUMBER_BYTES)))
        starts = {m.start(): i for i, m in enumerate(found_runs)}
        runs = [m.group() for m in found_runs]
        n = len(starts)
    else:
        assert values is not None
        for it in its:
            values.append(it.value)
            if it.total is not None:
                values.append(it.total)
        n = len(values)
    dialect = dl.dialect_of(line)
    plan = LinePlan(n, dialect, iter_lines=dialect.name == "nanogpt" and line.startswith("iter"))
    if not its:
        plan.marker = dl.eval_marker(line) if len(line) < 120 else None
        return plan
    step_global = False
    first_metric = -1
    j = 0
    sections = sorted(
        (m.start(), _PHASES.get(m[1].lower(), True))
        for pattern in (_SECTION, _LABEL)
        for m in pattern.finditer(line)
    )
    for it in its:
        if aligned:
            at = it.start + _value_offset(line, it)
            found = starts.get(at if len(raw) == len(line) else len(line[:at].encode()))
            if found is not None and not _same_value(runs[found], it.value):
                return None  # the run holds more than the value (``0.5,0.6``)
            if found is None:
                if it.value.lstrip("+-")[:1].isalpha() and it.total is None:
                    found = n + len(plan.extra)  # ``nan``: the same word in every such line
                    plan.extra.append(it.value.encode())
                elif not it.name and it.total is None and not it.unit:
                    continue  # a bare number the tokens split differently: unused anyway
                else:
                    return None
            idx = found
        else:
            idx = j
            j += 1 if it.total is None else 2
        name = it.name
        if not name:
            if it.total is not None:
                if plan.pos is None and (
                    it.bracketed
                    or plan.epoch is not None
                    or " [" in line[it.start : it.start + 24]
                    or "][" in line[it.start : it.start + 24]
                ):
                    plan.pos = (idx, idx + 1)
            elif it.unit in _RATE:
                plan.rate = (idx, _RATE[it.unit], False)
            elif it.unit == "it/s":
                plan.rate = (idx, 1.0, True)
            continue
        key = _SPACES.sub(" ", name.lower())
        tag = it.tag.lower()
        if key.endswith(")") and "(" in key:
            key, _, t = key[:-1].partition("(")
            tag = tag or t
            if t in ("val", "test", "eval"):
                plan.split = True
            elif t == "train":
                plan.split = False
        if key in _PHASES:
            # ``Train: 1 [ 350/5004 (7%)]`` (timm): a phase label holding the epoch; ``Training:``,
            # ``Validation DataLoader 0:`` (Lightning bars): a label, not a metric
            if plan.split is None:
                plan.split = _PHASES[key]
            if it.total is None and " [" in line[it.start : it.start + len(it.name) + 24]:
                plan.epoch = idx
                plan.epoch_header = True
            continue
        # a name the text vocabulary knows is a metric even when it ends with ``epoch``
        # (``time this epoch``)
        last = key.rsplit(" ", 1)[-1] if key not in dl.TEXT_ALIASES else key
        if (key in dl.BATCH_WORDS or last in dl.BATCH_WORDS) and (
            it.bracketed or it.total is not None or plan.epoch is not None
        ):
            if plan.step is None:
                plan.step = idx
                if it.total is not None:
                    plan.step_total = idx + 1
            continue
        if (key in dl.STEP_WORDS or last in dl.STEP_WORDS) and not any(w in key for w in _NOT_STEP):
            is_global = "global" in key
            if plan.step is None or (is_global and not step_global):
                plan.step, step_global = idx, is_global
                if it.total is not None:
                    plan.step_total = idx + 1
            continue
        if (key in dl.EPOCH_WORDS or last in dl.EPOCH_WORDS) and " per " not in key:
            plan.epoch = idx
            # a header (``Epoch 3/10``) carries over; prose (``1 epoch = 2640 batches``) does not
            plan.epoch_header = it.total is not None or not line[: it.start].strip(" >-|*[")
            continue
        if first_metric < 0:
            first_metric = it.start
        if sections and _section(sections, it.start) and not _PREFIXED.match(key):
            name, key = f"valid {name}", f"valid {key}"  # read as eval by its name
        total = idx + 1 if it.total is not None else None
        plan.metrics.append(Metric(idx, name, key, it.unit or tag, total))
    _inherit_split(plan.metrics)
    plan.bar = plan.pos is not None and (plan.rate is not None or "it/s" in line)
    if plan.metrics and plan.split is None:
        plan.split = dl.eval_marker(line[:first_metric])
    elif not plan.metrics:
        plan.marker = dl.eval_marker(line)
    return plan


_PREFIXED = re.compile(r"(?:valid|val|eval|test|validation)[ _/]")
_SPLIT_WORD = re.compile(r"^(train|training|test|val|vali|valid|validation|eval)[ _/-]")


def _inherit_split(metrics: list[Metric]) -> None:
    """A name printed twice in one line takes the split of the name before it (``Train Loss: ..
    Acc: .. | Test Loss: .. Acc: ..``: the first ``Acc`` is the train accuracy, the second the
    test one). A name printed once is left as it is."""
    keys = [m.key for m in metrics]
    if len(set(keys)) == len(keys):
        return
    split: tuple[str, str] | None = None  # (the word lower-cased, as printed)
    for m in metrics:
        hit = _SPLIT_WORD.match(m.key)
        if hit is not None:
            split = (hit[1], m.name[: len(hit[1])])
        elif split is not None and keys.count(m.key) > 1:
            m.name, m.key = f"{split[1]} {m.name}", f"{split[0]} {m.key}"


def _section(sections: list[tuple[int, bool]], at: int) -> bool:
    """Whether the last ``[split]`` section before position ``at`` is an eval one."""
    last = False
    for start, is_eval in sections:
        if start > at:
            break
        last = is_eval
    return last


def _same_value(run: bytes, value: str) -> bool:
    try:
        a, b = number(run), number(value)
    except ValueError:
        return False
    return a == b or (a != a and b != b)


def _value_offset(line: str, it: Any) -> int:
    """Where an item's value starts, relative to the item's start."""
    if not it.name:
        return 1 + line[it.start + 1 :].find(it.value) if it.bracketed else 0
    return line.find(it.value, it.start + len(it.name)) - it.start
