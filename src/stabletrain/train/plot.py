"""``training_history.png``: loss + eval loss, accuracy, grad norm with the clip line, and LR.

The four panels the seed postmortems kept asking for (seed 001 diagnosed its spike from exactly
this picture). Read from the run directory's own logs. matplotlib is optional (``[report]``
extra): without it, :func:`plot_history` returns None and says how to install it.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

from stabletrain.guard.ranklog import once_per_job
from stabletrain.logs.runlog import EVALS_FILE, STEPS_FILE
from stabletrain.records import StepRecord
from stabletrain.train.summary import read_records

log = once_per_job(logging.getLogger(__name__))
PLOT_FILE = "training_history.png"


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

    def series(records: list[StepRecord], attr: str) -> tuple[list[int], list[float]]:
        pts = [
            (r.step, v) for r in records if (v := getattr(r, attr)) is not None and math.isfinite(v)
        ]
        return [s for s, _ in pts], [v for _, v in pts]

    ax_loss.plot(*series(steps, "loss"), lw=0.8, label="train loss")
    ax_loss.plot(*series(evals, "eval_loss"), "o-", label="eval loss")
    ax_loss.set_yscale("log")
    ax_acc.plot(*series(steps, "accuracy"), lw=0.8, alpha=0.6, label="train (batch)")
    ax_acc.plot(*series(evals, "eval_accuracy"), "o-", label="eval")
    ax_gn.plot(*series(steps, "grad_norm"), lw=0.8, label="grad norm (pre-clip)")
    if clip is not None:
        ax_gn.axhline(clip, color="red", ls="--", lw=1, label=f"clip {clip:g}")
    ax_gn.set_yscale("log")
    ax_lr.plot(*series(steps, "lr"), lw=1, label="learning rate")
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
