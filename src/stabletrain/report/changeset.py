"""One change set per report: the fixes of every finding resolved into one value per config key.

Each finding keeps its own fixes as evidence; what a user applies is the *change set*. Applied
as written, the findings' fixes contradict each other (``optim.lr`` 0.1, 1.0 and 0.2 in one
report; "enable clipping at 1.0" beside "raise the clip to 1.5" when the clip was already 1.0; a
too-low LR told to go lower). The resolver is one mechanism in three steps:

1. **classify** each finding: ``instability`` (spikes, NaN/inf, divergence, grad growth, AMP
   overflow, no warm-up...), ``progress`` (underfitting, an LR too low, a clip that stalls SGD)
   or ``neutral``; a finding can state its class in ``evidence["direction"]`` (a detector that
   knows better than its id: chance level whose loss collapsed to ln(C), or never moved). A
   *symptom* that reads both ways (chance level, a clip firing on every step under Adam) takes
   the direction the rest of the run shows, and with none it is ``unclear``: its step-size
   changes are left out;
2. **direct**: each class moves the step-size settings (LR, clip, warm-up) one way only —
   instability may lower the LR, tighten or enable the clip and lengthen the warm-up; progress
   may raise the LR and loosen the clip. A change the other way is dropped, with a line in
   ``dropped``. LR values are recomputed from the *base LR*: the config's LR when a config gave
   one, else the LR the log shows before the problem began (never the log's peak: after a 100×
   schedule jump the peak is the bug). A fix states an LR change relative to the current LR in
   ``Fix.relative``;
3. **merge** in cause → effect order (the doctor's ``chain.order``): the root cause's fixes
   first, then each later finding only adds keys not yet set. A different value for a key already
   set is dropped (named); a change equal to the current setting (a framework default included)
   is dropped as already set. The step size is changed for one finding only, the first that
   changes it (the root cause's repair; stacking an effect's LR cut on it over-corrects). When
   findings of opposite classes both want the LR, the root cause's direction wins if it has one,
   else the LR is left alone and ``dropped`` says why: a wrong answer is worse than none.

The root cause owns its chain's step size only when its fix changes something: a fix that names
code (a bad batch, a schedule bug) is "fixed in code or data" and no step-size change in its
chain is kept; a root whose fix is a sentence that nothing should change (a warm-up already a
fifth of the run), or settings the run already has, owns nothing, and its chain's other findings
keep their changes under the direction rules. A change to a key the configured schedule or
optimizer does not read (a plateau patience under one-cycle, a momentum under Adam:
:mod:`stabletrain.report.reads`) is left out, with a line in ``dropped``.

An instability finding's LR cut needs the symptom to have shown at the run's own LR: when the log
shows the schedule had already cut the LR at least ``LR_COLLAPSED``-fold below its peak and kept
it there for at least ``COLLAPSED_SHARE`` of the logged steps to the end (a plateau schedule that
collapsed it), an instability finding whose steps lie in that stretch, or that has no steps (judged
on the whole run or on evals), gets no LR cut: a lower configured LR does not address a symptom of
a run that was already at a hundredth of it. A wrong answer is worse than none
(:func:`lr_collapse`; the cut is named in ``dropped``).

A fallback finding (``evidence["fallback"]``: the log shows the run failed, and no mechanism is
named) takes part only when no other finding at warning or above does (:func:`problems_of`).

Fixes whose description starts with "Or" are alternatives to the finding's first fix, listed in
``alternatives``, as are code-only fixes. Only findings at warning or above take part.

Limits: the class table is by finding id; the base LR without a config is a median of logged LRs,
which reads a warm-up's ramp as part of the run.
"""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

from stabletrain.detectors.fixes import fmt, nice, setting, user_key, value_for
from stabletrain.records import SEVERITY_ORDER, ConfigFacts, Finding, Fix, StepRecord
from stabletrain.report.reads import unread

if TYPE_CHECKING:
    import numpy as np

Direction = Literal["instability", "progress", "neutral", "unclear"]

