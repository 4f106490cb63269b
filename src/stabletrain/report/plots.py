"""Plots for the report: one PNG per panel (loss + eval loss, grad norm, LR, loss scale).

Only panels with data are drawn. A panel whose values span orders of magnitude (one loss spike
to 120,000 in a run at 0.1) is drawn on a log axis with its peak annotated. The grad-norm panel carries the clip line (``max_grad_norm``)
and marks spike steps and non-finite steps — the marks a person draws on a screenshot when
writing a postmortem. Long runs are decimated per pixel column keeping each bucket's min and
max, so a one-step spike in a million-step log stays visible.

matplotlib is an optional extra (``pip install stabletrain[report]``); it is imported lazily
with the Agg backend, so no display is needed.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

from stabletrain.records import StepRecord
from stabletrain.report.model import Report

#: Points per line above which a series is min/max decimated.
MAX_POINTS = 4000
#: values beyond this magnitude cannot be drawn (matplotlib's autoscaling overflows near the
#: float range's edge): they are marked along the top edge with the non-finite ones
PLOTTABLE = 1e150
PANELS = ("loss", "grad_norm", "lr", "loss_scale")
_TITLES = {
    "loss": "Loss",
    "grad_norm": "Gradient norm (pre-clip)",
    "lr": "Learning rate",
    "loss_scale": "AMP loss scale",
}


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # optional extra
        raise ImportError("report plots need matplotlib: pip install 'stabletrain[report]'") from e
    return plt


def series(records: Sequence[StepRecord], attr: str) -> tuple[list[float], list[float]]:
    """``(steps, values)`` of the drawable values of one field (finite, within ``PLOTTABLE``)."""
    xs: list[float] = []
    ys: list[float] = []
    for r in records:
        v = getattr(r, attr)
        if v is not None and math.isfinite(v) and abs(v) <= PLOTTABLE:
            xs.append(float(r.step))
            ys.append(float(v))
    return xs, ys


def decimate(
    xs: list[float], ys: list[float], n: int = MAX_POINTS
) -> tuple[list[float], list[float]]:
    """Keep each bucket's min and max (in step order) so spikes survive downsampling."""
    if len(xs) <= n:
        return xs, ys
    bucket = math.ceil(len(xs) / (n // 2))
    ox: list[float] = []
    oy: list[float] = []
    for i in range(0, len(xs), bucket):
        seg = range(i, min(i + bucket, len(xs)))
        lo = min(seg, key=lambda j: ys[j])
        hi = max(seg, key=lambda j: ys[j])
        for j in sorted({lo, hi}):
            ox.append(xs[j])
            oy.append(ys[j])
    return ox, oy


def _nonfinite_steps(records: Sequence[StepRecord], attr: str) -> list[float]:
    out = []
    for r in records:
        v = getattr(r, attr)
        if v is not None and not (math.isfinite(v) and abs(v) <= PLOTTABLE):
            out.append(float(r.step))
    return out


def available(report: Report) -> list[str]:
    """The panels this report has data for."""
    train = [r for r in report.records if r.kind == "train"]
    have = []
    if any(r.loss is not None for r in train) or any(
        r.eval_loss is not None for r in report.records
    ):
        have.append("loss")
    for attr in ("grad_norm", "lr", "loss_scale"):
        if any(getattr(r, attr) is not None for r in train):
            have.append(attr)
    return have


def render_panels(report: Report, *, dpi: int = 100) -> dict[str, bytes]:
    """PNG bytes per panel name, in :data:`PANELS` order; empty when there is nothing to plot."""
    names = available(report)
    if not names:
        return {}
    plt = _pyplot()
    out: dict[str, bytes] = {}
    for name in names:
        fig, ax = plt.subplots(figsize=(6.4, 3.0), dpi=dpi)
        try:
            draw_panel(ax, name, report)
            ax.set_title(_TITLES[name], loc="left", fontsize=11)
            ax.set_xlabel("step")
            ax.grid(True, alpha=0.3)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(loc="upper right", fontsize=8, frameon=False)
            fig.tight_layout()
            buf = io.BytesIO()
            fig.savefig(buf, format="png")
            out[name] = buf.getvalue()
        finally:
            plt.close(fig)
    return out


#: a panel whose values span more than this ratio is drawn on a log axis: on a linear one a
#: single spike (a loss of 120,000 in a run at 0.1) flattens the rest of the curve to a line
LOG_SPAN = 1e3


def y_scale(values: Sequence[float]) -> str:
    """``"log"`` when the values span orders of magnitude, ``"symlog"`` when they also reach
    zero or below, else ``"linear"``."""
    positive = [v for v in values if v > 0]
    if not positive:
        return "linear"
    span = max(abs(v) for v in values) / min(positive)
    if span <= LOG_SPAN:
        return "linear"
    return "log" if len(positive) == len(values) else "symlog"


def draw_panel(ax: Any, name: str, report: Report) -> None:
    """Draw one panel (one of :data:`PANELS`) of the report onto a matplotlib axis."""
    train = [r for r in report.records if r.kind == "train"]
    if name == "loss":
        xs, ys = decimate(*series(train, "loss"))
        if xs:
            ax.plot(xs, ys, lw=1.0, color="#1f77b4", label="train loss")
        evals = [r for r in report.records if r.eval_loss is not None]
        ex, ey = series(evals, "eval_loss")
        if ex:
            ax.plot(ex, ey, "o-", ms=3, lw=1.2, color="#ff7f0e", label="eval loss")
        _scale_and_annotate_peak(ax, xs + ex, ys + ey)
        _mark_steps(ax, _finding_steps(report, "loss-spike"), "loss spike", "#d62728")
        skipped = [float(r.step) for r in train if r.skipped]
        _mark_steps(ax, skipped, f"skipped step ({len(skipped)})", "#7f7f7f")
        _mark_nonfinite(ax, _nonfinite_steps(train, "loss"), "non-finite loss")
    elif name == "grad_norm":
        xs, ys = decimate(*series(train, "grad_norm"))
        ax.plot(xs, ys, lw=0.9, color="#2ca02c", label="grad norm")
        clip = report.facts.get("max_grad_norm")
        if isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0:
            ax.axhline(float(clip), ls="--", color="#d62728", lw=1.2, label=f"clip {clip:g}")
        if y_scale(ys) == "log":  # fp16 blow-ups span decades
            ax.set_yscale("log")
        _mark_steps(ax, _finding_steps(report, "grad-spike"), "grad spike", "#9467bd")
        _mark_nonfinite(ax, _nonfinite_steps(train, "grad_norm"), "inf/nan grad")
    elif name == "lr":
        xs, ys = decimate(*series(train, "lr"))
        ax.plot(xs, ys, lw=1.2, color="#8c564b", label="lr")
        ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    elif name == "loss_scale":
        xs, ys = decimate(*series(train, "loss_scale"))
        ax.step(xs, ys, where="post", lw=1.2, color="#e377c2", label="loss scale")
        if ys and min(ys) > 0:
            ax.set_yscale("log", base=2)


def _scale_and_annotate_peak(ax: Any, xs: list[float], ys: list[float]) -> None:
    scale = y_scale(ys)
    if scale == "linear":
        return
    ax.set_yscale(scale, **({"linthresh": 1.0} if scale == "symlog" else {}))
    i = max(range(len(ys)), key=lambda j: ys[j])
    value = f"{ys[i]:,.0f}" if abs(ys[i]) < 1e9 else f"{ys[i]:.3g}"
    ax.annotate(
        f"{value} at step {xs[i]:.0f}",
        (xs[i], ys[i]),
        xytext=(-6, -4),  # to the left of the peak: the legend sits top right
        textcoords="offset points",
        ha="right",
        va="top",
        fontsize=8,
        color="#d62728",
    )


def _finding_steps(report: Report, finding_id: str) -> list[float]:
    return [float(s) for f in report.findings if f.id == finding_id for s in f.steps]


def _mark_steps(ax: Any, steps: list[float], label: str, color: str) -> None:
    if not steps:
        return
    for i, s in enumerate(steps[:200]):  # beyond that, vertical lines only paint the panel
        ax.axvline(s, color=color, alpha=0.35, lw=1, label=label if i == 0 else None)


def _mark_nonfinite(ax: Any, steps: list[float], label: str) -> None:
    if not steps:
        return
    # non-finite values cannot be drawn: mark their steps along the top edge instead
    ax.plot(
        steps,
        [1.0] * len(steps),
        "v",
        color="#d62728",
        ms=5,
        transform=ax.get_xaxis_transform(),
        clip_on=False,
        label=f"{label} ({len(steps)})",
    )
