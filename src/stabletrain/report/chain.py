"""Order findings cause → effect and link the chains (``Finding.related``).

A person reading a broken run wants the first domino first: an initial loss scale of 2**16
(config) → repeated overflow back-offs → inf gradient norms → a loss stuck at chance. Each
finding id has a *stage* (config causes, then numerics, then the loss, then schedules and
generalisation, then logging hygiene); a link ``cause → effect`` is drawn when the pair is a
known mechanism (table below) and the cause shows no later than the effect. For a grad spike and
a loss spike the link needs a grad spike at most two steps before a loss spike — the one-step lag
of an optimizer update.

Linked findings form a chain; chains are printed worst first (then earliest), each in stage
order. A fallback finding (``evidence["fallback"]``: "the run failed", naming no mechanism,
detectors/fallback.py) is demoted to info when another finding at warning or above names a
cause: it adds nothing to a report that already says why. Limits: the mechanism table is hand-written from the seed postmortems and common AMP/
optimizer failure modes; an unknown id gets a middle stage and no links.
"""

from __future__ import annotations

from dataclasses import replace

from stabletrain.detectors.sanity import RULES as SANITY_RULES
from stabletrain.records import SEVERITY_ORDER, Finding

_STAGE: dict[str, int] = {
    "lr-high-for-batch": 0,
    "bad-init": 0,
    "underfitting": 1,
    "lr-jump": 0,
    "bad-batch": 0,
    "warmup-short": 1,
    "warmup-too-long": 0,
    "too-few-steps": 0,
    "loss-scale-init-high": 1,
    "fp16-without-loss-scaling": 1,
    "no-grad-clipping": 1,
    "plateau-patience-long": 1,
    "patience-conflict": 2,
    "lr-zero": 2,
    "fp16-overflow": 3,
    "lr-constant": 3,
    "loss-scale-collapse": 4,
    "grad-norm-growth": 4,
    "grad-spike": 5,
    "clip-near-threshold": 5,
    "clip-saturated": 5,
    "nonfinite-grad": 6,
    "nonfinite-loss": 7,
    "loss-spike": 7,
    "loss-divergence": 8,
    "run-failed": 8,
    "scheduler-late": 8,
    "chance-level": 9,
    "eval-unstable": 9,
    "overfitting": 9,
    "duplicate-logging": 10,
    "run-restart": 10,
    "slow-steps": 10,
}
# the config sanity table's settings (detectors/sanity.py) are config causes
_STAGE.update(dict.fromkeys((r.id for r in SANITY_RULES), 0))
_DEFAULT_STAGE = 6

#: what a setting out of its range produces, by the effect the table states for it
_SANITY_EFFECTS: dict[str, frozenset[str]] = {
    "instability": frozenset({"loss-spike", "grad-spike", "nonfinite-loss", "nonfinite-grad",
                              "loss-divergence", "clip-saturated", "clip-near-threshold",
                              "grad-norm-growth", "eval-unstable", "chance-level"}),
    "progress": frozenset({"underfitting", "chance-level", "clip-saturated", "eval-unstable"}),
    "neutral": frozenset({"underfitting", "chance-level", "clip-saturated", "bad-init"}),
}  # fmt: skip