#: finding id → the class whose direction its fixes must respect (unknown ids: neutral)
CLASS: dict[str, Direction] = {
    **dict.fromkeys(
        (
            "loss-spike",
            "grad-spike",
            "nonfinite-loss",
            "nonfinite-grad",
            "loss-divergence",
            "grad-norm-growth",
            "fp16-overflow",
            "loss-scale-collapse",
            "loss-scale-init-high",
            "fp16-without-loss-scaling",
            "warmup-short",
            "no-warmup",
            "lr-high-for-batch",
            "no-grad-clipping",
            "eval-unstable",
            "lr-jump",
            "bad-batch",
            "bad-init",
        ),
        "instability",
    ),
    **dict.fromkeys(
        (
            "underfitting",
            "lr-too-low",
            "lr-zero",
            "slow-progress",
            "clip-stall",
            "warmup-too-long",
            "too-few-steps",
        ),
        "progress",
    ),
}
#: symptoms that read both ways (a model at chance level: collapsed or never moved; a clip firing
#: on every step under Adam, or norms hovering just under it: too hot, or large gradients that a
#: model learning too little never reduces — a 1-layer, 16-channel GPT at the stable 3e-3 has its
#: norms at 0.86 under a clip of 1). Unless the finding states its direction, it takes the one the
#: rest of the run shows; with none, its step-size changes are left out
SYMPTOMS = frozenset({"chance-level", "clip-saturated", "clip-near-threshold"})

#: directed settings: +1 = instability raises it, -1 = instability lowers it (progress: reverse)
_KNOBS: dict[str, int] = {"lr": -1, "max_grad_norm": -1, "warmup_steps": 1, "warmup_ratio": 1}


@dataclass(slots=True)
class ChangeSet:
    """The one set of config changes a report recommends (see the module docstring)."""

    cause: str | None = None
    changes: dict[str, Any] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    alternatives: list[Fix] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    base_lr: float | None = None
    base_lr_source: str | None = None
    #: what to do first that is not a config key: the root cause's own fix when it is code or
    #: data (a schedule bug, a bad batch), not a setting
    actions: list[Fix] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "cause": self.cause,
            "changes": dict(self.changes),
            "reasons": dict(self.reasons),
            "alternatives": [_fix_json(a) for a in self.alternatives],
            "dropped": list(self.dropped),
            "actions": [_fix_json(a) for a in self.actions],
            "base_lr": self.base_lr,
            "base_lr_source": self.base_lr_source,
        }

    def as_fix(self) -> Fix:
        """The changes as one Fix (what the renderers diff against the config)."""
        return Fix(f"change set for {self.cause}", dict(self.changes))

    def base_line(self) -> str | None:
        """``0.0005 (configured (run.yaml:optim.lr))``: the LR the LR values are relative to."""
        if self.base_lr is None or not self.base_lr_source:
            return None
        return f"{self.base_lr:g} ({self.base_lr_source})"

    def __bool__(self) -> bool:
        return bool(self.changes or self.alternatives or self.actions)


def _fix_json(fix: Fix) -> dict[str, Any]:
    return {"description": fix.description, "changes": dict(fix.changes), "code": fix.code}


def base_lr(
    facts: ConfigFacts, records: Sequence[StepRecord] | None, onset: int | None
) -> tuple[float | None, str | None]:
    """``(LR the fixes are relative to, where it came from)``: the config's LR; else the median
    of the finite LRs logged before ``onset`` (the first step of the problem), else the first LR
    logged at or after it. Never the peak. When the config's LR is ``LR_OFF``× above what the
    log shows before the problem (a config of another run, or an LR fact taken from a log whose
    schedule jumped), the logged one: an LR cut must start from what ran before the trouble.

    A warm-up ramp (:func:`_leading_ramp`) is not what ran: its LRs are left out. When nothing else was
    logged before the problem, the base is the configured LR, else the ramp's last LR."""
    lr = facts.number("lr", positive=True)
    logged, where, ramp = _logged_before(records, onset)
    if lr is not None:
        if logged is not None and lr >= LR_OFF * logged:
            return logged, f"{where}; the config's {facts.facts['lr'].where()} says {lr:g}"
        why = "; the log before the problem is all warm-up ramp" if ramp is not None else ""
        return lr, f"configured ({facts.facts['lr'].where()}){why}"
    if logged is None and ramp is not None:
        return ramp
    return logged, where


#: a configured LR this many times the LR logged before the problem is not the base
LR_OFF = 2.0


