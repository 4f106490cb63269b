"""``training_history.png``: loss + eval loss, accuracy, grad norm with the clip line, and LR.

The four panels the seed postmortems kept asking for (seed 001 diagnosed its spike from exactly
this picture). Read from the run directory's own logs. The loss panel is on a log axis (one
1e6-scaled batch puts a 120,000 loss in a run at 0.1; the peak is labelled when the values span
orders of magnitude) and marks what the guard did, from ``events.jsonl``: skipped steps, the
rollbacks (a dashed line where it acted, a band back to the step it restored) and an abort; a
loss that went NaN/inf on a step the optimizer took is marked along the top edge, since it
cannot be drawn. matplotlib is optional (``[report]`` extra): without it, :func:`plot_history`
returns None and says how to install it.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stabletrain.guard.ranklog import once_per_job
from stabletrain.logs.readers.runlog import read_json_lines
from stabletrain.logs.runlog import EVALS_FILE, EVENTS_FILE, STEPS_FILE
from stabletrain.records import StepRecord
from stabletrain.report.plots import PLOTTABLE, y_scale
from stabletrain.train.summary import read_records

log = once_per_job(logging.getLogger(__name__))
PLOT_FILE = "training_history.png"
#: beyond this many, per-step lines only paint the panel grey
_MAX_LINES = 200


@dataclass
class GuardMarks:
    """What the loss panel marks: the guard's actions and the steps whose loss is not drawable."""

    skipped: list[int] = field(default_factory=list)
    #: (the step the guard acted at, the step it restored)
    rollbacks: list[tuple[int, int | None]] = field(default_factory=list)
    aborts: list[int] = field(default_factory=list)
    #: steps the optimizer took whose loss was NaN/inf (a diverged run's tail)
    nonfinite: list[int] = field(default_factory=list)


def guard_marks(run_dir: Path, steps: list[StepRecord]) -> GuardMarks:
    """The marks of a run dir: skips, rollbacks and aborts from its ``events.jsonl`` (the step
    a rollback acted at is a rollback, not also a skip), non-finite losses from its steps."""
    marks = GuardMarks()
    events = run_dir / EVENTS_FILE
    notes: list[str] = []
    rows = read_json_lines(events, notes) if events.is_file() else []
    skipped: set[int] = set()
    for e in rows:
        step = e.get("step")
        if not isinstance(step, int) or isinstance(step, bool):
            continue
        raw = e.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if e.get("event") == "skip" and data.get("reason") != "rollback":
            skipped.add(step)  # (a batch a rollback dropped before its step is not a step)
        elif e.get("event") == "rollback":
            to = data.get("to_step")
            marks.rollbacks.append((step, to if isinstance(to, int) else None))
        elif e.get("event") == "abort":
            marks.aborts.append(step)
    marks.skipped = sorted(skipped)
    marks.nonfinite = [
        r.step for r in steps if not r.skipped and r.loss is not None and not math.isfinite(r.loss)
    ]
    return marks


def _series(records: list[StepRecord], attr: str) -> tuple[list[int], list[float]]:
    pts = [
        (r.step, v)
        for r in records
        if (v := getattr(r, attr)) is not None and math.isfinite(v) and abs(v) < PLOTTABLE
    ]
    return [s for s, _ in pts], [v for _, v in pts]


def draw_loss(ax: Any, steps: list[StepRecord], evals: list[StepRecord], marks: GuardMarks) -> None:
    """The loss panel: train and eval loss on a log axis, the peak labelled when the values span
    orders of magnitude, and the guard's marks with their counts in the legend."""
    xs, ys = _series(steps, "loss")
    ex, ey = _series(evals, "eval_loss")
    ax.plot(xs, ys, lw=0.8, label="train loss")
    ax.plot(ex, ey, "o-", label="eval loss")
    if all(v > 0 for v in ys + ey):
        ax.set_yscale("log")
    if y_scale(ys + ey) != "linear":
        px, py = max(zip(xs + ex, ys + ey, strict=True), key=lambda p: p[1])
        value = f"{py:,.0f}" if py < 1e9 else f"{py:.3g}"
        # beside the peak, on the side with room (the legend sits top right)
        right = px <= (min(xs + ex) + max(xs + ex)) / 2
        ax.annotate(f"{value} at step {px}", (px, py), xytext=(6 if right else -6, -4),
                    textcoords="offset points", ha="left" if right else "right", va="top",
                    fontsize=8, color="#d62728")  # fmt: skip
    for i, s in enumerate(marks.skipped[:_MAX_LINES]):
        label = f"skipped step ({len(marks.skipped)})" if i == 0 else None
        ax.axvline(s, color="#7f7f7f", alpha=0.5, lw=1, label=label)
    for i, (at, to) in enumerate(marks.rollbacks[:_MAX_LINES]):
        label = f"rollback ({len(marks.rollbacks)})" if i == 0 else None
        ax.axvline(at, color="#d62728", ls="--", lw=1.2, label=label)
        if to is not None and to < at:  # the stretch the rollback undid
            ax.axvspan(to, at, color="#d62728", alpha=0.08, lw=0)
    for i, s in enumerate(marks.aborts):
        ax.axvline(s, color="black", lw=1.5, label="guard abort" if i == 0 else None)
    if marks.nonfinite:
        ax.plot(marks.nonfinite, [1.0] * len(marks.nonfinite), "v", color="#d62728", ms=5,
                transform=ax.get_xaxis_transform(), clip_on=False,
                label=f"NaN/inf loss ({len(marks.nonfinite)})")  # fmt: skip


def plot_history(
    run_dir: Path, *, clip: float | None = None, title: str | None = None
) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot (pip install 'stabletrain[report]')")
        return None
    steps = read_records(run_dir / STEPS_FILE)
    evals = read_records(run_dir / EVALS_FILE)
    fig, axes = plt.subplots(2, 2, figsize=(11, 7))
    (ax_loss, ax_acc), (ax_gn, ax_lr) = axes
    draw_loss(ax_loss, steps, evals, guard_marks(run_dir, steps))
    ax_acc.plot(*_series(steps, "accuracy"), lw=0.8, alpha=0.6, label="train (batch)")
    ax_acc.plot(*_series(evals, "eval_accuracy"), "o-", label="eval")
    ax_gn.plot(*_series(steps, "grad_norm"), lw=0.8, label="grad norm (pre-clip)")
    if clip is not None:
        ax_gn.axhline(clip, color="red", ls="--", lw=1, label=f"clip {clip:g}")
    ax_gn.set_yscale("log")
    ax_lr.plot(*_series(steps, "lr"), lw=1, label="learning rate")
    for ax, name in ((ax_loss, "loss"), (ax_acc, "accuracy"), (ax_gn, "grad norm"), (ax_lr, "LR")):
        ax.set_title(name)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or run_dir.name)
    fig.tight_layout()
    out = run_dir / PLOT_FILE
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
