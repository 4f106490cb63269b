"""The doctor: read any run's logs (and its config), replay them through the detectors, report.

::

    path ─► read_run ─► records ─► detectors (replay) ─┐
                  └──► raw ─► duplicate-logging ───────┤
    config ─► read_config ─► facts ─► lint_facts ──────┴─► join ─► order cause→effect ─► Report

The detectors are the very objects the guard runs live (``detectors.registry``); the doctor only
replays. With a config, the lint rules run too and the two are *joined*: a finding both predicted
by the config and seen in the log becomes one finding with ``source="both"`` that says so (grad
norm hovering just under ``max_grad_norm: 4.0``; plateau patience 10 ≥ early-stop patience 10 and
the LR cut came 14 epochs late). Without ``--config`` the log's own settings (a run dir's
config.yaml, trainer_state arguments) are linted too, but a config-only finding is kept only when
the log confirms it — a clean run gets no warnings from settings that did it no harm. With
``--config``, an unconfirmed config finding is kept only when the given config predicts it on its
own: a model-only hparams file is not blamed for the optimizer settings of the run it came with.
Kept, it is info and out of the change set when the log would show its symptom (``CONFIRMS``) and
does not: the log is the better witness of what this run did. A confirmed info prediction becomes
a warning only when a confirming finding points its way (``changeset.points_the_same_way``): a
clip firing on every step under Adam, or spikes that all recovered, do not say "LR too high". A ``--config``/``--patch`` file that
is the run's own config (same path, or same content) is read exactly as without the option.

Loss-scale evidence the log *states* (:func:`scale_findings`): DeepSpeed ``OVERFLOW! ... reducing
to``, fairseq and apex ``reducing loss scale to`` events, and train records whose loss scale dropped (a scaler lowers it only on overflow). Rule: an overflow after the
scaler's start-up search (absolute step > ``SETTLE_STEP``) is ``fp16-overflow`` — an info note
while the scale stays at ``PROBING_SCALE`` or more (the dynamic scaler probing, apex's and
DeepSpeed's normal back-off), a warning below it; the scale falling
≥ ``COLLAPSE_FACTOR``× within ``COLLAPSE_WINDOW`` steps (the scaler backing off on nearly every
step), or to ≤ 1, is ``loss-scale-collapse``. Only added when the detectors did not report the id
(the AMP detector treats its first records as start-up, which hides overflows in an excerpt).

Implements the diagnoses of the seed postmortems (shared/seeds/000-004).
"""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain.detectors.amp import amp_fixes
from stabletrain.detectors.columns import Batch, Unsupported, as_batch
from stabletrain.errors import LogReadError
from stabletrain.records import SEVERITY_ORDER, ConfigFacts, Finding, Fix, Severity, StepRecord
from stabletrain.report import chain
from stabletrain.report.changeset import points_the_same_way, rebase_lr_fixes
from stabletrain.report.fmt import where
from stabletrain.report.model import Report
from stabletrain.report.timeline import guard_findings, guard_timeline

log = logging.getLogger(__name__)

#: config-only finding id → log finding ids that confirm it happened in this run.
CONFIRMS: dict[str, frozenset[str]] = {
    "no-grad-clipping": frozenset(
        {"nonfinite-grad", "grad-spike", "loss-spike", "grad-norm-growth"}
    ),
    "fp16-without-loss-scaling": frozenset({"nonfinite-grad", "nonfinite-loss", "fp16-overflow"}),
    "loss-scale-init-high": frozenset({"loss-scale-collapse", "fp16-overflow", "nonfinite-grad"}),
    "lr-high-for-batch": frozenset(
        {"loss-spike", "grad-spike", "loss-divergence", "clip-saturated", "clip-near-threshold"}
    ),
    "plateau-patience-long": frozenset({"scheduler-late", "lr-constant"}),
    "patience-conflict": frozenset({"scheduler-late", "lr-constant"}),
    "warmup-short": frozenset({"loss-spike", "grad-spike"}),
}