#: cause id → effect ids it can produce.
CAUSES: dict[str, frozenset[str]] = {
    k: frozenset(v)
    for k, v in {
        "loss-scale-init-high": {"fp16-overflow", "loss-scale-collapse", "nonfinite-grad"},
        "fp16-without-loss-scaling": {"fp16-overflow", "nonfinite-grad", "nonfinite-loss"},
        "no-grad-clipping": {"grad-spike", "nonfinite-grad", "loss-spike", "grad-norm-growth"},
        "lr-high-for-batch": {
            "chance-level",
            "loss-spike",
            "grad-spike",
            "clip-saturated",
            "clip-near-threshold",
            "warmup-short",
            "loss-divergence",
            "eval-unstable",
        },
        "warmup-short": {"loss-spike", "grad-spike", "clip-near-threshold"},
        "fp16-overflow": {"loss-scale-collapse", "nonfinite-grad", "nonfinite-loss"},
        "loss-scale-collapse": {"nonfinite-grad", "nonfinite-loss", "chance-level"},
        "grad-spike": {"loss-spike", "nonfinite-grad"},
        "grad-norm-growth": {"clip-saturated", "nonfinite-grad", "eval-unstable"},
        "clip-saturated": {"eval-unstable", "chance-level"},
        "loss-divergence": {"chance-level"},
        "clip-near-threshold": {"eval-unstable", "loss-spike"},
        "nonfinite-grad": {"nonfinite-loss", "chance-level", "loss-divergence"},
        "nonfinite-loss": {"chance-level"},
        "loss-spike": {"scheduler-late", "loss-divergence", "chance-level"},
        "plateau-patience-long": {"scheduler-late", "lr-constant"},
        "patience-conflict": {"scheduler-late", "lr-constant"},
        "lr-zero": {"chance-level"},
        "lr-constant": {"eval-unstable", "overfitting"},
        # issue 13: the causes the doctor tells apart
        "bad-batch": {
            "nonfinite-loss",
            "nonfinite-grad",
            "loss-spike",
            "grad-spike",
            "chance-level",
            "loss-divergence",
        },
        "lr-jump": {
            "loss-spike",
            "grad-spike",
            "nonfinite-loss",
            "nonfinite-grad",
            "loss-divergence",
            "clip-saturated",
            "grad-norm-growth",
            "eval-unstable",
            "chance-level",
        },
        "bad-init": {
            "grad-spike",
            "loss-spike",
            "clip-saturated",
            "nonfinite-grad",
            "nonfinite-loss",
            "chance-level",
        },
        "underfitting": {"chance-level"},
        # a run kept at a fraction of its LR: slow, and its gradients stay large (clipped)
        "warmup-too-long": {"chance-level", "clip-saturated", "warmup-short", "underfitting"},
        # a run stopped after too few optimizer steps, far from learned (its clip findings are
        # not linked: it must not own the step size of a run that was also too hot)
        "too-few-steps": {"chance-level", "underfitting"},
    }.items()
}
CAUSES.update({r.id: _SANITY_EFFECTS[r.effect] for r in SANITY_RULES})


#: effects judged on the whole run (where they show is the run's last evals, not their start)
_WHOLE_RUN = frozenset({"chance-level"})


def stage(finding_id: str) -> int:
    return _STAGE.get(finding_id, _DEFAULT_STAGE)


def _first(f: Finding) -> tuple[float, float]:
    inf = float("inf")
    return (min(f.steps) if f.steps else inf, min(f.epochs) if f.epochs else inf)


def plausible(cause: Finding, effect: Finding) -> bool:
    """Is ``cause → effect`` a known mechanism, in time order?"""
    if effect.id not in CAUSES.get(cause.id, frozenset()):
        return False
    if effect.id in _WHOLE_RUN:
        return True  # judged on the run's end: any earlier or concurrent cause precedes it
    if cause.id == "grad-spike" and effect.id == "loss-spike":
        # the update that follows a huge gradient shows in the loss one (or two) steps later
        return any(0 <= e - g <= 2 for g in cause.steps for e in effect.steps)
    if cause.steps and effect.steps:
        return min(cause.steps) <= min(effect.steps)
    if cause.epochs and effect.epochs:
        return min(cause.epochs) <= min(effect.epochs)
    return True  # a config finding has no steps: it precedes everything


def link(findings: list[Finding]) -> list[tuple[int, int]]:
    """Set ``related`` on both ends of every plausible link; return the ``(cause, effect)`` index pairs."""
    edges: list[tuple[int, int]] = []
    for i, a in enumerate(findings):
        for j, b in enumerate(findings):
            if i != j and plausible(a, b):
                edges.append((i, j))
                if b.id not in a.related:
                    a.related.append(b.id)
                if a.id not in b.related:
                    b.related.append(a.id)
    return edges


def superseded(findings: list[Finding]) -> list[Finding]:
    """``findings`` with each fallback finding demoted to info when another finding at warning or
    above names a cause (see the module docstring)."""
    named = any(
        SEVERITY_ORDER[f.severity] >= 1 and not f.evidence.get("fallback") for f in findings
    )
    if not named:
        return findings
    return [
        replace(f, severity="info", explanation=f"Another finding names the cause. {f.explanation}")
        if f.evidence.get("fallback") and SEVERITY_ORDER[f.severity] >= 1
        else f
        for f in findings
    ]


def order(findings: list[Finding]) -> list[Finding]:
    """Link the findings and return them chain by chain, cause before effect (a fallback finding
    demoted when another names a cause: :func:`superseded`)."""
    findings = superseded(findings)
    edges = link(findings)
    parent = list(range(len(findings)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in edges:
        parent[root(a)] = root(b)
    chains: dict[int, list[Finding]] = {}
    for i, f in enumerate(findings):
        chains.setdefault(root(i), []).append(f)
    groups = [sorted(c, key=lambda f: (stage(f.id), _first(f), f.id)) for c in chains.values()]
    groups.sort(
        key=lambda c: (
            -max(SEVERITY_ORDER[f.severity] for f in c),
            min(_first(f) for f in c),
            min(stage(f.id) for f in c),
        )
    )
    return [f for c in groups for f in c]
