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
  rollback, no LR cap or re-warm ramp, the loss not trending away from its best, and the loss
  level (the median of a few batch losses) no higher than at the window's start. Never within
  the start-up rule's first ``startup_steps`` (they gather evidence only): the start is where a
  run without warm-up needs the clip most, and bigger steps there read as a start-up
  overshoot. At the raise the ceiling copies the weights, optimizer, scaler and the guard's
  statistics (the immediate path; on the sync-free path it needs a confirmed snapshot no older
  than the window instead);
- **pin back** to the value before the raise, and never try above it again, when within the
  probation (``window * PROBATION_SHARE`` applied steps) a rollback happens, the LR gets capped
  or ramped, the loss trends away from its best, a step is skipped for a spike, an overflow or a
  non-finite gradient, or the probation's loss level (the median of its batch losses) ends
  above the level just before the raise (the median of as many) by more than ``LOSS_RISE`` of
  it and more than ``NOISE_Z`` x the run's own batch-loss noise / sqrt(steps). A pin on the
  raise's own trouble (not a rollback or an LR cap, where the guard has acted already) puts
  back the copy taken at the raise: the probation's damage is undone, not only stopped;
- **revert** to the configured ``max_norm``, for good, on a rollback after a probation passed
  (trouble the raised ceiling may have let through).