def report_base_lr(
    findings: Sequence[Finding], facts: ConfigFacts, records: Sequence[StepRecord] | None
) -> tuple[float | None, str | None]:
    """The one LR base of a report: :func:`base_lr` at the onset of its first problem (warning
    or worse). The change set and the findings' own fix text (:func:`rebase_lr_fixes`) both
    compute their LR values from it."""
    return base_lr(facts, records, _onset(problems_of(findings)))


def problems_of(findings: Sequence[Finding]) -> list[Finding]:
    """The findings at warning or above that take part in the change set. A fallback finding
    (``evidence["fallback"]``: the run failed and the detector that says so names no mechanism,
    detectors/fallback.py) takes part only when no other finding at warning or above does: any
    finding that names a cause knows more."""
    problems = [f for f in findings if SEVERITY_ORDER[f.severity] >= 1]
    named = [f for f in problems if not f.evidence.get("fallback")]
    return named or problems


def rebase_lr_fixes(
    findings: Sequence[Finding], facts: ConfigFacts, records: Sequence[StepRecord] | None
) -> list[Finding]:
    """``findings`` with each relative LR fix (``Fix.relative["lr"]``) recomputed from the
    report's LR base: a detector only knows the facts' LR, which with a given config can be the
    log's 90th-percentile LR (``doctor.reconcile``) — after a schedule jump, the bug's LR."""
    base, _ = report_base_lr(findings, facts, records)
    old = facts.number("lr", positive=True)
    if base is None or old is None or math.isclose(base, old, rel_tol=1e-9):
        return list(findings)
    key = user_key(facts, "lr")
    out = []
    for f in findings:
        fixes = [_rebased(x, key, old, base) if "lr" in x.relative else x for x in f.fixes]
        out.append(f if fixes == f.fixes else replace(f, fixes=fixes))
    return out


def _rebased(fix: Fix, key: str, old: float, base: float) -> Fix:
    factor = fix.relative["lr"]
    new = nice(base * factor)
    text = fix.description.replace(
        f"{fmt(old)} → {fmt(nice(old * factor))}", f"{fmt(base)} → {fmt(new)}"
    )
    changes = {**fix.changes, key: new} if key in fix.changes else dict(fix.changes)
    return replace(fix, description=text, changes=changes)


def _logged_before(
    records: Sequence[StepRecord] | None, onset: int | None
) -> tuple[float | None, str | None, tuple[float, str] | None]:
    """``(the median positive train LR logged before onset, where, None)``, leaving out a
    warm-up ramp (on the LR column: a million-row log builds no Python list), else the first one
    logged. When only the ramp was logged before ``onset``: ``(None, None, (its last LR before
    onset, or its first when onset comes first; where))``."""
    if not records:
        return None, None, None
    import numpy as np

    from stabletrain.detectors.columns import Batch

    b = records if isinstance(records, Batch) else Batch(records)
    # a table's int steps as they are (a float copy of a 10M-row column is 80 MB)
    v, s = b.floats("lr"), (b.steps if b.table is not None else b.floats("step"))
    ok = b.train & (v > 0) & (v < math.inf)
    if not ok.any():
        return None, None, None
    n, at = _leading_ramp(v, ok)
    kept = ok.copy()
    kept[at[:n]] = False
    early = np.ones_like(ok) if onset is None else s < onset
    before = v[kept & early]
    if before.size:
        k = before.size // 2
        where = "median logged LR" + (f" before step {onset}" if onset is not None else "")
        where += f" (after the warm-up ramp to step {int(s[at[n - 1]])})" if n else ""
        before.partition(k)  # (in place: ``before`` is a copy)
        return float(before[k]), where, None
    if n:  # only the ramp before onset (or nothing, the ramp starting at it)
        ramp = at[:n][early[at[:n]]]
        i = int(ramp[-1]) if ramp.size else int(at[0])
        return None, None, (float(v[i]), f"last LR of the warm-up ramp (step {int(s[i])})")
    i = int(at[0])
    return float(v[i]), f"logged LR at step {int(s[i])}", None


#: a warm-up ramp starts at most this fraction of its top, rises at least this many points, and
#: no step of it (after the first) is more than ``RAMP_JUMP``× the one before (that is a jump)
RAMP_START, RAMP_POINTS, RAMP_JUMP = 0.1, 3, 4.0


