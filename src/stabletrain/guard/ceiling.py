"""The clip ceiling: a fixed ``max_norm`` that the run itself shows is too low is raised, on
evidence, one notch at a time, and pinned back for good at the first sign of trouble.

Why: a fixed clip at 1.0 (the default, as in HF's Trainer) on a healthy run whose grad norms sit
well above 1 (a regression on unnormalised targets, an LSTM, SGD) engages on every step and
divides the effective LR by the norm: the "clipping that fires on every batch" of the seed
postmortem, caused by the guard itself (``bench/guard_api_probe.py``: SGD ends at MSE 2.21
against 0.11 without the clip). The same saturated clip is also what holds some faulty runs
(too high an LR, no warm-up) in check, so it is never dropped, only raised where the run proves
it can take more, with a way back.

The rule (``ClipCeiling.observe``, once per resolved optimizer step, on the numbers the guard
already read: no extra host sync; the same numbers on every rank, so the same decision):

- **raise** the ceiling x``NOTCH`` (never above the window's median grad norm, nor above a
  pinned value) when, over the last ``window`` applied steps, the clip engaged with a
  coefficient of at most ``1/MIN_RATIO`` (norms at least twice the ceiling) on at least
  ``ENGAGED_SHARE`` of them, and nothing went wrong in that window: no spike, overflow or
  non-finite gradient (a non-finite *loss* is bad data: it neither counts nor resets), no
  rollback, no LR cap or re-warm ramp, the loss not trending away from its best, the recent
  loss no higher than at the window's start, and a rollback target (a confirmed snapshot)
  no older than the window, so a rollback lands just before the raise;
- **pin back** to the value before the raise, and never try above it again, when within the
  ``window // 2`` steps of probation after a raise a rollback happens, the LR gets capped or
  ramped, the loss trends away from its best, a step is skipped for a spike, an overflow or a
  non-finite gradient, or the recent loss ends the probation more than ``LOSS_RISE`` above its
  level at the raise;
- **revert** to the configured ``max_norm``, for good, on a rollback after a probation passed
  (trouble the raised ceiling may have let through).

Every change is a ``clip-ceiling`` event with its evidence ("clip ceiling 1 → 2: engaged on
49/50 steps, median coef 0.08, no instability"). The ceiling is not part of a snapshot: a
rollback must not forget that a raise failed.

Limits: only for ``clip="norm"`` with a ``max_norm``; off without snapshots (no rollback target
to fall back to). On the sync-free path the ceiling changes at the reads, every ``read_every``
steps; the device clips each step with the value last decided.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard
    from stabletrain.guard.outcome import StepOutcome

#: the share of the window's applied steps the clip must have engaged on
ENGAGED_SHARE = 0.9
#: "engaged" means a norm at least this many times the ceiling (a coefficient <= 1/MIN_RATIO)
MIN_RATIO = 2.0
#: one notch: the ceiling is multiplied by this at a raise
NOTCH = 2.0
#: the recent loss ending a probation this much above its level at the raise pins the ceiling
LOSS_RISE = 0.05
#: skip actions that are instability (a skipped non-finite *loss* is bad data, not the clip's)
TROUBLE_ACTIONS = frozenset({"skip_spike", "skip_nonfinite_grad"})

ChangeKind = Literal["raise", "pin", "revert"]


@dataclass(slots=True)
class Quiet:
    """What the other components say about the run this step (read through their public
    accessors by ``after_step``)."""

    #: an LR cap or a re-warm ramp is active (``Policy.lr_cap``, ``Policy.ramping``)
    lr_held: bool
    #: the smoothed loss is above its best by the divergence rule (``DivergenceDetector.above``)
    trending_up: bool
    #: rollbacks so far (``Policy.rollbacks``, monotonic)
    rollbacks: int
    #: the recent clean losses' EMA (nan before the first)
    recent_loss: float
    #: steps since the newest confirmed snapshot was taken; None: none to roll back to
    snapshot_age: int | None


@dataclass(slots=True)
class Change:
    """A change of the ceiling, with its evidence for the log."""

    kind: ChangeKind
    old: float
    new: float
    message: str
    data: dict[str, Any] = field(default_factory=dict)


class ClipCeiling:
    """The fixed clip's current max norm, raised on evidence (see the module docstring)."""

    def __init__(self, base: float | None, window: int) -> None:
        #: the configured ``max_norm`` (None: no fixed clip, nothing to raise)
        self.base = base
        self.window = window
        #: the max norm the fixed clip uses now
        self.limit = base
        #: never raised above this again (a raise failed there); None: no pin yet
        self.pinned: float | None = None
        #: (coef, norm, recent loss) of the applied steps of the current evidence window
        self.steps: deque[tuple[float, float, float]] = deque(maxlen=max(window, 1))
        #: after a raise: the state to judge it against; None: no probation running
        self.probation: dict[str, Any] | None = None
        self.rollbacks_seen = 0
        self.raises = 0

    @property
    def active(self) -> bool:
        """Whether the ceiling may still change (a fixed clip, a window, not reverted)."""
        return self.base is not None and self.window > 0

    def observe(
        self, *, applied: bool, action: str | None, norm: float | None, coef: float | None,
        quiet: Quiet,
    ) -> Change | None:  # fmt: skip
        """One resolved optimizer step; the change to make, if any."""
        if not self.active or self.limit is None:
            return None
        rolled_back = quiet.rollbacks > self.rollbacks_seen
        self.rollbacks_seen = quiet.rollbacks
        if self.probation is not None:
            return self._judge(applied, action, coef, norm, quiet, rolled_back)
        if rolled_back:
            self.steps.clear()
            if self.limit > self.base:  # type: ignore[operator]
                return self._set("revert", self.base, "a rollback after the raise",  # type: ignore[arg-type]
                                 {"evidence": "rollback"})  # fmt: skip
            return None
        if self.pinned is not None and self.limit >= self.pinned:
            return None
        if not applied:
            if action in TROUBLE_ACTIONS:
                self.steps.clear()
            return None  # a non-finite loss (bad data) neither counts nor resets
        if quiet.lr_held or quiet.trending_up or not self._count(coef, norm, quiet):
            self.steps.clear()
            return None
        if len(self.steps) < self.window:
            return None
        return self._maybe_raise(quiet)

    def _count(self, coef: float | None, norm: float | None, quiet: Quiet) -> bool:
        """Add an applied step to the window; False when its numbers are no evidence."""
        if coef is None or norm is None:
            return False
        if not (math.isfinite(norm) and math.isfinite(quiet.recent_loss)):
            return False
        self.steps.append((coef, norm, quiet.recent_loss))
        return True

    def _maybe_raise(self, quiet: Quiet) -> Change | None:
        limit = self.limit
        assert limit is not None
        engaged = sum(1 for c, _, _ in self.steps if c <= 1.0 / MIN_RATIO)
        if engaged < ENGAGED_SHARE * len(self.steps):
            return None
        if quiet.recent_loss > self.steps[0][2]:
            return None  # the loss is not still improving under the clip
        if quiet.snapshot_age is None or quiet.snapshot_age > self.window:
            return None  # no rollback target just before the raise
        median_norm = statistics.median(n for _, n, _ in self.steps)
        new = min(limit * NOTCH, median_norm)
        if self.pinned is not None:
            new = min(new, self.pinned)
        if new <= limit * 1.01:
            return None
        median_coef = statistics.median(c for c, _, _ in self.steps)
        n = len(self.steps)
        evidence = {
            "engaged": engaged, "window": n, "median_coef": median_coef,
            "median_norm": median_norm, "loss": quiet.recent_loss,
            "snapshot_age": quiet.snapshot_age,
        }  # fmt: skip
        self.probation = {"old": limit, "loss": quiet.recent_loss, "steps": 0}
        self.raises += 1
        self.steps.clear()  # the next notch needs a full window at the new ceiling
        why = (
            f"engaged on {engaged}/{n} steps, median coef {median_coef:.3g} (median grad norm "
            f"{median_norm:.3g}), no instability; on probation for {self._probation_len} steps"
        )
        return self._set("raise", new, why, evidence)

    @property
    def _probation_len(self) -> int:
        return max(self.window // 2, 1)

    def _judge(
        self, applied: bool, action: str | None, coef: float | None, norm: float | None,
        quiet: Quiet, rolled_back: bool,
    ) -> Change | None:  # fmt: skip
        """A step of the probation after a raise: pin on trouble, confirm at its end."""
        p = self.probation
        assert p is not None
        trouble: str | None = None
        if rolled_back:
            trouble = "a rollback"
        elif quiet.lr_held:
            trouble = "an LR cap or ramp"
        elif quiet.trending_up:
            trouble = "the smoothed loss climbing away from its best"
        elif not applied and action in TROUBLE_ACTIONS:
            trouble = f"a skipped step ({action})"
        if trouble is None:
            if applied:
                p["steps"] += 1
                self._count(coef, norm, quiet)  # evidence for the next notch, at the new ceiling
            if p["steps"] < self._probation_len:
                return None
            loss = quiet.recent_loss
            if not (loss <= p["loss"] * (1.0 + LOSS_RISE)):
                trouble = f"the recent loss at {loss:.4g}, above {p['loss']:.4g} at the raise"
            else:
                self.probation = None  # passed: its steps stay in the window
                return None
        old = float(p["old"])
        self.probation = None
        self.steps.clear()
        self.pinned = old
        return self._set("pin", old, f"{trouble} within {self._probation_len} steps of the "
                         "raise; never raised above it again", {"evidence": trouble})  # fmt: skip

    def _set(self, kind: ChangeKind, new: float, why: str, data: dict[str, Any]) -> Change:
        old = self.limit
        assert old is not None
        self.limit = new
        if kind == "revert":
            self.pinned = new
        verb = {"raise": "", "pin": " (pinned back)", "revert": " (reverted)"}[kind]
        message = f"clip ceiling {old:.3g} → {new:.3g}{verb}: {why}"
        return Change(kind, old, new, message, {"old": old, "new": new, "kind": kind, **data})

    def state_dict(self) -> dict[str, Any]:
        return {
            "limit": self.limit,
            "pinned": self.pinned,
            "steps": [list(s) for s in self.steps],
            "probation": dict(self.probation) if self.probation is not None else None,
            "rollbacks_seen": self.rollbacks_seen,
            "raises": self.raises,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.limit = state["limit"]
        self.pinned = state["pinned"]
        self.steps = deque(
            (tuple(float(x) for x in s) for s in state["steps"]),  # type: ignore[misc]
            maxlen=max(self.window, 1),
        )
        self.probation = dict(state["probation"]) if state["probation"] is not None else None
        self.rollbacks_seen = int(state["rollbacks_seen"])
        self.raises = int(state["raises"])


def after_step(guard: Guard, outcome: StepOutcome) -> None:
    """Feed one resolved step to ``guard.ceiling``, with what the policy, the divergence rule
    and the snapshots say, and log a change (``clip-ceiling``)."""
    ceiling = guard.ceiling
    if not ceiling.active:
        return
    snap = guard.snapshots.pick(0)
    quiet = Quiet(
        lr_held=guard.policy.lr_cap is not None or guard.policy.ramping,
        trending_up=guard.divergence.above > 0,
        rollbacks=guard.policy.rollbacks,
        recent_loss=guard.recent_loss.value,
        snapshot_age=None if snap is None else guard.step_count - snap.step,
    )
    change = ceiling.observe(
        applied=bool(outcome.applied), action=outcome.action, norm=outcome.grad_norm,
        coef=outcome.clip_coef, quiet=quiet,
    )  # fmt: skip
    if change is not None:
        severity = "info" if change.kind == "raise" else "warning"
        guard.event("clip-ceiling", change.message, severity, change.data)