def diagnose(
    path: str | os.PathLike[str],
    config: str | os.PathLike[str] | None = None,
    *,
    mapping: dict[str, str] | None = None,
    given_as: str = "--config",
) -> Report:
    """Diagnose the run at ``path`` (a run dir or a log file), optionally with its ``config``
    (``given_as``: the option that named it, for the report's header).

    Raises LogReadError / ConfigError (one-line reasons) when the inputs cannot be read.
    """
    from stabletrain.logs.read import gc_paused, read_run_columns

    with gc_paused():
        run, columns = read_run_columns(path, mapping=mapping, config=config)
        if not run.records:  # zero records is never a clean verdict (the reader may say it first)
            tried = ", ".join(getattr(run, "tried", None) or [run.format])
            raise LogReadError(f"no training records found in {path} (tried: {tried})")
        facts = run.facts
        # whose config: the one given, or the run's own (a run dir's config.yaml...), never a
        # stray file beside the log (the reader notes those as seen and ignored)
        config_name: str | None = run.config_from
        notes = list(run.notes)
        # config findings kept without the log confirming them: only what the given config
        # predicts on its own ("lint only what it was given": a model-only hparams file does not
        # predict optimizer problems from the run's own settings)
        given: frozenset[str] = frozenset()
        if config is not None and _is_own(config, run.config_from):
            # the run's own config handed back (``--patch RUN/config.yaml``): the same report as
            # without it, whatever the path it came by
            notes.append(f"{config} (given with {given_as}) is the run's own config")
            config = None
        if config is not None:
            from stabletrain.configs.read import read_config

            own = read_config(config)
            given = frozenset(f.id for f in _lint(own)) if own.facts else frozenset()
            config_name = f"given with {given_as}: {config}"
            if run.config_from:  # its settings fill what the given config leaves out
                config_name += f" (also read {run.config_from})"
        # columns shared by every detector and the code below (the reader's, when it has them)
        raw = Batch(run.raw, columns)
        batch = as_batch(run.records, like=raw)
        if config is not None:
            facts = reconcile(own, run.facts, logged_lr(batch), notes)
        log_findings = detect(batch, raw, facts)
        log_findings += per_attempt(run.raw, log_findings, facts)
        seen = {f.id for f in log_findings}
        log_findings += scale_findings(run.events, _scaled(batch), facts, seen)
        timeline = guard_timeline(run.events)
        log_findings += guard_findings(timeline, facts, {f.id for f in log_findings})
        config_findings = _lint(facts) if facts.facts else []
        span = _train_span(batch)
        logged = {n for n in ("loss", "grad_norm", "loss_scale", "lr") if _holds(batch, n)}
        findings = join(
            log_findings, config_findings, keep_unconfirmed=given, span=span, logged=logged
        )
        # the findings' LR values from the change set's base, not the facts' (reconciled) LR
        findings = rebase_lr_fixes(findings, facts, batch)
        return Report(
            findings=chain.order(findings),
            facts=facts,
            source=str(path),
            format=run.format,
            config=config_name,
            records=batch,  # a Sequence[StepRecord]; its columns serve the report's summary
            notes=notes,
            kind="doctor",
            dialect=getattr(run, "dialect", None),
            roles=dict(getattr(run, "roles", None) or {}),
            lines_total=getattr(run, "lines_total", None),
            lines_understood=getattr(run, "lines_understood", None),
            guard_timeline=timeline,
        )


#: a given config's LR this far (×) from the LR the log shows is another run's or an old value
LR_MISMATCH = 2.0


def logged_lr(batch: Batch) -> float | None:
    """The LR the log shows the run at: the 90th percentile of the positive train LRs (a warm-up,
    a decay or a short LR spike barely moves it); None when no LR is logged, or when the log
    ends still warming up (the LR rising all along: the configured peak is not reached yet)."""
    try:
        lr = batch.floats("lr")[batch.train]
    except Unsupported:  # an LR column that is not numbers
        return None
    lr = lr[np.isfinite(lr) & (lr > 0)]
    if not lr.size or (lr[-1] >= 2 * lr[0] and bool((np.diff(lr) >= 0).all())):
        return None
    return float(np.percentile(lr, 90))