def _rise(lrs: np.ndarray) -> int:
    """How many of ``lrs`` rise at every point (each step up, none a > ``RAMP_JUMP``× jump but
    the first)."""
    import numpy as np

    stop = (lrs[1:] <= lrs[:-1]) | (lrs[1:] > RAMP_JUMP * lrs[:-1])
    stop[:1] = stop[:1] & (lrs[1:2] <= lrs[:1])  # the first rise may be any size
    where = np.flatnonzero(stop)
    return int(where[0]) + 1 if where.size else len(lrs)


def _as_ramp(lrs: np.ndarray, n: int) -> int:
    """``n`` when the first ``n`` of ``lrs`` rise from near zero over enough points, else 0."""
    if n < RAMP_POINTS or lrs[0] > RAMP_START * lrs[n - 1]:
        return 0
    return n


def _leading_ramp(v: np.ndarray, ok: np.ndarray) -> tuple[int, np.ndarray]:
    """(how many of the LRs ``v`` at ``ok`` (positive, in step order) are a warm-up ramp, rising
    at every point from near zero, 0 when they do not start so; the indices of the first of them:
    at least the ramp and one more, or all), read in growing prefixes — a ramp is short, the log
    may be 10M rows (indices and LRs of all of them: 160 MB)."""
    import numpy as np

    m = 1 << 12
    while True:
        at = np.flatnonzero(ok[:m])
        lrs = v[at]
        n = _rise(lrs)
        if n < len(lrs) or m >= len(ok):  # it stopped inside the prefix, or this is all
            return _as_ramp(lrs, n), at
        m *= 8


def _knob_keys(facts: ConfigFacts) -> dict[str, str]:
    """user key → directed fact name."""
    return {user_key(facts, name): name for name in _KNOBS}