Every change is a ``clip-ceiling`` event with its evidence ("clip ceiling 1 → 2: engaged on
49/50 steps, median coef 0.08, no instability"). The ceiling is not part of a snapshot: a
rollback must not forget that a raise failed.

Limits: only for ``clip="norm"`` with a ``max_norm``; off without snapshots (no rollback target
to fall back to). The copy taken at a raise is one more CPU copy of the model and optimizer
while a probation runs, and is not in ``state_dict`` (a run resumed mid-probation pins without
restoring). On the sync-free path the ceiling changes at the reads, every ``read_every`` steps;
the device clips each step with the value last decided, and a pin does not restore.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from stabletrain.detectors.robust import diff_noise
from stabletrain.guard import rollback

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard
    from stabletrain.guard.outcome import StepOutcome
    from stabletrain.guard.snapshots import Snapshot

#: the share of the window's applied steps the clip must have engaged on
ENGAGED_SHARE = 0.9
#: "engaged" means a norm at least this many times the ceiling (a coefficient <= 1/MIN_RATIO)
MIN_RATIO = 2.0
#: one notch: the ceiling is multiplied by this at a raise
NOTCH = 2.0
#: the recent loss ending a probation this much above its level at the raise pins the ceiling
LOSS_RISE = 0.05
#: a probation fails when its loss level ends above the level at the raise by more than
#: ``LOSS_RISE`` of it and more than this many (batch-loss noise / sqrt(probation steps)): a
#: level is the median of as many batch losses as the probation has steps, and the batch
#: losses of a throttled run scatter by tens of percent (a 5% bar alone pinned healthy runs)
NOISE_Z = 3.0
#: the probation after a raise, as a share of the window
PROBATION_SHARE = 0.5
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
    #: the ceiling keeps its own copy of the weights at a raise and restores it on a pin (the
    #: immediate path); False (the sync-free path): a raise needs a confirmed snapshot no
    #: older than the window instead
    own_snapshot: bool = False
    #: this step's loss (nan: none, or not finite); the loss level is judged on the median of
    #: the last few of these, not on the lagging EMA (which, right after the fast drop at the
    #: start of a run, sits far above the losses and lets a rise after a raise pass)
    loss: float = math.nan
    #: within the start-up rule's first steps (``GuardConfig.startup_steps``): evidence counts,
    #: no raise (bigger steps there read as a start-up overshoot, and the start is where a run
    #: without warm-up needs the clip most)
    starting: bool = False


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
        #: (coef, norm, loss) of the applied steps of the current evidence window
        self.steps: deque[tuple[float, float, float]] = deque(maxlen=max(window, 1))
        #: after a raise: the state to judge it against; None: no probation running
        self.probation: dict[str, Any] | None = None
        self.rollbacks_seen = 0
        self.raises = 0
        #: the weights, optimizer and guard state at the last raise, while its probation runs
        #: (a pin that is the raise's own trouble restores it); not in ``state_dict``
        self.before_raise: Snapshot | None = None

    def hold(self, snap: Snapshot) -> None:
        """Keep the state taken at a raise, to restore if its probation fails."""
        self.before_raise = snap

    def release(self) -> Snapshot | None:
        """The state taken at the raise (once), or None."""
        snap, self.before_raise = self.before_raise, None
        return snap

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
        if len(self.steps) < self.window or quiet.starting:
            return None
        return self._maybe_raise(quiet)

    def _count(self, coef: float | None, norm: float | None, quiet: Quiet) -> bool:
        """Add an applied step to the window; False when its numbers are no evidence."""
        if coef is None or norm is None:
            return False
        loss = quiet.loss if math.isfinite(quiet.loss) else quiet.recent_loss
        if not (math.isfinite(norm) and math.isfinite(loss)):
            return False
        self.steps.append((coef, norm, loss))
        return True

    @property
    def _k(self) -> int:
        """How many recent losses a loss level is the median of."""
        return max(self.window // 4, 3)

    def _level(self, losses: list[float]) -> float:
        """The loss level of the last ``_k`` of ``losses`` (their median)."""
        return statistics.median(losses[-self._k :])

    def _maybe_raise(self, quiet: Quiet) -> Change | None:
        limit = self.limit
        assert limit is not None
        engaged = sum(1 for c, _, _ in self.steps if c <= 1.0 / MIN_RATIO)
        if engaged < ENGAGED_SHARE * len(self.steps):
            return None
        losses = [x for _, _, x in self.steps]
        level = self._level(losses)
        first = self._level(losses[: self._k])
        if level > first:
            return None  # the loss is not still improving under the clip
        if not quiet.own_snapshot and (
            quiet.snapshot_age is None or quiet.snapshot_age > self.window
        ):
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
            "median_norm": median_norm, "loss": level,
            "snapshot_age": quiet.snapshot_age,
        }  # fmt: skip
        plen = self._probation_len
        ref = statistics.median(losses[-plen:])
        tol = max(LOSS_RISE * abs(ref), NOISE_Z * diff_noise(losses) / math.sqrt(plen))
        evidence["tolerance"] = tol
        self.probation = {"old": limit, "loss": ref, "tol": tol, "steps": 0, "losses": []}
        self.raises += 1
        self.steps.clear()  # the next notch needs a full window at the new ceiling
        why = (
            f"engaged on {engaged}/{n} steps, median coef {median_coef:.3g} (median grad norm "
            f"{median_norm:.3g}), no instability; on probation for {self._probation_len} steps"
        )
        return self._set("raise", new, why, evidence)

    @property
    def _probation_len(self) -> int:
        return max(round(self.window * PROBATION_SHARE), 1)

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
                # evidence for the next notch, at the new ceiling
                if self._count(coef, norm, quiet):
                    p.setdefault("losses", []).append(self.steps[-1][2])
            if p["steps"] < self._probation_len:
                return None
            loss = statistics.median(p["losses"]) if p.get("losses") else quiet.recent_loss
            tol = p.get("tol", LOSS_RISE * abs(p["loss"]))
            if not (loss <= p["loss"] + tol):
                trouble = (
                    f"the loss level at {loss:.4g}, above {p['loss']:.4g} at the raise (+"
                    f"{tol:.3g} allowed)"
                )
            else:
                self.probation = None  # passed: its steps stay in the window
                self.before_raise = None
                return None
        old = float(p["old"])
        self.probation = None
        self.steps.clear()
        self.pinned = old
        # the raise's own trouble is undone with it; after a rollback or an LR cap the guard
        # has already acted on the weights or the LR, and they are left as it chose
        restore = not (rolled_back or trouble == "an LR cap or ramp")
        return self._set("pin", old, f"{trouble} within {self._probation_len} steps of the "
                         "raise; never raised above it again",
                         {"evidence": trouble, "restore": restore})  # fmt: skip

    def _set(self, kind: ChangeKind, new: float, why: str, data: dict[str, Any]) -> Change:
        old = self.limit
        assert old is not None
        self.limit = new
        if kind == "revert":
            self.pinned = new
            self.before_raise = None
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
        self.before_raise = None


def after_step(guard: Guard, outcome: StepOutcome) -> None:
    """Feed one resolved step to ``guard.ceiling``, with what the policy, the divergence rule
    and the snapshots say, and log a change (``clip-ceiling``)."""
    ceiling = guard.ceiling
    if not ceiling.active:
        return
    snap = guard.snapshots.pick(0)
    # the immediate path acts at each step: the ceiling can copy the weights at a raise and
    # put them back on a pin (the sync-free path reviews a window of steps after they ran)
    own = guard.sync_free is False
    quiet = Quiet(
        lr_held=guard.policy.lr_cap is not None or guard.policy.ramping,
        trending_up=guard.divergence.above > 0,
        rollbacks=guard.policy.rollbacks,
        recent_loss=guard.recent_loss.value,
        snapshot_age=None if snap is None else guard.step_count - snap.step,
        own_snapshot=own,
        loss=math.nan if outcome.loss is None else float(outcome.loss),
        starting=guard.step_count < guard.config.startup_steps,
    )
    change = ceiling.observe(
        applied=bool(outcome.applied), action=outcome.action, norm=outcome.grad_norm,
        coef=outcome.clip_coef, quiet=quiet,
    )  # fmt: skip
    if change is None:
        return
    message = change.message
    if change.kind == "raise" and own:
        ceiling.hold(rollback.capture(guard))
    elif change.kind == "pin":
        held = ceiling.release()
        if held is not None and change.data.get("restore"):
            rollback.restore(guard, held, scheduler=False)
            change.data["restored_to"] = held.step
            message += f"; the weights and optimizer state restored to step {held.step} (the raise)"
    severity = "info" if change.kind == "raise" else "warning"
    guard.event("clip-ceiling", message, severity, change.data)