def reconcile(
    given: ConfigFacts, logged: ConfigFacts, lr: float | None, notes: list[str]
) -> ConfigFacts:
    """The facts of a run diagnosed with a given config: the config's, plus the log's own
    settings where the config has none. Where the two disagree — a setting both state, or the
    config's LR ≥ ``LR_MISMATCH``× from the LR the log shows — the log's value wins (it
    describes what ran), kept under the config's file and key so a fix still names the user's
    key; each disagreement is a note."""
    from stabletrain.configs.read import same_value

    out = given.merged(logged)
    for name, fact in given.facts.items():
        other = logged.facts.get(name)
        if other is None or same_value(fact.value, other.value):
            continue
        out.facts[name] = replace(fact, value=other.value)
        notes.append(
            f"{name}: the log's own settings say {other.value!r} ({other.where()}), the config "
            f"{fact.value!r} ({fact.where()}); using the log's value (it describes what ran)"
        )
    cfg_lr = out.number("lr", positive=True)
    off = lr is not None and cfg_lr is not None and max(lr / cfg_lr, cfg_lr / lr) >= LR_MISMATCH
    if off and lr is not None and "lr" not in logged:
        fact = out.facts["lr"]
        out.facts["lr"] = replace(fact, value=float(f"{lr:.6g}"))
        notes.append(
            f"lr: the log shows the run at {lr:.6g}, the config says {cfg_lr:g} "
            f"({fact.where()}); using the log's value (it describes what ran — is the "
            "config another run's?)"
        )
    return out


def _scaled(batch: Batch) -> list[StepRecord]:
    """The train records that log a loss scale (the only ones ``scale_findings`` reads)."""
    none = batch.none("loss_scale")
    if none is not None and none.all():
        return []
    keep = batch.train if none is None else batch.train & ~none
    return [batch[i] for i in np.flatnonzero(keep).tolist()]


def _train_span(batch: Batch) -> tuple[int, int] | None:
    """(first, last) train step: min and max over the train records."""
    if batch.table is not None and len(batch) and batch.train.all():  # (10M rows: no 160 MB)
        # the first min and max (numpy's argmin copies a read-only column first)
        s, objs = batch.steps, batch.objects("step")
        return objs[int(np.argmax(s == s.min()))], objs[int(np.argmax(s == s.max()))]
    train = np.flatnonzero(batch.train)
    if train.size == 0:
        return None
    try:
        steps = batch.steps[train]
    except Unsupported:  # steps that are not all ints
        train_steps = [batch[i].step for i in train.tolist()]
        return min(train_steps), max(train_steps)
    objs = batch.objects("step")
    return objs[int(train[np.argmin(steps)])], objs[int(train[np.argmax(steps)])]


def detect(
    records: Iterable[StepRecord], raw: Iterable[StepRecord], facts: ConfigFacts | None
) -> list[Finding]:
    """Replay the cleaned records through every detector; those that look at logging itself
    (duplicate-logging) read the raw records — the cleaned ones have the repeats removed."""
    from stabletrain.detectors.registry import replay

    return replay(records, facts, raw=raw)


#: more attempts than this are reported (run-restart) but not analysed one by one
MAX_ATTEMPTS = 8
#: ids about the log as a whole, not about one attempt
_WHOLE_LOG = frozenset({"run-restart", "duplicate-logging"})


