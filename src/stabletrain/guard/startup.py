"""Start-up protection: a run whose first updates blow up at full LR gets a warm-up from the guard.

A transformer or an RNN started at its full LR with no warm-up often explodes on its very first
updates: the loss jumps *above the value it started from* (the fault matrix's LSTM at Adam 0.2:
4.55 → 8.4 after one update), then limps back to a plateau above what a warm-up reaches. No
spike rule can judge those steps (no baseline exists yet), and clipping bounds the gradient, not
Adam's per-weight step. A healthy run's loss never climbs above its first value: it falls from
the untrained level (every stable config of the matrix, four families x three seeds).

The rule, over the first ``startup_steps`` steps::

    the smoothed clean loss (EMA, span ``SPAN``) > (1 + startup_rise) x the first finite loss
    (a batch more than ``OUTLIER`` x the first is the data's, a 1e6-scaled file, left to the
    spike rule, and not smoothed in; an LR blow-up climbs 1.3-2.5x and stays there; the
    smoothing keeps the batch-to-batch jitter of a healthy noisy run from firing it)
        1st time → roll back to the state before the first update (or the newest snapshot) and
                   ramp the LR from ~0 over ``lr_rewarm_steps`` steps (the warm-up the config
                   lacked) to at most ``lr_backoff_factor`` x the LR the damage appeared at:
                   that LR is a ceiling from then on (the ramp never climbs back to the LR
                   that blew up); logged as an ``lr-ramp`` event naming both
        again, or the smoothed loss rising ``RAMP_RISE`` above its lowest while the ramp
        climbs (the LR range test's "the loss turns up here")
                 → the ramp's top is too high: cap the LR at ``lr_backoff_factor`` x the LR
                   that step ran at, and ramp to the cap
        after ``startup_max`` firings → left to the other rules

A firing is acted on only when the updates can have caused the rise: the weights moved by at
least ``STARTUP_MOVED`` (10%) of their norm since the rollback target (``verdict.py``). An LR
blow-up moves them 30-190% in a few steps; a healthy batch-1 run 1-3% over 30 steps, whose
single first loss can be far below its typical one (a firing there is the first loss's luck:
``not_the_updates`` takes the smoothed loss as the reference instead).

The overshoot rule (the *early best*): a transformer started at too high an LR often does not
climb above its first loss at all. It falls fast for a few steps, then the loss jumps back up
and stalls at the unigram level (the fault matrix's GPT at AdamW 3e-2, no warm-up: 4.48 → 2.91
in 5 steps, 3.77 at step 6, then 3.0-3.3 for 200 steps), while the updates throw away the
initialisation: the weights are 140% of their initial norm away from it after 5 updates and
240% after 20. So, before any firing, within the same window::

    the smoothed clean loss > (1 + EARLY_RISE) x its own lowest so far (the updates stopped
    paying off; checked at most every CHECK_EVERY steps)
        and the weights moved >= OVERSHOOT_MOVED (1.5) x their norm since the state before the
        first update (``verdict.py``: the init is gone, not refined)
        → the same rollback and ramp as the first firing above, to a ceiling of
          HEALTHY_MOVED / moved x the LR of the damage (``ceiling_factor``; at most
          ``lr_backoff_factor`` x it)

A healthy start refines its init: every stable config of the matrix (five families, seven
references, batch 1 to 256, SGD and AdamW) moves its weights by at most 50% of their norm in
the first 60 steps, and a GPT at 1e-2 without warm-up (it trains: 0.41-0.43) by 82% after 20
steps and about 100% after 50. Without that evidence the rise is jitter and the check is
forgotten (``not_the_updates``).

It never slows a healthy start: without the evidence it does nothing. A pure decision with its
own state; the guard acts on it (``verdict.py``).
"""

from __future__ import annotations

import math
from typing import Any, Literal

from stabletrain.detectors.divergence import Ema

StartupAction = Literal["ramp", "cap"]
#: during the start-up ramp, a smoothed loss this far above its lowest says the LR passed the
#: highest one the run can take
RAMP_RISE = 0.1
#: a start-up loss this many times the first is an outlier batch, not smoothed in
OUTLIER = 4.0
#: the span of the smoothed start-up loss
SPAN = 5
#: a first-loss firing is the updates' doing only when they moved the weights by at least this
#: fraction of their norm since the rollback target (an LR blow-up moves them 30-190% in a few
#: steps; a healthy batch-1 start 1-3% over 30 steps)
STARTUP_MOVED = 0.1
#: the overshoot rule: a smoothed loss this far above its own lowest asks for the weight check
EARLY_RISE = 0.05
#: ... which needs the weights this far (x their norm) from the state before the first update
OVERSHOOT_MOVED = 1.5
#: ... and its ceiling: the LR x HEALTHY_MOVED / how far the weights moved (the most any stable
#: config of the fault matrix moved them in its first 60 steps: 50% of their norm)
HEALTHY_MOVED = 0.5
#: ... at most every this many steps (each check reads every weight once)
CHECK_EVERY = 5
#: which rule fired: the first loss exceeded, or the early best given up with the init gone
StartupRule = Literal["first-loss", "early-best"]