def _current(facts: ConfigFacts, name: str) -> float | None:
    """The setting now: the config's, else the framework's default (HF clips at 1.0)."""
    value, _ = setting(facts, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _wrong_way(name: str, value: Any, klass: Direction, current: float | None) -> str | None:
    """Why ``name := value`` moves against ``klass``'s direction (None when it does not)."""
    sign = _KNOBS.get(name)
    if sign is None or klass == "neutral" or isinstance(value, bool):
        return None
    if name == "max_grad_norm" and value is None:
        value = 0.0  # null: no clipping (the reference trainer's "off")
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    want = sign if klass == "instability" else -sign  # +1: may only go up
    if name == "max_grad_norm":
        # 0 / unset = no clipping = infinitely loose
        cur = math.inf if current is None or current <= 0 else current
        new = math.inf if value <= 0 else float(value)
    else:
        if current is None:
            return None
        cur, new = current, float(value)
    if want > 0 and new < cur:
        return f"lowers {name} ({fmt(cur)} → {fmt(new)})"
    if want < 0 and new > cur:
        return f"raises {name} ({fmt(cur)} → {fmt(new)})"
    return None


def resolve(
    findings: Sequence[Finding],
    facts: ConfigFacts,
    records: Sequence[StepRecord] | None = None,
) -> ChangeSet:
    """One change set for ``findings`` (in cause → effect order, as the doctor orders them)."""
    problems = problems_of(findings)
    out = ChangeSet()
    if not problems:
        return out
    classes = classify_all(problems)
    root = problems[0]
    out.cause = root.id
    out.base_lr, out.base_lr_source = report_base_lr(problems, facts, records)
    knobs = _knob_keys(facts)
    lr_key = user_key(facts, "lr")
    lr_blocked = _lr_conflict(problems, classes, lr_key, out)
    collapse = lr_collapse(records)
    # the root cause's repair owns the step size (LR, clip, warm-up) of its whole chain: an
    # effect's LR cut stacked on it over-corrects (and after a bad batch or a schedule bug, an LR
    # change repairs nothing); elsewhere the first finding that changes the step size owns it
    effects = _chain_of(root, problems) - {id(root)}
    root_primary = next((x for x in root.fixes if not is_alternative(x)), None)
    # the root cause fixed in code or data (a bad batch, a schedule bug: its fix names the code):
    # no step-size change in its chain, its own included, repairs it
    code_fixed = (
        root_primary is not None and bool(root_primary.code) and not _is_config(root_primary)
    )
    # a root whose fix changes nothing (a sentence that nothing should change, or settings the
    # run already has) owns nothing: its chain's other findings keep their changes
    root_owns = code_fixed or (
        root_primary is not None and _changes_something(root_primary, facts, knobs)
    )
    if code_fixed:
        effects.add(id(root))
    owner: Finding | None = None  # outside the root's chain: the first to change the step size

    for f in problems:
        klass = classes[id(f)]
        first = True
        for fix in f.fixes:
            primary = first and not is_alternative(fix)
            if primary:
                first = False
            if not fix.changes and not fix.relative:  # code, data or advice in words
                if primary and f is root and (fix.code or not root_has_changes(root)):
                    out.actions.append(fix)
                elif (fix.code or not primary) and all(
                    a.description != fix.description for a in out.alternatives
                ):
                    out.alternatives.append(fix)
                continue
            if is_alternative(fix):
                out.alternatives.append(fix)
                continue
            changes = dict(fix.changes)
            if "lr" in fix.relative and out.base_lr is not None:
                changes[lr_key] = nice(out.base_lr * fix.relative["lr"])
            for key, value in changes.items():
                name = knobs.get(key)
                current = _now(facts, name, klass, out.base_lr)
                lead = root if (root_owns and id(f) in effects) else owner
                why = unread(facts, key, out.changes) or _refuse(
                    f, klass, key, name, value, current, lr_blocked, lead, out, code_fixed
                )
                if why is None and name == "lr" and klass == "instability" and collapse:
                    step, peak, top = collapse
                    if not f.steps or min(f.steps) >= step:
                        why = (
                            f"the schedule had cut the LR from {fmt(peak)} to at most {fmt(top)} "
                            f"from step {step} to the end; a lower LR does not address a symptom "
                            "of a run already at a hundredth of it"
                        )
                if why is None and _already(facts, key, value, name, current):
                    why = "already set"
                if why is not None:
                    if why:  # "" = the same value again: nothing to say
                        out.dropped.append(f"{f.id}: {key}={_show(value)} left out: {why}")
                    continue
                out.changes[key] = value
                out.reasons[key] = f"{f.id}: {fix.description}"
                if name is not None and lead is None:
                    owner = f  # (the root cause included)
    return out


def _now(
    facts: ConfigFacts, name: str | None, klass: Direction, base: float | None
) -> float | None:
    """The value a directed change is judged against: for the LR the base, or for a raise the
    higher of the base and the configured LR (a raise never lands under the config's value)."""
    if name is None:
        return None
    if name != "lr":
        return _current(facts, name)
    cfg = facts.number("lr", positive=True)
    if klass == "progress" and cfg is not None:
        return cfg if base is None else max(base, cfg)
    return base


#: the schedule cut the LR this many times below its peak ...
LR_COLLAPSED = 100.0
#: ... and kept it there for at least this share of the logged steps, to the end
COLLAPSED_SHARE = 0.25


def lr_collapse(records: Sequence[StepRecord] | None) -> tuple[int, float, float] | None:
    """``(first step of the stretch, peak LR before it, highest LR in it)`` when the train LRs
    logged from some step to the end are all at most ``1 / LR_COLLAPSED`` of the highest LR logged
    before that step and make up at least ``COLLAPSED_SHARE`` of the logged LRs, else None. A
    cosine or linear decay to zero gets there only in its last few percent, a step schedule
    (x0.1 twice) at its second cut."""
    if not records:
        return None
    import numpy as np

    from stabletrain.detectors.columns import Batch

    b = records if isinstance(records, Batch) else Batch(records)
    v, s = b.floats("lr"), (b.steps if b.table is not None else b.floats("step"))
    ok = b.train & (v > 0) & (v < math.inf)
    lrs, steps = v[ok], s[ok]
    if lrs.size < 8:
        return None
    peak = np.maximum.accumulate(lrs)
    tail_max = np.maximum.accumulate(lrs[::-1])[::-1]  # highest LR from i to the end
    # i starts the stretch: every LR from i on is a hundredth of the peak before i
    low = tail_max[1:] * LR_COLLAPSED <= peak[:-1]
    where = np.flatnonzero(low)
    if not where.size:
        return None
    i = int(where[0]) + 1
    if (lrs.size - i) < COLLAPSED_SHARE * lrs.size:
        return None
    return int(steps[i]), float(peak[i - 1]), float(tail_max[i])


def _is_config(fix: Fix) -> bool:
    return bool(fix.changes or fix.relative)


def _changes_something(fix: Fix, facts: ConfigFacts, knobs: dict[str, str]) -> bool:
    """Whether ``fix`` changes a setting: an LR factor other than 1, or a key the run reads set
    to a value it does not already have (the config's, or the framework's default)."""
    if any(not math.isclose(v, 1.0) for v in fix.relative.values()):
        return True
    for key, value in fix.changes.items():
        name = knobs.get(key)
        current = _current(facts, name) if name is not None and name != "lr" else None
        if unread(facts, key, fix.changes) is None and not _already(
            facts, key, value, name, current
        ):
            return True
    return False


def root_has_changes(root: Finding) -> bool:
    """Whether any of the root cause's own fixes is a config change."""
    return any(x.changes or x.relative for x in root.fixes)


def _chain_of(root: Finding, problems: Sequence[Finding]) -> set[int]:
    """``id()`` of the findings linked to ``root`` by known cause → effect mechanisms."""
    from stabletrain.report.chain import plausible

    seen = {id(root)}
    todo = [root]
    while todo:
        a = todo.pop()
        for b in problems:
            if id(b) not in seen and (plausible(a, b) or plausible(b, a)):
                seen.add(id(b))
                todo.append(b)
    return seen


def classify_all(problems: Sequence[Finding]) -> dict[int, Direction]:
    """Each finding's class (by ``id(finding)``): stated, from the table, or — for a symptom that
    reads both ways (chance level, a saturated clip) — the direction the rest of the run shows."""
    stated: dict[int, Direction | None] = {id(f): _stated(f) for f in problems}
    seen = {d for d in stated.values() if d in ("instability", "progress")}
    out: dict[int, Direction] = {}
    for f in problems:
        d = stated[id(f)]
        if d is None:  # a symptom: instability wins over progress, neither → unclear
            d = "instability" if "instability" in seen else "progress" if seen else "unclear"
        out[id(f)] = d
    return out


def _stated(f: Finding) -> Direction | None:
    stated = f.evidence.get("direction")
    if stated in ("instability", "progress", "neutral"):
        return stated  # type: ignore[no-any-return]
    if f.id in SYMPTOMS:
        return None
    return CLASS.get(f.id, "neutral")


def points_the_same_way(predicted: str, seen: Finding) -> bool:
    """Whether the log finding ``seen`` is evidence for the direction of the config prediction
    ``predicted`` (a finding id): a warning or worse whose own class (stated, or from
    :data:`CLASS`) is the prediction's. A symptom that reads both ways (a clip firing on every
    step under Adam), an info finding (spikes that all recovered) or a finding of the other class
    confirms that something happened, not which way the step size must move. A prediction with no
    direction (a plateau patience) is confirmed by any finding."""
    want = CLASS.get(predicted, "neutral")
    if want not in ("instability", "progress"):
        return True
    return SEVERITY_ORDER[seen.severity] >= 1 and _stated(seen) == want


def _lr_conflict(
    problems: Sequence[Finding], classes: dict[int, Direction], lr_key: str, out: ChangeSet
) -> str | None:
    """When findings of opposite classes both want the LR: the class to refuse (the root
    cause's direction wins if it has one), or "all" (neither); None without a conflict."""
    dirs = {
        classes[id(f)]
        for f in problems
        if classes[id(f)] in ("instability", "progress")
        and any(_lr_change(x, lr_key) for x in f.fixes)
    }
    if not {"instability", "progress"} <= dirs:
        return None
    root = problems[0]
    root_dir = classes[id(root)]
    if root_dir in ("instability", "progress") and any(_lr_change(x, lr_key) for x in root.fixes):
        out.dropped.append(
            f"{lr_key}: findings disagree on the direction of the LR; the root cause "
            f"{root.id} ({root_dir}) decides"
        )
        return "progress" if root_dir == "instability" else "instability"
    out.dropped.append(
        f"{lr_key}: findings disagree on the direction of the LR (some show instability, some "
        "too little progress); left unchanged — check the LR by hand"
    )
    return "all"


def _refuse(
    f: Finding,
    klass: Direction,
    key: str,
    name: str | None,
    value: Any,
    current: float | None,
    lr_blocked: str | None,
    owner: Finding | None,
    out: ChangeSet,
    code_fixed: bool = False,
) -> str | None:
    """Why ``key := value`` from ``f`` stays out of the change set ("" = a repeat, said once)."""
    if name is None or (key in out.changes and out.changes[key] == value):
        return _taken(key, value, out)
    if name == "lr" and lr_blocked in ("all", klass):
        return "findings disagree on the LR's direction"
    if klass == "unclear":
        return (
            "this symptom reads both ways (too hot or too slow) and no other finding tells "
            "which; the step size is left alone"
        )
    why = _wrong_way(name, value, klass, current)
    if why is not None:
        article = "an" if klass == "instability" else "a"
        return f"it {why}, the wrong way for {article} {klass} finding"
    if key in out.changes:
        return _taken(key, value, out)
    if owner is not None and (owner is not f or code_fixed):
        if code_fixed:
            return (
                f"the root cause {owner.id} is fixed in code or data; a step-size change "
                "does not repair it"
            )
        return f"the step size is {owner.id}'s to change (root cause first)"
    return None


def _taken(key: str, value: Any, out: ChangeSet) -> str | None:
    """None when ``key`` is free; "" when it already has ``value``; else whose value it has."""
    if key not in out.changes:
        return None
    if out.changes[key] == value:
        return ""
    return f"already {_show(out.changes[key])} from {out.reasons[key].split(':')[0]}"


def reasons_by_fix(cs: ChangeSet) -> dict[str, list[str]]:
    """``{"finding-id: fix description": [keys it set]}``, in the order the keys were set."""
    out: dict[str, list[str]] = {}
    for key, why in cs.reasons.items():
        out.setdefault(why, []).append(key)
    return out


def is_alternative(fix: Fix) -> bool:
    """A fix written as another way ("Or turn clipping off", "Or, if fp16 is required: ...")."""
    return re.match(r"\s*or\b", fix.description, re.IGNORECASE) is not None


def _lr_change(fix: Fix, lr_key: str) -> bool:
    return "lr" in fix.relative or lr_key in fix.changes


def _already(
    facts: ConfigFacts, key: str, value: Any, name: str | None, current: float | None
) -> bool:
    """Whether the run already has ``key: value`` (an empty change): the config's value, or a
    directed setting's current value (a framework default included: HF clips at 1.0)."""
    if name is not None and name != "lr" and current is not None and current == value:
        return True
    for fact in facts.facts.values():
        if fact.key == key:
            return bool(value_for(key, fact.value) == value)
    found, now = trainer_value(facts, key)
    return found and ((now is None and value is None) or (now is not None and now == value))


def trainer_value(facts: ConfigFacts, key: str) -> tuple[bool, Any]:
    """``(found, value)`` of a dotted key in a reference-trainer config as the trainer runs it:
    the file's value, else the trainer's default (``model.cnn.init`` is ``kaiming`` unless set).
    Other formats: not found (their settings are the facts)."""
    if facts.format != "stabletrain":
        return False, None
    files = dict.fromkeys(
        f.file for f in facts.facts.values() if f.file and f.file.endswith((".yaml", ".yml"))
    )  # (a run dir's meta.json holds facts too, and is no trainer config)
    for file in files:
        try:
            st = os.stat(file)
        except OSError:
            continue
        tree = _trainer_tree(file, st.st_mtime_ns, st.st_size)
        node: Any = tree
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                break
            node = node[part]
        else:
            return tree is not None, node
    return False, None


@functools.lru_cache(maxsize=8)
def _trainer_tree(file: str, mtime_ns: int, size: int) -> dict[str, Any] | None:
    """The reference trainer's validated config of ``file`` (defaults filled), or None when the
    trainer cannot load it (cached per file version: ``mtime_ns``, ``size``)."""
    del mtime_ns, size  # the cache key only
    from stabletrain.errors import ConfigError
    from stabletrain.train.config import load_config

    try:
        return load_config(file).model_dump()
    except (ConfigError, OSError, ValueError):
        return None


def _onset(findings: Sequence[Finding]) -> int | None:
    steps = [min(f.steps) for f in findings if f.steps]
    return min(steps) if steps else None


def _show(v: Any) -> str:
    return fmt(v) if isinstance(v, float) else repr(v) if isinstance(v, str) else str(v)
