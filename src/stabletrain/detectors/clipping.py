"""Is gradient clipping doing its job? ``clip-near-threshold`` and ``clip-saturated``.

Two failure shapes, both from the seed postmortems:

- **near threshold** (seed 000: "gradients hovering around 3.5" with ``max_grad_norm=4``): the
  median pre-clip norm over the second half of the run sits in [0.75, 1.0)× the clip value, so
  the clip almost never engages and offers no protection when a spike comes; the norm is riding
  the ceiling. Fix: lower the clip to about half (4 → 2), so it bounds the update size.
- **saturated** (seed 003: "clipping at 2.0 fires on almost every batch"): more than half the
  steps of the second half of the run are clipped (early clipping while norms settle is normal),
  so the clip is really an LR cap and the optimiser sees only gradient directions. Under Adam (or
  an unnamed optimizer) that is a run too hot: lower the LR. Under plain SGD the clip caps every
  step and stalls progress (a too-tight clip, not a too-high LR): loosen the clip, or drop it;
  the finding says so in ``evidence["direction"] = "progress"`` for the report's change set.

The clip value comes from ``facts["max_grad_norm"]``; without it, it is inferred from clipped
records (``grad_norm × clip_coef`` = the threshold). Norms are kept in a log histogram (global and
per epoch), so any threshold can be applied at ``finish``. Needs ≥ ``min_steps`` finite norms.

A trainer that logs the share of its updates it clipped (fairseq's ``clip=100%``, read into
``metrics["clip_fraction"]`` as a fraction) states the saturation itself, with or without a known
threshold: the mean logged fraction over the second half of the run, above ``saturated_fraction``,
is ``clip-saturated`` too. Each such record already summarises a logging interval of updates;
fewer than ``min_logged`` of them is a note (:func:`~stabletrain.detectors.evidence.too_few`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stabletrain.detectors.bins import Bins, LogHistogram
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import too_few
from stabletrain.detectors.fixes import (
    fmt,
    make_fix,
    nice,
    plain_sgd,
    scale_lr_fix,
    sgd_lr_over_bound,
    user_key,
)
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: the metric a reader fills with the share of updates the trainer clipped (0-1)
CLIP_FRACTION = "clip_fraction"


class ClippingDetector:
    """Grad-norm position relative to the clip threshold, over the whole run."""

    ids: tuple[str, ...] = ("clip-near-threshold", "clip-saturated")

    def __init__(
        self,
        near_band: tuple[float, float] = (0.75, 1.0),
        saturated_fraction: float = 0.5,
        min_steps: int = 20,
        min_logged: int = 5,
    ) -> None:
        self.near_band = near_band
        self.saturated_fraction = saturated_fraction
        self.min_steps = min_steps
        self.min_logged = min_logged
        #: the logged share of updates clipped (``metrics["clip_fraction"]``), per epoch/block
        self.logged = Bins(histogram=False)
        self.hist = LogHistogram()
        self.bins = Bins()
        self.n_coef = 0
        self.n_clipped = 0
        self.inferred_clip: float | None = None

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        cf = record.metrics.get(CLIP_FRACTION)
        if cf is not None and math.isfinite(cf):
            self.logged.add(record.step, record.epoch, cf)
        g = record.grad_norm
        if g is not None and math.isfinite(g) and g > 0:
            self.hist.add(g)
            self.bins.add(record.step, record.epoch, g)
            c = record.clip_coef
            if c is not None and math.isfinite(c):
                self.n_coef += 1
                if c < 1.0 - 1e-6:
                    self.n_clipped += 1
                    self.inferred_clip = g * c
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        g, c = batch.floats("grad_norm"), batch.floats("clip_coef")
        cf = batch.metric(CLIP_FRACTION)
        batch.check_bins()
        i_cf = np.flatnonzero(np.isfinite(cf) & batch.train)
        if i_cf.size:
            self.logged.add_many(batch, i_cf, cf[i_cf])
        idx = batch.finite("grad_norm")
        idx = idx[g[idx] > 0]
        if idx.size == 0:
            return
        vals = g[idx]
        self.hist.add_many(vals)
        self.bins.add_many(batch, idx, vals, batch.objects("grad_norm"))
        coef = c[idx]
        has = np.isfinite(coef)
        self.n_coef += int(has.sum())
        clipped = np.flatnonzero(has & (coef < 1.0 - 1e-6))
        self.n_clipped += int(clipped.size)
        if clipped.size:
            i = int(idx[clipped[-1]])
            self.inferred_clip = batch.objects("grad_norm")[i] * batch.objects("clip_coef")[i]

    def _clip(self, facts: ConfigFacts) -> float | None:
        clip = facts.number("max_grad_norm", positive=True)
        return clip if clip is not None else self.inferred_clip

    def _logged_late(self) -> tuple[float, int] | None:
        """(mean logged clip fraction over the second half of the bins, records in the log)."""
        ordered = self.logged.ordered()
        if not ordered:
            return None
        late = ordered[len(ordered) // 2 :]
        return sum(b.total for b in late) / sum(b.count for b in late), sum(
            b.count for b in ordered
        )

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        clip = self._clip(facts)
        logged = self._logged_late()
        if clip is None or self.hist.n < self.min_steps:
            if logged is None or logged[0] <= self.saturated_fraction:
                return []
            return [too_few(self._saturated_logged(facts, clip, *logged), logged[1],
                            self.min_logged, "logged clip fractions")]  # fmt: skip
        frac = self.hist.fraction_above(clip * 1.0001)
        if self.n_coef >= self.min_steps:
            frac = max(frac, self.n_clipped / self.n_coef)
        # Judge on the second half of the run: norms that start high and settle under the clip
        # (the normal shape) clip early on, which is the clip doing its job.
        ordered = self.bins.ordered()
        late = LogHistogram()
        for b in ordered[len(ordered) // 2 :] if len(ordered) >= 2 else ordered:
            late.merge(b.hist)
        frac_late = late.fraction_above(clip * 1.0001)
        med = late.quantile(0.5) or 0.0
        evidence: dict[str, Any] = {
            "max_grad_norm": clip,
            "median_grad_norm": round(self.hist.quantile(0.5) or 0.0, 4),
            "median_grad_norm_late": round(med, 4),
            "p90_grad_norm": round(self.hist.quantile(0.9) or 0.0, 4),
            "max_grad_norm_seen": round(max(b.max for b in ordered), 4),
            "fraction_clipped": round(frac, 4),
            "fraction_clipped_late": round(frac_late, 4),
            "steps_seen": self.hist.n,
        }
        if logged is not None and logged[1] >= self.min_logged:
            # the trainer's own count of clipped updates is direct evidence
            evidence["logged_clip_fraction_late"] = round(logged[0], 4)
            frac_late = max(frac_late, logged[0])
        key = user_key(facts, "max_grad_norm")
        if frac_late > self.saturated_fraction:
            return [self._saturated(facts, clip, frac_late, med, evidence)]
        lo, hi = self.near_band
        if lo * clip <= med < hi * clip:
            return [self._near(facts, clip, med, key, evidence)]
        return []

    def _saturated(
        self, facts: ConfigFacts, clip: float, frac: float, med: float, ev: dict[str, Any]
    ) -> Finding:
        epochs = [b.key for b in self.bins.ordered() if b.hist.fraction_above(clip) > 0.5]
        loose = nice(max(2.0 * (self.hist.quantile(0.9) or med), 2.0 * clip))
        fixes = saturated_fixes(facts, loose, ev)
        return Finding(
            id="clip-saturated",
            severity="warning",
            title=f"Gradient clipping at {fmt(clip)} fires on {frac:.0%} of late steps",
            explanation=(
                f"The pre-clip gradient norm exceeded max_grad_norm={fmt(clip)} on {frac:.0%} of the "
                f"steps in the second half of the run ({ev['fraction_clipped']:.0%} of all "
                f"{ev['steps_seen']}; median {fmt(med)}, max {fmt(ev['max_grad_norm_seen'])}). "
                "When the clip fires on almost every batch it stops being a safety net and becomes "
                "a cap on the step size: the optimiser only sees the gradient direction, learning "
                "slows, and the growing raw norm (usually a learning rate that is too high) stays "
                "hidden. After the change, the clipped fraction should fall well under half, with "
                "clips only on occasional outliers, and the raw norm should stop growing."
            ),
            epochs=epochs if self.bins.mode == "epoch" else [],
            steps=[] if self.bins.mode == "epoch" else [b.first_step for b in self.bins.ordered()],
            evidence=ev,
            fixes=fixes,
            related=["grad-norm-growth", "lr-constant"],
        )

    def _saturated_logged(
        self, facts: ConfigFacts, clip: float | None, frac: float, n: int
    ) -> Finding:
        """``clip-saturated`` from the log's own clip fraction, the grad norms unknown."""
        ordered = self.logged.ordered()
        where = [b for b in ordered if b.mean > self.saturated_fraction]
        steps, epochs = self.logged.where(where)
        ev: dict[str, Any] = {}
        fixes = saturated_fixes(facts, None if clip is None else nice(2.0 * clip), ev)
        return Finding(
            id="clip-saturated",
            severity="warning",
            title=f"Gradient clipping fires on {frac:.0%} of late updates (the log's clip share)",
            explanation=(
                f"The log reports the share of updates that were clipped: {frac:.0%} on average "
                f"over the second half of the {n} records that log it. When the clip fires on almost every "
                "update it stops being a safety net and becomes a cap on the step size: the "
                "optimiser only sees the gradient direction, learning slows, and a raw norm that "
                "keeps growing (usually a learning rate that is too high) stays hidden. After "
                "the change the logged clip share should fall well under half."
            ),
            steps=steps,
            epochs=epochs,
            evidence={
                **({"max_grad_norm": clip} if clip is not None else {}),
                "logged_clip_fraction_late": round(frac, 4),
                "logged_records": n,
                **ev,
            },
            fixes=fixes,
            related=["grad-norm-growth", "lr-constant"],
        )

    def _near(
        self, facts: ConfigFacts, clip: float, med: float, key: str, ev: dict[str, Any]
    ) -> Finding:
        lo, hi = self.near_band
        ordered = self.bins.ordered()
        where = [b for b in ordered if lo * clip <= (b.hist.quantile(0.5) or 0.0) < hi * clip]
        new = nice(clip / 2)
        late = ev["fraction_clipped_late"]
        # the median is under the clip, so at most half the late steps were clipped: say how
        # often it engaged, not that it never does
        engages = (
            "the clip almost never engages, so it gives no protection when the next spike comes"
            if late < 0.1
            else f"the clip trims {late:.0%} of the late steps and lets the rest through at "
            "nearly its full size, so it neither bounds the update nor stays out of the way"
        )
        return Finding(
            id="clip-near-threshold",
            severity="warning",
            title=f"Gradient norms hover at {fmt(med)}, just under {key}={fmt(clip)}",
            explanation=(
                f"The median gradient norm over the second half of the run is {fmt(med)} "
                f"({med / clip:.0%} of the clip value {fmt(clip)}); {ev['fraction_clipped']:.0%} "
                f"of all steps and {late:.0%} of the late ones were clipped. The norm is riding "
                f"just under the ceiling: {engages}, and the optimiser is taking near-maximal "
                f"steps all the time. Lower the clip to about {fmt(new)} so it bounds the update "
                f"size; afterwards gradient norms should stay below {fmt(new)} with only "
                "occasional clipped steps, and the loss curve should be smoother."
            ),
            epochs=[b.key for b in where] if self.bins.mode == "epoch" else [],
            steps=[] if self.bins.mode == "epoch" else [b.first_step for b in where],
            evidence=ev,
            fixes=[
                make_fix(
                    facts, f"Lower the clip threshold to about half ({fmt(new)})", max_grad_norm=new
                )
            ],
            related=["grad-spike", "warmup-short"],
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "hist": self.hist.state(),
            "bins": self.bins.state_dict(),
            "n_coef": self.n_coef,
            "n_clipped": self.n_clipped,
            "inferred_clip": self.inferred_clip,
            "logged": self.logged.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.hist = LogHistogram.from_state(state["hist"])
        self.bins.load_state_dict(state["bins"])
        self.n_coef = int(state["n_coef"])
        self.n_clipped = int(state["n_clipped"])
        self.inferred_clip = state["inferred_clip"]
        if "logged" in state:
            self.logged.load_state_dict(state["logged"])


def saturated_fixes(facts: ConfigFacts, loose: float | None, ev: dict[str, Any]) -> list[Fix]:
    """The fix for a clip that fires on most steps, by optimizer (sets ``ev["direction"]``).

    Under plain SGD the clip scales every step down: an LR cap that stalls progress, so the fix
    is headroom (a clip above the usual norm, ``loose``) or no clip, never a lower LR — unless
    the LR is above SGD's usual bound for the batch and momentum (``fixes.sgd_lr_over_bound``):
    then the clip caps steps that are too large, and the fix lowers the LR. Under Adam
    the update size ignores the gradient's scale: norms far above the clip on most steps mean
    the run is too hot, and a looser clip would only hide it.
    """
    hot = sgd_lr_over_bound(facts)
    if hot is not None:  # SGD above its usual LR: the clip caps steps that are too large
        lr, bound = hot
        ev["direction"] = "instability"
        fix = make_fix(
            facts,
            f"Lower the learning rate to SGD's usual bound for this batch and momentum "
            f"({fmt(lr)} → {fmt(nice(bound))}): a clip that fires on every step at this LR "
            "caps steps that are too large; a looser clip would let them through",
            lr=nice(bound),
        )
        fix.relative["lr"] = nice(bound) / lr
        return [fix]
    if plain_sgd(facts):
        ev["direction"] = "progress"
        if loose is None:
            first = Fix("Loosen the clip well above the usual gradient norm, or turn it off")
        else:
            first = make_fix(
                facts,
                f"Loosen the clip to {fmt(loose)}, above the usual norm, so it only catches "
                "outliers (under SGD a clip that fires every step caps the step size)",
                max_grad_norm=loose,
            )
        return [first, make_fix(facts, "Or turn clipping off", max_grad_norm=0.0)]
    why = "Lower the learning rate, the usual cause of norms far above the clip"
    return [scale_lr_fix(facts, 0.5, why)]