def per_attempt(
    raw: Sequence[StepRecord], found: list[Finding], facts: ConfigFacts | None
) -> list[Finding]:
    """Findings of the earlier attempts in a log whose step counter went back (``run-restart``).

    The cleaned records keep the latest record per step, so what an earlier attempt logged at
    steps a later one logged again is gone — often the very blow-up that made the user restart.
    Each earlier attempt is replayed on its own; a finding whose id the whole run does not have
    is added, its title and evidence naming the attempt and its steps.
    """
    from stabletrain.logs.readers.base import clean_records

    restart = next((f for f in found if f.id == "run-restart"), None)
    if restart is None:
        return []
    segs = restart.evidence["segments"]
    if len(segs) > MAX_ATTEMPTS:
        return []
    have = {f.id for f in found}
    out: list[Finding] = []
    for k, (seg, nxt) in enumerate(itertools.pairwise(segs), start=1):
        part = list(raw[seg["from_record"] : nxt["from_record"]])
        for f in detect(clean_records(part, []), part, facts):
            if f.id in _WHOLE_LOG or f.id in have:
                continue
            have.add(f.id)
            where_ = f"attempt {k} of {len(segs)}, steps {seg['first_step']}–{seg['last_step']}"
            out.append(
                replace(
                    f,
                    title=f"[{where_}] {f.title}",
                    explanation=f"In {where_} (a later attempt logged these steps again): "
                    + f.explanation,
                    evidence={**f.evidence, "attempt": k, "attempts": len(segs)},
                )
            )
    return out


def _holds(batch: Batch, name: str) -> bool:
    """Whether the log holds field ``name`` on some record."""
    try:
        values = batch.floats(name)
    except Unsupported:
        return False
    return bool(values.size) and not bool(np.isnan(values).all())


def _is_own(config: str | os.PathLike[str], config_from: str | None) -> bool:
    """Whether ``config`` is the run's own config file (``config_from``: "why: path"), by path
    after resolving or by content."""
    if not config_from or ": " not in config_from:
        return False
    own, given = Path(config_from.split(": ", 1)[1]), Path(config)
    try:
        return own.resolve() == given.resolve() or own.read_bytes() == given.read_bytes()
    except OSError:
        return False


def _lint(facts: ConfigFacts) -> list[Finding]:
    from stabletrain.lint_rules import lint_facts

    out = []
    for f in lint_facts(facts):
        out.append(replace(f, source="config") if f.source == "log" else f)
    return out


#: config findings about the start of a run, confirmed only by symptoms in its first 10%
_EARLY_ONLY = frozenset({"warmup-short"})
_EARLY_FRACTION = 0.1


def _confirms(predicted: Finding, seen: Finding, span: tuple[int, int] | None) -> bool:
    if seen.id not in CONFIRMS.get(predicted.id, frozenset()):
        return False
    if predicted.id in _EARLY_ONLY:
        if span is None or not seen.steps:
            return False
        first, last = span
        return min(seen.steps) <= first + _EARLY_FRACTION * (last - first)
    return True


def join(
    log_findings: list[Finding],
    config_findings: list[Finding],
    *,
    keep_unconfirmed: bool | Collection[str],
    span: tuple[int, int] | None = None,
    logged: Collection[str] | None = None,
) -> list[Finding]:
    """One list from both sources: same id → one ``source="both"`` finding; a config finding
    whose predicted symptom shows in the log says so; unconfirmed config findings are kept only
    when ``keep_unconfirmed`` is True or holds their id (the ids the config the user gave
    predicts on its own), and then as info, out of the change set, when the log would show their
    symptom (``CONFIRMS``; ``logged``: the fields it holds) and does not. ``span`` (first, last train step) lets a warmup
    prediction be confirmed only by symptoms early in the run."""
    by_id = {f.id: f for f in log_findings}
    out = list(log_findings)
    for c in config_findings:
        same = by_id.get(c.id)
        if same is not None:
            out[out.index(same)] = _merge_same(same, c)
            continue
        confirming = [f for f in log_findings if _confirms(c, f, span)]
        if confirming:
            out.append(_confirmed(c, confirming))
        elif keep_unconfirmed is True or (
            not isinstance(keep_unconfirmed, bool) and c.id in keep_unconfirmed
        ):
            out.append(_unseen(c) if _visible(c.id, logged) else c)
    return out


