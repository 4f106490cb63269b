"""Prove a fix on the user's own run: re-train the patched config, diagnose it, compare.

``stabletrain doctor RUN --patch CONFIG -o FIXED --verify`` ends here. For reference-trainer runs
only (a stabletrain run dir, and a FIXED config the trainer loads): FIXED is trained for a bounded
number of steps (``--verify-steps``; default the broken run's steps, at most
:data:`DEFAULT_MAX_STEPS`) with its own seed — the broken run's, since the patch leaves
``run.seed`` alone — into a new run dir, then the doctor reads it like any run. Before and after
are compared at the same step: the findings at warning or above (id and severity), the final train
loss/accuracy and the last eval loss/accuracy at or before that step, and a one-line verdict:

- ``fixed``: the new run has no warning or error, and its quality is not worse;
- ``worse``: the new run diverged where the old did not, or its quality dropped by more than the
  margin (:data:`ACC_MARGIN` accuracy, :data:`LOSS_MARGIN` relative loss);
- ``improved``: quality better by more than the margin, or fewer problems at no loss in quality;
- ``not fixed``: anything else.

Quality is the eval accuracy when both runs have one, else the eval loss, else the train loss.
Limits: a short re-run sees only the start of a run; a problem that shows late (a plateau at
epoch 30) cannot be proven fixed in 300 steps, and the verdict says what it compared.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from stabletrain.errors import ConfigError
from stabletrain.records import SEVERITY_ORDER, StepRecord
from stabletrain.report.model import Report

__all__ = ["Outcome", "Verification", "default_verify_dir", "outcome", "verify"]

#: the re-run's step budget when ``--verify-steps`` is not given
DEFAULT_MAX_STEPS = 300
#: quality changes smaller than these are noise, not a verdict
ACC_MARGIN = 0.02
LOSS_MARGIN = 0.05

Verdict = Literal["fixed", "improved", "not fixed", "worse"]


@dataclass(slots=True)
class Outcome:
    """One run's symptom at a step: problems (id, severity) and its final figures."""

    step: int | None
    problems: list[tuple[str, str]] = field(default_factory=list)
    train_loss: float | None = None
    train_accuracy: float | None = None
    eval_loss: float | None = None
    eval_accuracy: float | None = None
    diverged: bool = False

    def line(self) -> str:
        shown = ", ".join(f"{i} ({s})" for i, s in self.problems) or "no warnings or errors"
        figures = (
            f"train loss {_f(self.train_loss)} acc {_pct(self.train_accuracy)} (last {SMOOTH}), "
            f"eval loss {_f(self.eval_loss)} acc {_pct(self.eval_accuracy)}"
        )
        gone = "; diverged (NaN/inf loss)" if self.diverged else ""
        return f"step {self.step if self.step is not None else '-'}: {figures}{gone}; {shown}"


@dataclass(slots=True)
class Verification:
    run_dir: Path
    steps: int
    before: Outcome
    after: Outcome
    verdict: Verdict
    reason: str
    #: the settings the re-run trains with that differ from the broken run's saved config.yaml
    #: (the patch's own changes, and any drift of the given config from what ran)
    changed: list[str] = field(default_factory=list)
    #: the doctor's report on the re-run (its findings decide the command's exit code)
    report: Report | None = None

    def lines(self) -> list[str]:
        return [
            f"verify: re-trained the patched config for {self.steps} steps in {self.run_dir}",
            f"  changed {'; '.join(self.changed) or 'nothing (same settings as the run)'}",
            f"  before  {self.before.line()}",
            f"  after   {self.after.line()}",
            f"  verdict {self.verdict}: {self.reason}",
        ]

    def to_json(self) -> dict[str, Any]:
        def side(o: Outcome) -> dict[str, Any]:
            return {
                "step": o.step,
                "problems": [{"id": i, "severity": s} for i, s in o.problems],
                "train_loss": o.train_loss,
                "train_accuracy": o.train_accuracy,
                "eval_loss": o.eval_loss,
                "eval_accuracy": o.eval_accuracy,
                "diverged": o.diverged,
            }

        return {
            "run_dir": str(self.run_dir),
            "steps": self.steps,
            "before": side(self.before),
            "after": side(self.after),
            "verdict": self.verdict,
            "reason": self.reason,
            "changed": list(self.changed),
        }


def default_verify_dir(fixed: str | Path) -> Path:
    """``FIXED.yaml`` → ``FIXED-verify/`` beside it."""
    p = Path(fixed)
    return p.with_name(f"{p.stem}-verify")


def verify(
    broken: Report,
    fixed_config: str | Path,
    run_dir: str | Path,
    *,
    steps: int | None = None,
    replace: bool = False,
) -> Verification:
    """Train ``fixed_config`` for ``steps`` into ``run_dir`` and compare it with ``broken``.

    ``replace``: clear a run already in ``run_dir`` (else that is a ConfigError). Raises
    ConfigError when ``broken`` is not a reference-trainer run or the config cannot be trained.
    """
    from stabletrain.doctor import diagnose
    from stabletrain.train.config import load_config
    from stabletrain.train.loop import train
    from stabletrain.train.rundir import prepare_run_dir
    from stabletrain.train.summary import build_summary, write_summary

    if broken.format != "stabletrain":
        raise ConfigError(
            f"--verify re-trains reference-trainer runs only (a stabletrain run dir); "
            f"{broken.source} is {broken.format}"
        )
    done = sum(1 for r in broken.records if r.kind == "train")  # the broken run's steps
    n = steps if steps is not None else min(done or DEFAULT_MAX_STEPS, DEFAULT_MAX_STEPS)
    if n < 1:
        raise ConfigError(f"--verify-steps must be at least 1, got {n}")
    try:
        cfg = load_config(fixed_config)
    except ConfigError as e:
        raise ConfigError(
            f"--verify re-trains with the reference trainer, which cannot load the patched "
            f"config: {e}"
        ) from None
    changed = _changed(Path(str(broken.source)), cfg)
    cfg.train.max_steps = n
    out = Path(run_dir)
    cfg.run.dir = str(out)
    prepare_run_dir(cfg, out, resume=False, overwrite=replace)
    st, _ = train(cfg, out, echo=_quiet)
    summary = build_summary(out, status=st.status or "completed", epochs=st.epoch,
                            wall_time=st.wall_time, name=cfg.run.name)  # fmt: skip
    write_summary(out, summary)
    after_report = diagnose(out)
    # both runs after n steps (the broken run's log may go on further)
    before = outcome(broken, n)
    after = outcome(after_report, n)
    verdict, reason = judge(before, after)
    return Verification(out, n, before, after, verdict, reason, changed, after_report)


