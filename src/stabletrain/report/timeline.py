"""The guard's actions as a timeline: what it did to the run, step by step.

A run the guard protected looks healthier in its loss curve than it was: the skipped batches,
the rollbacks and the LR caps are what kept it alive, and a reader of the report needs them
(issue 13: "the guard's own rollbacks, LR caps and skipped batches never appear in the report").
The guard writes each action to ``events.jsonl`` (``logs/runlog.py``: ``{"step", "event",
"severity", "message", "data"}``); this module reads those rows back:

- :func:`guard_timeline` — the actions, in order, as ``{"step", "action", "reason"}`` (the
  Report's ``guard_timeline``, JSON key ``"guard_timeline"``). Actions: ``skip``, ``rollback``,
  ``lr-backoff`` (an LR cap), ``lr-reduced`` (the guard lowering the LR; the schedule's own
  changes and the trainer's plateau scheduler are not the guard's), ``abort``,
  ``precision-fallback``, ``optimizer-eps``, ``loss-scale-collapse``, ``init-warning`` and
  ``warn`` (a spike the guard only warned about). Health lines are not actions.
- :func:`timeline_lines` — one line per group of consecutive actions of one kind, for the text
  report ("skip x4 at steps 30, 50, 75, 100: non-finite loss x2, spike x2").
- :func:`guard_findings` — findings with ``source="guard"`` for what only the guard knows: it
  stopped the run (``guard-abort``), rolled it back (``guard-rollback``), or measured the
  initial weights far above Kaiming's scale (``bad-init``, unless the log showed it too). Skips
  need none: the skipped steps are in the log itself and its detectors report them.

Limits: rows that are not objects or lack an ``event`` are ignored (the reader already noted
damaged lines); at most ``MAX_ACTIONS`` actions are kept, with the count of the rest.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

from stabletrain.detectors.init import init_fixes
from stabletrain.records import ConfigFacts, Finding, Fix

#: event name in events.jsonl → action name in the timeline
ACTIONS: dict[str, str] = {
    "skip": "skip",
    "rollback": "rollback",
    "lr-backoff": "lr-backoff",
    "lr-reduced": "lr-reduced",
    "abort": "abort",
    "precision-fallback": "precision-fallback",
    "optimizer-eps": "optimizer-eps",
    "loss-scale-collapse": "loss-scale-collapse",
    "init-warning": "init-warning",
    "spike": "warn",
}
MAX_ACTIONS = 1000


def _is_guard_lr_change(row: dict[str, Any]) -> bool:
    """``lr-reduced`` rows the guard wrote (``data.old``/``new``), not the schedule's routine
    changes (``reason: schedule``) nor the trainer's plateau scheduler (``data.from``/``to``)."""
    data = row.get("data")
    if not isinstance(data, dict) or "new" not in data:
        return False
    return data.get("reason") != "schedule"


def guard_timeline(events: Iterable[Any]) -> list[dict[str, Any]]:
    """The guard's actions in ``events`` (rows of events.jsonl), in order."""
    out: list[dict[str, Any]] = []
    for row in events:
        if not isinstance(row, dict):
            continue
        action = ACTIONS.get(str(row.get("event")))
        if action is None or (action == "lr-reduced" and not _is_guard_lr_change(row)):
            continue
        if len(out) >= MAX_ACTIONS:
            break
        step = row.get("step")
        out.append(
            {
                "step": step if isinstance(step, int) and not isinstance(step, bool) else None,
                "action": action,
                "reason": str(row.get("message", ""))[:500],
            }
        )
    return out


def _kind_of_skip(reason: str) -> str:
    """What a skip's message says it skipped for (the guard writes ``(nonfinite step)``, ``skip_spike``,
    ``dropped after a rollback``)."""
    low = reason.lower()
    if "rollback" in low:
        return "dropped after a rollback"
    if "nonfinite" in low or "non-finite" in low:
        return "non-finite"
    if "spike" in low:
        return "spike"
    return "other"


