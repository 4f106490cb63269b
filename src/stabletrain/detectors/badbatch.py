"""Bad batch or instability? What the steps *before* a non-finite or spiking step say.

Two causes end in the same NaN, and they need opposite fixes:

- **instability** — updates too large for the loss surface (an LR too high, a warm-up that just
  ended, an LR jump). It feeds itself: each update makes the next gradient larger, so the
  gradient norm and the loss climb for a few steps *before* something overflows;
- **a bad batch** — NaN/inf in the inputs, a label out of range, a sample blown up by 1e6, a log
  of 0 in the loss. It breaks one step out of the blue: the steps just before it look like every
  other step. Lowering the LR does nothing for it; skipping the batch (the guard's skip) and
  fixing the data does.

:class:`Onset` keeps the last ``window`` finite losses, gradient norms and LRs, and judges an
event (the first non-finite step of an episode, the first step of a spike) by its lead-up. The
``recent`` (3) values just before the event are compared with the ``window`` values before them
(their median and robust σ = 1.4826·MAD), after setting aside the outliers that end the series
(a bad batch may give one huge finite loss before the NaN: the event began there; one value,
as a second one in a row is an excursion growing):

- gradient norm or loss rising: the median of the recent values is above the reference median by
  more than 3 robust σ — beyond the run's own step-to-step noise (3σ is the usual outlier bound;
  the median of three already ignores one noisy value);
- LR rising into the event: the LR at the event is more than 10 % above the reference window's
  median LR. A constant or decaying schedule never does that; a warm-up that just reached its
  peak, or a jump, does (10 % is well above logging rounding of a constant LR).

Any of these is a lead-up: the event is an instability. None, with at least ``min_ref`` (20)
reference values, is no lead-up: a bad batch. Fewer values (an event in the first steps, a short
excerpt) cannot be judged (``None``) and keep the instability reading.

Limits: a sudden divergence with no visible build-up (an attention-logit blow-up between two
logged steps) reads as a bad batch; a log written every N steps shows the build-up only when it
spans several logged lines. The guard and the doctor judge the same way (the detectors that own
an ``Onset`` feed it record by record or in bulk, to the same state).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable
from typing import Any

from stabletrain.detectors.fixes import make_fix
from stabletrain.detectors.robust import robust_stats
from stabletrain.records import ConfigFacts, Fix

#: reference values needed to judge a lead-up: the spike detector's own warm-up (20 values)
#: before a baseline is trusted; a robust σ from fewer is too rough to call anything "usual"
#: (a 9-line excerpt ending in NaN cannot say whether the NaN came out of the blue)
MIN_REF = 20
#: how far above its own noise a recent median must be to count as rising (robust σ)
RISE_Z = 3.0
#: a value beyond this many robust σ (and 2x the median) is a spike (the spike detector's 6σ)
SPIKE_Z = 6.0
#: an LR this much above the reference window's median is a rise (warm-up end, jump)
LR_RISE = 1.1


class Onset:
    """The last finite ``loss``/``grad_norm``/``lr`` values, and the lead-up judge."""

    def __init__(self, window: int = 24, recent: int = 3, min_ref: int = MIN_REF) -> None:
        self.window, self.recent, self.min_ref = window, recent, min_ref
        n = window + recent
        self.values: dict[str, deque[float]] = {k: deque(maxlen=n) for k in ("loss", "grad", "lr")}

    def push(self, loss: float | None, grad: float | None, lr: float | None) -> None:
        """One train record's values; non-finite and missing ones are left out."""
        for name, v in (("loss", loss), ("grad", grad), ("lr", lr)):
            if v is not None and math.isfinite(v):
                self.values[name].append(v)

    def extend(self, name: str, values: Iterable[float]) -> None:
        """Many finite values of one series, in order (the bulk path: same state as ``push``)."""
        self.values[name].extend(values)

    @property
    def size(self) -> int:
        return self.window + self.recent

    def judge(self, lr_now: float | None) -> dict[str, Any] | None:
        """The lead-up of an event happening now: ``{"lead_up": bool, "reasons": [...],
        "before": {...}}``, or None when too few values came before it to tell."""
        reasons: list[str] = []
        before: dict[str, Any] = {}
        judged = False
        for name, label in (("grad", "gradient norm"), ("loss", "loss")):
            vals = _strip_excursion(list(self.values[name]))
            if len(vals) < self.recent + self.min_ref:
                continue
            judged = True
            ref, recent = vals[: -self.recent], vals[-self.recent :]
            med, std = robust_stats(ref)
            now = statistics.median(recent)
            before[name] = {"recent_median": now, "median": med, "robust_std": std}
            if now > med + RISE_Z * std:
                reasons.append(
                    f"the {label} rose before it (median of the last {self.recent} steps "
                    f"{now:.4g} vs {med:.4g} ± {std:.2g} over the {len(ref)} before)"
                )
            spike = _earlier_spike(ref)
            if spike is not None:
                reasons.append(
                    f"the {label} was already spiking in the {len(ref)} steps before "
                    f"(up to {spike[0]:.4g} vs {spike[1]:.4g} just before it)"
                )
        lrs = list(self.values["lr"])
        if lr_now is not None and math.isfinite(lr_now) and len(lrs) >= self.min_ref:
            ref_lr = statistics.median(lrs[: -self.recent] or lrs)
            before["lr"] = {"now": lr_now, "median": ref_lr}
            if ref_lr > 0 and lr_now > LR_RISE * ref_lr:
                reasons.append(
                    f"the learning rate rose into it ({ref_lr:.3g} → {lr_now:.3g}: a warm-up "
                    "that just ended or a jump)"
                )
        if not judged:
            return None
        return {"lead_up": bool(reasons), "reasons": reasons, "before": before}

    def state_dict(self) -> dict[str, Any]:
        return {k: list(v) for k, v in self.values.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        n = self.size
        self.values = {
            k: deque((float(x) for x in state.get(k, [])), maxlen=n) for k in self.values
        }


def _outlier(value: float, med: float, std: float) -> bool:
    """A spike by the spike detector's own rule: beyond 6 robust σ and above twice the median
    (the ratio keeps a near-constant series' tiny σ from calling noise a spike)."""
    return value > med + SPIKE_Z * std and value > 2.0 * med


def _earlier_spike(ref: list[float], min_prior: int = 5) -> tuple[float, float] | None:
    """The largest value of ``ref`` that is a spike against the values before it in ``ref``
    (``(value, their median)``), or None. Judged against what preceded it, as the spike detector
    does: a run's opening transient, high from its first value and falling, is no spike."""
    best: tuple[float, float] | None = None
    for i in range(min_prior, len(ref)):
        med, std = robust_stats(ref[:i])
        if _outlier(ref[i], med, std) and (best is None or ref[i] > best[0]):
            best = (ref[i], med)
    return best


def _strip_excursion(vals: list[float]) -> list[float]:
    """``vals`` without one outlier at its end: a batch that first gives a huge finite loss and
    then NaN (the weights it poisoned) starts its event one step early; judge what came before
    it. Only one: two outliers in a row are an excursion growing, not one bad batch."""
    if len(vals) > 5:
        med, std = robust_stats(vals[:-1])
        if _outlier(vals[-1], med, std):
            return vals[:-1]
    return vals


def describe_before(verdict: dict[str, Any]) -> str:
    """The steps before an event without a lead-up, in words."""
    parts = []
    b = verdict.get("before", {})
    for name, label in (("loss", "loss"), ("grad", "gradient norm")):
        if name in b:
            parts.append(
                f"{label} {b[name]['recent_median']:.4g} (typical {b[name]['median']:.4g})"
            )
    return ", ".join(parts)


def bad_batch_fixes(
    facts: ConfigFacts | None, steps: list[int], all_skipped: bool = False
) -> list[Fix]:
    """The data cause's fixes: check the batches at those steps; let the guard skip such steps
    (unless every one already was)."""
    shown = ", ".join(str(s) for s in steps[:8]) + (" ..." if len(steps) > 8 else "")
    fixes = [
        Fix(
            f"Check the batches at step(s) {shown} for NaN/inf inputs or labels, out-of-range "
            "labels, empty or extreme samples (assert torch.isfinite(x).all() in the data "
            "pipeline finds them).",
            code="assert torch.isfinite(batch_x).all(), f'bad batch {i}'",
        )
    ]
    if all_skipped:
        return fixes
    if facts is not None and facts.format == "stabletrain":
        # the reference trainer's guard skips non-finite and spiking steps (preset default)
        fixes.append(
            Fix(
                "Let the guard skip such batches (no update from them): guard preset default.",
                {"guard.preset": "default"},
            )
        )
    else:
        fixes.append(
            make_fix(
                facts,
                "Let the stabletrain guard skip non-finite and spiking steps meanwhile.",
                code="guard = stabletrain.Guard(model, optimizer)  # skips non-finite/spike steps",
            )
        )
    return fixes
