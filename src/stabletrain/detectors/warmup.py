"""``warmup-short``: instability concentrated in the first steps, while the LR ramps up.

Adam's second-moment estimate is poor in the first steps and large-batch training is fragile at
full LR (Goyal et al. 2017, "gradual warmup"; Liu et al. 2020, RAdam): when the spikes, skipped
steps or clipping of a run cluster in its first steps, the warmup is too short for the peak LR.
Seed 000 raised ``warmup_ratio`` 0.05 → 0.1 for that reason.

Rule: an *early window* = the observed LR ramp (first step to where the LR peaks) plus as many
steps again (the fragile moment is reaching the peak), at least 5 % of the run. Events are
non-finite loss/grad, skipped or guarded steps, loss > 2× its running EMA, grad norm > 4× its
running geometric mean, and clipped steps. Fires when ≥ 3 events fall in the window, they are
≥ 50 % of all events, and the early event rate is ≥ 5× the later one. Clipping-only evidence is
``info`` (many healthy runs clip their first steps); spikes/non-finite/skips make it a warning.
Needs ≥ 50 train records. Event steps kept: at most 4096.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.ema import ema_jumps
from stabletrain.detectors.fixes import make_fix, warmup_steps_for
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

_MAX_EVENTS = 4096


class WarmupDetector:
    """Are the run's instabilities concentrated in its first steps?"""

    ids: tuple[str, ...] = ("warmup-short",)

    def __init__(self, min_records: int = 50, min_events: int = 3) -> None:
        self.min_records = min_records
        self.min_events = min_events
        self.n = 0
        self.first_step: int | None = None
        self.last_step = 0
        self.peak_lr = 0.0
        self.ramp_end: int | None = None
        self.ema_loss: float | None = None
        self.ema_log_g: float | None = None
        self.events: list[list[Any]] = []  # [step, severe: bool]
        self.n_events = 0

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        self.n += 1
        if self.first_step is None:
            self.first_step = record.step
        self.last_step = max(self.last_step, record.step)
        lr = record.lr
        if lr is not None and math.isfinite(lr) and lr > self.peak_lr * 1.01:
            self.peak_lr = lr
            self.ramp_end = record.step
        severe, clipped = self._classify(record)
        if severe or clipped:
            self.n_events += 1
            if len(self.events) < _MAX_EVENTS:
                self.events.append([record.step, severe])
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        lr, loss, g = batch.floats("lr"), batch.floats("loss"), batch.floats("grad_norm")
        coef, skipped = batch.floats("clip_coef"), batch.floats("skipped")
        steps = batch.steps
        loss_none, g_none = batch.none("loss"), batch.none("grad_norm")
        skipped_none, action_none = batch.none("skipped"), batch.none("action")
        t = np.flatnonzero(batch.train)
        m = int(t.size)
        if m == 0:
            return
        step_obj = batch.objects("step")
        n0 = self.n
        self.n += m
        if self.first_step is None:
            self.first_step = step_obj[int(t[0])]
        self.last_step = max(self.last_step, step_obj[int(t[np.argmax(steps[t])])])
        self._peaks(batch, t, lr[t])
        # severe: skipped or guarded; then non-finite values, loss jumps, grad-norm jumps
        severe = skipped[t] != 0  # bool(x): NaN is true, None (NaN here) is not
        if skipped_none is not None:
            severe &= ~skipped_none[t]
        severe |= np.ones(m, dtype=bool) if action_none is None else ~action_none[t]
        x = loss[t]
        has = np.ones(m, dtype=bool) if loss_none is None else ~loss_none[t]
        severe |= has & ~np.isfinite(x)
        js = np.flatnonzero(np.isfinite(x))
        xs = x[js]
        self.ema_loss = ema_jumps(
            self.ema_loss,
            xs,
            lambda sl: xs[sl].tolist(),
            js,
            n0,
            severe,
            scale=2.0,
            offset=0.0,
            positive=True,
        )
        x = g[t]
        has = np.ones(m, dtype=bool) if g_none is None else ~g_none[t]
        severe |= has & ~np.isfinite(x)
        js = np.flatnonzero(np.isfinite(x) & (x > 0))
        # np.log may differ from math.log (what update takes) in the last bit: ema_jumps decides
        # on it only where that cannot matter, and takes math.log where it must be exact
        gs = x[js]
        self.ema_log_g = ema_jumps(
            self.ema_log_g,
            np.log(gs),
            lambda sl: list(map(math.log, gs[sl].tolist())),
            js,
            n0,
            severe,
            scale=1.0,
            offset=math.log(4.0),
            positive=False,
        )
        c = coef[t]
        clipped = np.isfinite(c) & (c < 1 - 1e-6)
        ev = np.flatnonzero(severe | clipped)
        self.n_events += int(ev.size)
        room = _MAX_EVENTS - len(self.events)
        for j in ev[: max(room, 0)].tolist():
            self.events.append([step_obj[int(t[j])], bool(severe[j])])

    def _peaks(self, batch: Batch, t: np.ndarray, lr: np.ndarray) -> None:
        """The LR-peak part of ``update``. An LR can only become the peak if it is above every
        LR before it and the current peak (the peak x 1.01 is at least both), so only those
        candidates go through the per-record rule."""
        v = np.where(np.isfinite(lr), lr, -np.inf)
        before = np.concatenate(([-np.inf], np.maximum.accumulate(v)[:-1]))
        cand = np.flatnonzero(v > np.maximum(before, float(self.peak_lr)))
        lr_obj, step_obj = batch.objects("lr"), batch.objects("step")
        for j in cand.tolist():
            i = int(t[j])
            value = lr_obj[i]
            if value > self.peak_lr * 1.01:
                self.peak_lr = value
                self.ramp_end = step_obj[i]

    def _classify(self, r: StepRecord) -> tuple[bool, bool]:
        severe = bool(r.skipped) or r.action is not None
        loss, g = r.loss, r.grad_norm
        if loss is not None:
            if not math.isfinite(loss):
                severe = True
            else:
                if self.ema_loss is not None and self.n > 5 and loss > 2.0 * self.ema_loss > 0:
                    severe = True
                self.ema_loss = loss if self.ema_loss is None else 0.9 * self.ema_loss + 0.1 * loss
        if g is not None:
            if not math.isfinite(g):
                severe = True
            elif g > 0:
                lg = math.log(g)
                if (
                    self.ema_log_g is not None
                    and self.n > 5
                    and lg > self.ema_log_g + math.log(4.0)
                ):
                    severe = True
                self.ema_log_g = lg if self.ema_log_g is None else 0.9 * self.ema_log_g + 0.1 * lg
        clipped = r.clip_coef is not None and math.isfinite(r.clip_coef) and r.clip_coef < 1 - 1e-6
        return severe, clipped

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        if self.n < self.min_records or self.first_step is None or not self.events:
            return []
        first, span = self.first_step, max(1, self.last_step - self.first_step)
        ramp = (self.ramp_end or first) - first
        end = first + max(2 * ramp, math.ceil(0.05 * span))
        early = [e for e in self.events if e[0] <= end]
        late_n = self.n_events - len(early)
        early_steps, late_steps = max(1, end - first + 1), max(1, self.last_step - end)
        if len(early) < self.min_events or len(early) < 0.5 * self.n_events:
            return []
        if late_n and (len(early) / early_steps) < 5 * (late_n / late_steps):
            return []
        severe = any(e[1] for e in early)
        fixes = [self._fix(facts, end - first, span + 1)]
        return [
            Finding(
                id="warmup-short",
                severity="warning" if severe else "info",
                title=f"{len(early)} of {self.n_events} unstable steps fall in the first {end - first + 1} steps",
                explanation=(
                    f"{len(early)} of the run's {self.n_events} unstable steps (spikes, non-finite "
                    f"or skipped steps, clipping) happen by step {end}"
                    + (
                        f", while the LR ramps up to {self.peak_lr:.3g} (peak at step {self.ramp_end})"
                        if ramp > 0
                        else ", with no LR warmup at all"
                    )
                    + ". Early on, Adam's second-moment estimates are still poor and the weights "
                    "are far from a stable region, so reaching the full learning rate too soon "
                    "produces exactly this burst. A longer warmup lets the optimizer calibrate "
                    "first; afterwards the first steps should be as calm as the rest of the run."
                ),
                steps=[int(e[0]) for e in early[:50]],
                evidence={
                    "early_window_end": end,
                    "early_events": len(early),
                    "total_events": self.n_events,
                    "lr_ramp_steps": ramp,
                    "severe": severe,
                },
                fixes=fixes,
                related=["loss-spike", "grad-spike", "clip-near-threshold"],
            )
        ]

    @staticmethod
    def _fix(facts: ConfigFacts, window: int, span: int) -> Fix:
        """A longer warm-up, never more than a fifth of the run (``warmup_steps_for``)."""
        ratio, steps = facts.get("warmup_ratio"), facts.get("warmup_steps")
        if isinstance(ratio, (int, float)) and ratio > 0:
            return make_fix(
                facts, "Warm up twice as long", warmup_ratio=min(0.2, max(0.1, round(2 * ratio, 3)))
            )
        if isinstance(steps, (int, float)) and steps > 0:
            want = warmup_steps_for(facts, max(2 * steps, window), span)
            if want <= steps:  # already a fifth of the run or more: longer keeps the LR low
                return Fix(
                    f"The warm-up ({steps:g} steps) already covers a fifth of the run or more; "
                    "a longer one would keep the LR low for most of it"
                )
            return make_fix(facts, "Warm up longer", warmup_steps=want)
        return make_fix(
            facts,
            "Add a linear LR warmup over the unstable stretch",
            warmup_steps=warmup_steps_for(facts, max(100, window), span),
        )

    def state_dict(self) -> dict[str, Any]:
        keys = (
            "n",
            "first_step",
            "last_step",
            "peak_lr",
            "ramp_end",
            "ema_loss",
            "ema_log_g",
            "n_events",
        )
        s: dict[str, Any] = {k: getattr(self, k) for k in keys}
        s["events"] = [list(e) for e in self.events]
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = dict(state)
        self.events = [list(e) for e in s.pop("events")]
        for k, v in s.items():
            setattr(self, k, v)