def timeline_lines(timeline: list[dict[str, Any]]) -> list[str]:
    """One line per run of consecutive actions of the same kind."""
    lines: list[str] = []
    i = 0
    while i < len(timeline):
        j = i
        while j < len(timeline) and timeline[j]["action"] == timeline[i]["action"]:
            j += 1
        group = timeline[i:j]
        action = group[0]["action"]
        steps = [g["step"] for g in group if g["step"] is not None]
        shown = ", ".join(str(s) for s in steps[:10]) + (" ..." if len(steps) > 10 else "")
        where = f" at step{'s' if len(steps) > 1 else ''} {shown}" if steps else ""
        count = f" x{len(group)}" if len(group) > 1 else ""
        if action == "skip":
            kinds: dict[str, int] = {}
            for g in group:
                k = _kind_of_skip(g["reason"])
                kinds[k] = kinds.get(k, 0) + 1
            detail = ", ".join(f"{k} x{n}" if n > 1 else k for k, n in kinds.items())
        else:
            detail = group[-1]["reason"]
        lines.append(f"{action}{count}{where}: {detail}")
        i = j
    return lines


def guard_findings(
    timeline: list[dict[str, Any]],
    facts: ConfigFacts | None = None,
    seen: Collection[str] = (),
) -> list[Finding]:
    """``guard-abort`` / ``guard-rollback`` findings (``source="guard"``) from the timeline, and
    ``bad-init`` from the guard's weight check before the first step (``init-warning``) when the
    log's own detectors (``seen``) did not report it."""
    out: list[Finding] = []
    inits = [a for a in timeline if a["action"] == "init-warning"]
    if inits and "bad-init" not in seen:
        out.append(
            Finding(
                id="bad-init",
                severity="warning",
                title="Bad initialisation: the guard measured weights far above Kaiming's scale",
                explanation=(
                    "Before the first step the guard compared each layer's weight std with "
                    f"sqrt(2/fan_in): {inits[0]['reason']}"
                ),
                steps=[a["step"] for a in inits[:1] if a["step"] is not None],
                evidence={"direction": "instability", "guard": inits[0]["reason"][:300]},
                fixes=init_fixes(facts or ConfigFacts()),
                source="guard",
            )
        )
    rollbacks = [a for a in timeline if a["action"] == "rollback"]
    caps = [a for a in timeline if a["action"] in ("lr-backoff", "lr-reduced")]
    if rollbacks:
        steps = [a["step"] for a in rollbacks if a["step"] is not None]
        out.append(
            Finding(
                id="guard-rollback",
                severity="warning",
                title=f"The guard rolled the run back {len(rollbacks)} time(s)"
                + (f", first at step {steps[0]}" if steps else ""),
                explanation=(
                    "The guard saw damage (non-finite weights, a loss or gradient norm running "
                    "away, or evaluations getting worse) and restored an earlier snapshot"
                    + (f", and capped the learning rate {len(caps)} time(s)" if caps else "")
                    + ": "
                    + "; ".join(a["reason"] for a in rollbacks[:3])
                    + ". The run survived because of it; the findings below say what caused the "
                    "damage, and their fixes keep the next run from needing the rescue."
                ),
                steps=steps,
                evidence={"rollbacks": len(rollbacks), "lr_caps": len(caps)},
                fixes=[
                    Fix(
                        "Apply the change set for the cause; keep the guard on meanwhile.",
                    )
                ],
                source="guard",
            )
        )
    aborts = [a for a in timeline if a["action"] == "abort"]
    if aborts:
        a = aborts[-1]
        out.append(
            Finding(
                id="guard-abort",
                severity="error",
                title=f"The guard stopped the run at step {a['step']}: {a['reason'][:160]}",
                explanation=(
                    "The guard aborts only when skipping and rolling back cannot help: only bad "
                    "data for many steps in a row, or damage that keeps coming back after "
                    f"rollbacks. Its reason: {a['reason']}"
                ),
                steps=[a["step"]] if a["step"] is not None else [],
                evidence={"reason": a["reason"]},
                fixes=[Fix("Apply the change set for the cause, then re-run.")],
                source="guard",
            )
        )
    return out