class StartupWatch:
    """The first loss, how often the start-up rule fired, and its window."""

    def __init__(self, steps: int, rise: float, max_fires: int = 3) -> None:
        self.steps = steps
        self.rise = rise
        self.max_fires = max_fires
        self.first: float | None = None
        self.fires = 0
        #: the smoothed clean start-up loss
        self.ema = Ema(SPAN)
        #: the last loss judged (the evidence of a firing)
        self.last = math.nan
        #: the lowest smoothed loss during the current ramp (None: no ramp watched)
        self.ramp_low: float | None = None
        #: the lowest smoothed start-up loss (the early best) and the step of the last check
        self.low: float | None = None
        self.checked_at = -CHECK_EVERY
        #: the rule of the last firing
        self.rule: StartupRule = "first-loss"
        #: how far the weights had moved (x their norm) when an overshoot firing was checked
        #: (``verdict.overshoot_confirmed``; read by the same step's decision, not saved)
        self.moved: float | None = None

    def observe(self, step: int, loss: float | None) -> StartupAction | None:
        """Judge a clean step's loss at ``step`` (the guard's step count)."""
        if loss is None or not math.isfinite(loss) or self.steps <= 0:
            return None
        self.last = loss
        if self.first is None:
            self.first = loss
            return None
        if step >= self.steps or self.fires >= self.max_fires:
            return None
        if self.first <= 0 or loss > OUTLIER * self.first:
            return None
        if self.ema.n == 0:
            self.ema.add(self.first)
        smoothed = self.ema.add(loss)
        if smoothed <= self.first * (1.0 + self.rise):
            return self._early_best(step, smoothed)
        self.last = smoothed
        self.ema = Ema(SPAN)  # after a firing, judged afresh
        self.fires += 1
        self.rule, self.low = "first-loss", None
        return "ramp" if self.fires == 1 else "cap"

    def _early_best(self, step: int, smoothed: float) -> StartupAction | None:
        """The overshoot rule, before any firing: the smoothed loss gave up its early best."""
        if self.fires:
            return None
        if self.low is None or smoothed < self.low:
            self.low = smoothed
            return None
        if smoothed <= self.low * (1.0 + EARLY_RISE) or step - self.checked_at < CHECK_EVERY:
            return None
        self.checked_at = step
        self.last = smoothed
        self.fires += 1
        self.rule = "early-best"
        return "ramp"

    def ceiling_factor(self, moved: float | None, backoff: float) -> float:
        """The ramp's ceiling as a share of the LR the damage ran at: ``backoff``
        (``lr_backoff_factor``); for the overshoot rule, lower in proportion to how far the
        weights overshot: ``HEALTHY_MOVED / moved`` (the distance an update travels is
        proportional to its LR under Adam, and to the LR times the gradient under SGD: the
        ceiling is the LR at which the weights would have moved only as far as the fastest
        healthy start of the fault matrix)."""
        if self.rule != "early-best" or moved is None or not moved > 0:
            return backoff
        return min(backoff, HEALTHY_MOVED / moved)

    def checked(self, moved: float | None) -> bool:
        """Record the weight check of an overshoot firing; whether it confirms the firing (the
        weights moved ``OVERSHOOT_MOVED`` x their norm or more). Otherwise the rise was jitter
        and the firing is forgotten."""
        self.moved = moved
        if moved is not None and moved >= self.moved_needed:
            return True
        self.not_the_updates()
        return False

    @property
    def moved_needed(self) -> float:
        """How far the weights must have moved (x their norm) for the last firing to be the
        updates' doing."""
        return OVERSHOOT_MOVED if self.rule == "early-best" else STARTUP_MOVED

    def observe_ramp(self, ramping: bool, smoothed: float) -> StartupAction | None:
        """While the start-up ramp climbs: "cap" when the smoothed loss turns up by
        ``RAMP_RISE`` from its lowest (the LR just passed what the run can take)."""
        if not ramping or self.fires != 1:  # only the first ramp, from the start, is watched
            self.ramp_low = None
            return None
        if not math.isfinite(smoothed):
            return None
        if self.ramp_low is None or smoothed < self.ramp_low:
            self.ramp_low = smoothed
            return None
        if smoothed <= self.ramp_low * (1.0 + RAMP_RISE):
            return None
        self.fires += 1
        self.last, self.ramp_low = smoothed, None
        return "cap"

    def not_the_updates(self) -> None:
        """The last firing was not acted on (the updates barely moved the weights): undo its
        count and, for the rule on the first loss, take the smoothed loss as the reference
        (the first loss was not a typical one)."""
        self.fires -= 1
        if self.rule == "first-loss" and self.fires == 0 and math.isfinite(self.last):
            self.first = max(self.first or 0.0, self.last)
        self.ramp_low = None

    def evidence(self, loss: float) -> str:
        """The firing's evidence, for the log."""
        first = self.first or 0.0
        if self.rule == "early-best":
            low = self.low or 0.0
            return (
                f"start-up overshoot: the smoothed loss {loss:.4g} gave up its early best "
                f"{low:.4g} ({loss / low if low else math.inf:.3g}x; limit {1 + EARLY_RISE:g}x)"
            )
        return (
            f"start-up instability: the smoothed loss {loss:.4g} is {loss / first:.3g}x the first loss "
            f"{first:.4g} (a healthy run only falls from it; limit {1 + self.rise:g}x)"
        )

    def state_dict(self) -> dict[str, Any]:
        return {"first": self.first, "fires": self.fires, "ramp_low": self.ramp_low,
                "ema": self.ema.state_dict(), "low": self.low, "checked_at": self.checked_at,
                "rule": self.rule}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first = state.get("first")
        self.fires = int(state.get("fires", 0))
        self.ramp_low = state.get("ramp_low")
        if "ema" in state:
            self.ema.load_state_dict(state["ema"])
        self.low = state.get("low")
        self.checked_at = int(state.get("checked_at", -CHECK_EVERY))
        self.rule = "early-best" if state.get("rule") == "early-best" else "first-loss"