#: log finding id → the field a log needs for it to show
SHOWN_IN: dict[str, str] = {
    "nonfinite-grad": "grad_norm",
    "grad-spike": "grad_norm",
    "grad-norm-growth": "grad_norm",
    "clip-saturated": "grad_norm",
    "clip-near-threshold": "grad_norm",
    "loss-spike": "loss",
    "loss-divergence": "loss",
    "nonfinite-loss": "loss",
    "fp16-overflow": "loss_scale",
    "loss-scale-collapse": "loss_scale",
    "scheduler-late": "lr",
    "lr-constant": "lr",
}


def _visible(predicted: str, logged: Collection[str] | None) -> bool:
    """Whether the log could show ``predicted``'s symptom (``logged``: the fields it holds;
    None: unknown, taken as yes)."""
    symptoms = CONFIRMS.get(predicted, frozenset())
    if logged is None:
        return bool(symptoms)
    return any(SHOWN_IN.get(s) in logged for s in symptoms)


def _unseen(predicted: Finding) -> Finding:
    """A given config's prediction whose symptom the log would show and does not: info, out of
    the change set (a wrong fix on a healthy run is worse than none); its fixes stay listed."""
    return replace(
        predicted,
        severity="info",
        explanation=f"The config predicts this; this run's log does not show it. "
        f"{predicted.explanation}".strip(),
        evidence={**predicted.evidence, "unconfirmed": True},
    )


def _merge_same(seen: Finding, predicted: Finding) -> Finding:
    evidence = dict(predicted.evidence)
    evidence.update(seen.evidence)  # the log's numbers win; the config's settings stay
    fixes = list(seen.fixes)
    for fx in predicted.fixes:
        if not any(fx.changes == g.changes and fx.description == g.description for g in fixes):
            fixes.append(fx)
    loc = where(seen)
    shown = f" ({loc})" if seen.steps or seen.epochs else ""
    # the two explanations describe the same mechanism; the log's carries the numbers
    explanation = f"The config predicted this and the log confirms it{shown}. {seen.explanation}"
    if not seen.explanation:
        explanation += predicted.explanation
    return replace(
        seen,
        severity=_worst(seen, predicted),
        explanation=explanation,
        evidence=evidence,
        fixes=_dedupe(fixes),
        source="both",
        related=sorted({*seen.related, *predicted.related}),
    )


def _confirmed(predicted: Finding, confirming: list[Finding]) -> Finding:
    shown = "; ".join(f"{f.id} at {where(f)}" for f in confirming)
    evidence = dict(predicted.evidence)
    evidence["confirmed_by"] = [f.id for f in confirming]
    # promoted to a warning (the change set) only by a finding that points the same way
    directed = any(points_the_same_way(predicted.id, f) for f in confirming)
    sev = (
        predicted.severity if SEVERITY_ORDER[predicted.severity] >= 1 or not directed else "warning"
    )
    return replace(
        predicted,
        severity=sev,
        explanation=f"{predicted.explanation} The log confirms it: {shown}.".strip(),
        evidence=evidence,
        source="both",
    )


def _worst(a: Finding, b: Finding) -> Severity:
    return a.severity if SEVERITY_ORDER[a.severity] >= SEVERITY_ORDER[b.severity] else b.severity


def _dedupe(fixes: list[Fix]) -> list[Fix]:
    seen: set[str] = set()
    out = []
    for fx in fixes:
        key = repr(sorted(fx.changes.items())) + fx.description
        if key not in seen:
            seen.add(key)
            out.append(fx)
    return out


#: overflows up to this absolute step are the scaler's start-up search (it begins at 2**16)
SETTLE_STEP = 20
#: late overflows that leave the scale at or above this are the scaler's probing (info): 2^10,
#: six halvings under the usual 2^16 start; an overflow there needs a gradient element over 64
PROBING_SCALE = 2.0**10
#: the scale falling this much within COLLAPSE_WINDOW steps = overflow on nearly every step
COLLAPSE_FACTOR = 16.0
COLLAPSE_WINDOW = 10


