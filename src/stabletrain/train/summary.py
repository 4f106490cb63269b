"""The final run summary (initial/final/best loss and accuracy, epochs, wall time) → summary.json.

Computed from the run directory's own steps.jsonl/evals.jsonl, so a resumed run summarises its
whole history; a repeated step (logged again after a resume) counts once, the latest line winning.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from stabletrain.logs.runlog import EVALS_FILE, STEPS_FILE, atomic_write_text
from stabletrain.records import StepRecord

SUMMARY_FILE = "summary.json"


def read_records(path: Path) -> list[StepRecord]:
    """Records of a JSONL file, latest per step, in step order; a torn last line is ignored."""
    by_step: dict[int, StepRecord] = {}
    if not path.is_file():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = StepRecord.from_json(json.loads(line))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut by a crash
        by_step[rec.step] = rec
    return [by_step[k] for k in sorted(by_step)]


def _finite(values: list[float | None]) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


def _diverged_at(steps: list[StepRecord], evals: list[StepRecord]) -> int | None:
    """The first step of the run's non-finite tail, when it ended with a NaN/inf loss.

    The last step the optimizer took (a skipped step's loss is not the model's) or the last eval
    decides; a run that ended finite after a skipped NaN batch did not diverge.
    """
    taken = [r for r in steps if not r.skipped]
    ended_nan = bool(taken) and not _finite([taken[-1].loss])
    last_eval = evals[-1].eval_loss if evals else None
    if not ended_nan and (last_eval is None or math.isfinite(last_eval)):
        return None
    if not ended_nan:
        return evals[-1].step  # the train loss looked finite, the model it left is not
    first = taken[-1].step
    for r in reversed(taken):
        if _finite([r.loss]):
            break
        first = r.step
    return first


def build_summary(
    run_dir: Path, *, status: str, epochs: int, wall_time: float, **extra: Any
) -> dict[str, Any]:
    steps = read_records(run_dir / STEPS_FILE)
    evals = read_records(run_dir / EVALS_FILE)
    losses = [r.loss for r in steps]
    eval_losses = [r.eval_loss for r in evals]
    eval_accs = _finite([r.eval_accuracy for r in evals])
    finite = _finite(losses)
    diverged_at = _diverged_at(steps, evals)
    if diverged_at is not None and status != "aborted":
        # it ran to its end, but the model it ended with is NaN: "completed" would hide that
        extra = {"diverged_at_step": diverged_at, "stopped_as": status, **extra}
        status = "diverged"
    out: dict[str, Any] = {
        "status": status,
        "steps": len(steps),
        "skipped_steps": sum(1 for r in steps if r.skipped),
        "epochs": epochs,
        "wall_time_s": round(wall_time, 2),
        "initial_loss": losses[0] if losses else None,
        "final_loss": losses[-1] if losses else None,
        "best_loss": min(finite) if finite else None,
        "initial_eval_loss": eval_losses[0] if eval_losses else None,
        "final_eval_loss": eval_losses[-1] if eval_losses else None,
        "best_eval_loss": min(_finite(eval_losses), default=None),
        "initial_accuracy": evals[0].eval_accuracy if evals else None,
        "final_accuracy": evals[-1].eval_accuracy if evals else None,
        "best_accuracy": max(eval_accs, default=None),
        **extra,
    }
    return {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in out.items()
    }


def write_summary(run_dir: Path, summary: dict[str, Any]) -> Path:
    path = run_dir / SUMMARY_FILE
    atomic_write_text(path, json.dumps(summary, indent=2) + "\n")
    return path


def summary_lines(summary: dict[str, Any]) -> list[str]:
    def f(v: Any, pct: bool = False) -> str:
        if v is None:
            return "-"
        return f"{v:.2%}" if pct else f"{v:.4f}"

    s = summary
    status = s["status"]
    if status == "diverged" and s.get("diverged_at_step") is not None:
        status += f" (loss NaN/inf from step {s['diverged_at_step']} to the end)"
    return [
        f"status {status}: {s['epochs']} epochs, {s['steps']} steps "
        f"({s['skipped_steps']} skipped) in {s['wall_time_s']:.1f} s",
        f"train loss   initial {f(s['initial_loss'])}  final {f(s['final_loss'])}  best {f(s['best_loss'])}",
        f"val loss     initial {f(s['initial_eval_loss'])}  final {f(s['final_eval_loss'])}  "
        f"best {f(s['best_eval_loss'])}",
        f"val accuracy initial {f(s['initial_accuracy'], True)}  final {f(s['final_accuracy'], True)}  "
        f"best {f(s['best_accuracy'], True)}",
    ]