def _changed(run: Path, cfg: Any) -> list[str]:
    """``optim.lr (run 3.0, patched 0.1)`` for each setting of ``cfg`` that differs from the
    run dir's saved config (where it runs and for how long aside)."""
    from stabletrain.train.config import load_config
    from stabletrain.train.rundir import config_differences

    saved = run / "config.yaml"
    if not saved.is_file():
        return ["(the run dir has no config.yaml to compare with)"]
    try:
        before = load_config(saved)
    except ConfigError:
        return ["(the run dir's config.yaml is not a trainer config)"]
    diffs = config_differences(before.model_dump(mode="json"), cfg.model_dump(mode="json"))
    return [d.replace("(saved ", "(run ").replace(", now ", ", patched ") for d in diffs]


#: train figures are the mean of the last this many train records (one batch is noise)
SMOOTH = 10


def outcome(report: Report, steps: int | None = None) -> Outcome:
    """The symptom of ``report``'s run after ``steps`` optimizer steps (its end when None).

    The trainer numbers train steps from 0 and logs its evals at the step count: train records
    before ``steps`` and evals up to it. The train loss and accuracy are means over the last
    :data:`SMOOTH` train records (their finite values); a run whose last loss is NaN/inf diverged.
    """
    records: Iterable[StepRecord] = report.records
    train = [r for r in records if r.kind == "train" and (steps is None or r.step < steps)]
    evals = [
        r
        for r in report.records
        if (r.eval_loss is not None or r.eval_accuracy is not None)
        and (steps is None or r.step <= steps)
    ]
    problems: list[tuple[str, str]] = [
        (f.id, str(f.severity))
        for f in report.findings
        if SEVERITY_ORDER[f.severity] >= 1
        and (steps is None or not f.steps or min(f.steps) <= steps)
    ]
    losses = [r.loss for r in train if r.loss is not None][-SMOOTH:]
    accs = [r.accuracy for r in train if r.accuracy is not None][-SMOOTH:]
    ev = evals[-1] if evals else None
    diverged = any(not math.isfinite(x) for x in losses[-1:])
    return Outcome(
        step=train[-1].step if train else None,
        problems=problems,
        train_loss=_mean(losses),
        train_accuracy=_mean(accs),
        eval_loss=ev.eval_loss if ev else None,
        eval_accuracy=ev.eval_accuracy if ev else None,
        diverged=diverged or (ev is not None and _nonfinite(ev.eval_loss)),
    )


def _mean(xs: list[float]) -> float | None:
    finite = [x for x in xs if math.isfinite(x)]
    return sum(finite) / len(finite) if finite else None


def judge(before: Outcome, after: Outcome) -> tuple[Verdict, str]:
    """The verdict and what it compared (see the module docstring)."""
    if after.diverged and not before.diverged:
        return "worse", "the patched run diverged (NaN/inf loss) where the original did not"
    change, what = _quality_change(before, after)
    fewer = len(after.problems) < len(before.problems)
    if before.diverged and not after.diverged:
        change = max(change, 1.0)  # any finite run beats a diverged one
        what = "the original diverged, the patched run did not"
    if change < 0:
        return "worse", what
    if not after.problems and not after.diverged:
        return "fixed", f"no warning or error left; {what}"
    if change > 0 or (fewer and change == 0):
        left = ", ".join(i for i, _ in after.problems)
        return "improved", f"{what}; still: {left}"
    left = ", ".join(i for i, _ in after.problems)
    return "not fixed", f"{what}; still: {left}"


def _quality_change(before: Outcome, after: Outcome) -> tuple[int | float, str]:
    """+1 better, -1 worse, 0 within the margin; and a phrase saying what was compared."""
    pairs = [
        ("eval accuracy", before.eval_accuracy, after.eval_accuracy, True),
        ("eval loss", before.eval_loss, after.eval_loss, False),
        ("train loss", before.train_loss, after.train_loss, False),
    ]
    for name, a, b, higher in pairs:
        if a is None or b is None or _nonfinite(a) or _nonfinite(b):
            continue
        if higher:
            delta = b - a
            shown = f"{name} {_pct(a)} → {_pct(b)}"
            sign = 1 if delta > ACC_MARGIN else -1 if delta < -ACC_MARGIN else 0
        else:
            rel = (a - b) / max(abs(a), 1e-12)
            shown = f"{name} {_f(a)} → {_f(b)}"
            sign = 1 if rel > LOSS_MARGIN else -1 if rel < -LOSS_MARGIN else 0
        return sign, shown
    return 0, "no figure both runs logged"


def _nonfinite(x: float | None) -> bool:
    return x is not None and not math.isfinite(x)


def _f(x: float | None) -> str:
    return "-" if x is None else f"{x:.4g}"


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.1%}"


def _quiet(_msg: str) -> None:
    return None