def scale_findings(
    events: Iterable[dict[str, Any]],
    records: Iterable[StepRecord],
    facts: ConfigFacts | None,
    seen_ids: set[str] | frozenset[str] = frozenset(),
) -> list[Finding]:
    """fp16-overflow / loss-scale-collapse from what the log states: overflow events (DeepSpeed
    ``reducing to`` lines, stabletrain skip events with reason fp16-overflow) and train records
    whose loss scale dropped. See the module docstring for the rule."""
    drops: dict[int, tuple[float, float]] = {}  # step -> (scale before, scale after)
    for ev in events:
        data = ev.get("data") or {}
        step = ev.get("step")
        if data.get("reason") != "fp16-overflow" or not isinstance(step, int):
            continue
        old, new = data.get("attempted_scale"), data.get("new_scale")
        if isinstance(old, (int, float)) and isinstance(new, (int, float)):
            drops[step] = (float(old), float(new))
    prev: float | None = None
    for r in records:
        if r.kind != "train" or r.loss_scale is None:
            continue
        # a scaler lowers its scale only on overflow: any drop between records is one
        if prev is not None and r.loss_scale < prev and r.step not in drops:
            drops[r.step] = (prev, r.loss_scale)
        prev = r.loss_scale
    late = sorted(s for s in drops if s > SETTLE_STEP)
    if not late:
        return []
    facts = facts or ConfigFacts()
    out: list[Finding] = []
    collapse = _collapse_steps(late, drops)
    evidence: dict[str, Any] = {
        "overflow_steps": len(late),
        "scales": [drops[s][1] for s in late],
        "first_scale": drops[late[0]][0],
        "min_scale": min(drops[s][1] for s in late),
    }
    if collapse and "loss-scale-collapse" not in seen_ids:
        out.append(
            Finding(
                id="loss-scale-collapse",
                severity="error",
                title=f"fp16 loss scale collapsed {evidence['first_scale']:g} → "
                f"{evidence['min_scale']:g} in {len(collapse)} overflow steps: switch to bf16",
                explanation=(
                    "The log shows the scaler backing off on nearly every step: fp16's range is "
                    "too small for these gradients, steps are skipped and the run stops learning "
                    "(DeepSpeed then exits at its minimum scale). bf16 needs no loss scaling."
                ),
                steps=collapse,
                evidence=evidence,
                fixes=amp_fixes(facts, collapse=True),
            )
        )
    if "fp16-overflow" not in seen_ids:
        # a scale that stays high is the dynamic scaler probing (it doubles after each quiet
        # window and backs off on the overflow that follows); only a low one means gradients
        # near fp16's own range (an element over 65504 / scale)
        probing = not collapse and evidence["min_scale"] >= PROBING_SCALE
        out.append(
            Finding(
                id="fp16-overflow",
                severity="info" if probing else "warning",
                title=f"{len(late)} fp16 overflow step(s) skipped by the loss scaler"
                + (f" (the scale stayed at {evidence['min_scale']:g} or more)" if probing else ""),
                explanation=(
                    "Each overflow skips the step and halves the loss scale; "
                    + (
                        f"the scale stayed at {evidence['min_scale']:g} or more, so only gradient "
                        f"elements over {65504 / evidence['min_scale']:.3g} overflowed: the "
                        "dynamic scaler backing off after probing a higher scale, as it is "
                        "designed to. Nothing to change."
                        if probing
                        else "past the scaler's start-up they mean the gradients overflow fp16."
                    )
                ),
                steps=late,
                evidence=evidence,
                fixes=[] if probing else amp_fixes(facts, collapse=False),
            )
        )
    return out


def _collapse_steps(late: list[int], drops: dict[int, tuple[float, float]]) -> list[int]:
    """Overflow steps inside a window where the scale fell ≥ COLLAPSE_FACTOR× (or to ≤ 1)."""
    hit: set[int] = set()
    for i, start in enumerate(late):
        top = drops[start][0]
        window = [s for s in late[i:] if s - start < COLLAPSE_WINDOW]
        bottom = min(drops[s][1] for s in window)
        if bottom <= 1.0 or (bottom > 0 and top / bottom >= COLLAPSE_FACTOR):
            hit.update(window)
    return sorted(hit)
