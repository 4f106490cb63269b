"""The policy ladder: what the guard does about a bad step — a pure decision on evidence.

Evidence comes in two kinds. A *harmless* event changed nothing: a skipped step leaves weights,
optimizer state and (restored) BatchNorm buffers as they were, so it never caps the LR or rolls
back; it only counts toward the "the data is all bad" abort. *Damage* is evidence that applied
updates made things worse: weights non-finite or exploded after an update, the loss trending away
from the run's own best, eval getting worse (``damage``)::

    clean step                      → apply
    non-finite loss/grad            → skip (harmless: optimizer state untouched)
    fp16 overflow (finite loss)     → skip; the GradScaler backs off (harmless)
    isolated spike                  → warn | skip (``spike_action``)
    skipped spikes, no damage       → skip (harmless: the weights are those that gave healthy
                                      losses one ordinary update ago); after
                                      ``max_consecutive_bad`` in a row the data's loss level
                                      changed: accept it (``rebase``), never abort on it
    ``rollback_after`` spikes within ``escalate_window``, with evidence the weights are
    damaged: the spikes were applied (``spike_action="warn"``) or followed a rise of the
    scheduled LR (a clean streak long enough that they cannot be recurring clears the count)
                                    → roll back to the last good snapshot, drop the next M batches
    a rollback soon after another, or one whose spike followed a rise of the scheduled LR
                                    → also cap the LR at ``lr_backoff_factor`` x the last LR known
                                      to be stable, re-warming over ``lr_rewarm_steps``
    damage (``damage()``)           → roll back to the snapshot before it began and cap the LR
    ``max_consecutive_bad`` bad steps in a row (the data is all bad), or ``max_rollbacks``
    exhausted, or the LR cap below ``min_lr_scale`` x the first stable LR  → abort

Why skipped spikes alone never roll back: while they are skipped nothing changes, so the weights
the spikes are measured on are the ones that gave a healthy loss on the step before the burst,
moved by one update of ordinary size (clipped, at the LR known to be stable). Such an update
cannot make *every* batch spike; a burst of bad data (a mislabelled shard) does. Rolling back
then throws good progress away (the fault matrix's label-noise burst went back to step 1). Only
evidence that the weights changed for the worse escalates: the LR rose before the burst (the
update was not of ordinary size), the spikes were applied, non-finite or exploded weights
(``damage``), the loss trending away from its best, or the eval getting worse.

Why a cap and not a multiplier on the schedule: a rollback restores the scheduler too, so a
spike caused by the schedule (a ×100 milestone typo, the peak of a warmup) is replayed. Halving a
schedule that has just jumped ×100 leaves it 50x too high; capping at half the LR that was
stable bounds it whatever the schedule does, and hands control back to the schedule once it
decays below the cap.

The ladder is what PaLM's and OPT's teams did by hand and LLM Foundry's ``KillLossSpike`` and
OLMo-core's spike skipping do in part. Decide, then act: this module only decides; the guard acts.
Its counters use a monotonic tick, never the (rewindable) step number, so a rollback cannot undo
the evidence that leads to an abort.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from stabletrain.guard.config import GuardConfig

Bad = Literal["nonfinite", "spike", "overflow", "divergence", "startup"]
Verdict = Literal["apply", "warn", "skip", "rollback", "abort"]


@dataclass(slots=True)
class Decision:
    verdict: Verdict
    backoff: bool = False
    reason: str = ""
    #: the damage behind a rollback or an abort ("nonfinite-weights", "loss-divergence", ...)
    damage: str | None = None
    #: the loss level changed (a long burst of skipped spikes without damage): the spike
    #: baseline must be rebuilt from the new level (the step itself is applied)
    rebase: bool = False


class Policy:
    """Stateful ladder; ``decide`` is called once per optimizer step."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.tick = 0
        self.consecutive_bad = 0
        self.recent: deque[int] = deque()
        self.rollbacks = 0
        self.last_rollback_tick: int | None = None
        #: the guard never steps at a (param group 0) LR above this; None: no cap yet
        self.lr_cap: float | None = None
        #: the stable LR the first back-off started from (``min_lr_scale`` is relative to it)
        self.lr_ref: float | None = None
        self.rewarm_start: int | None = None
        self.backoffs = 0
        #: the cap before the last back-off (for its log line)
        self.cap_before: float | None = None
        #: the tick of the last bad step of any kind (snapshots wait for a quiet stretch)
        self.last_bad_tick: int | None = None
        # bad steps recurring every p steps reach `rollback_after` within the window only when
        # (rollback_after - 1) * p < window, i.e. with fewer clean steps than this between them;
        # a longer clean streak can only follow an isolated burst
        self._reset_after = (
            config.escalate_reset
            if config.escalate_reset is not None
            else max(config.escalate_window // max(config.rollback_after - 1, 1), 1)
        )

    @property
    def recently_bad(self) -> bool:
        """A bad step (of any kind) within ``escalate_window`` steps and fewer clean steps than
        clear the count: too soon to take a snapshot."""
        last = self.last_bad_tick
        if last is None:
            return False
        since = self.tick - last
        return since < self.config.escalate_window and since < self._reset_after

    @property
    def lr_scale(self) -> float:
        """The LR cap as a fraction of the stable LR of the first back-off (1.0: no cap)."""
        if self.lr_cap is None or not self.lr_ref:
            return 1.0
        return self.lr_cap / self.lr_ref

    def decide(
        self,
        bad: Bad | None,
        *,
        can_rollback: bool,
        stable_lr: float = 1.0,
        lr_rose: bool = False,
        damaged: bool = False,
    ) -> Decision:
        """The verdict on this step. ``stable_lr``: the LR known to be stable (the rollback
        target's, or the last clean step's); ``lr_rose``: the scheduled LR rose well above it
        before this bad step, so a replay from the snapshot would replay the cause;
        ``damaged``: other evidence that applied updates made the weights worse (the smoothed
        loss already climbing away from its best)."""
        cfg = self.config
        self.tick += 1
        # every step, not only bad ones: `recent` also says "too soon after a bad step to take
        # a snapshot", and must empty once the window has passed
        while self.recent and self.recent[0] <= self.tick - cfg.escalate_window:
            self.recent.popleft()
        if bad is None:
            self.consecutive_bad = 0
            if self.recent and self.tick - self.recent[-1] >= self._reset_after:
                # healthy training since the last bad step: it was an isolated event (every bad
                # step was skipped), not trouble that recurs; don't let it count toward a rollback
                self.recent.clear()
            return Decision("apply")
        self.consecutive_bad += 1
        self.last_bad_tick = self.tick
        if bad == "overflow":
            if self.consecutive_bad >= cfg.max_consecutive_bad:
                return Decision("abort", reason=f"{self.consecutive_bad} fp16 overflows in a row")
            return Decision("skip", reason="fp16 overflow")
        if bad == "nonfinite":
            # harmless: nothing changed, so no LR cap and no rollback; only the data-abort counts
            if self.consecutive_bad >= cfg.max_consecutive_bad:
                return Decision(
                    "abort",
                    reason=f"{self.consecutive_bad} bad steps in a row (limit "
                    f"max_consecutive_bad={cfg.max_consecutive_bad}), every one a non-finite "
                    "loss or gradient from finite weights",
                )
            return Decision("skip", reason="nonfinite step")
        self.recent.append(self.tick)
        base: Verdict = cfg.spike_action
        # evidence that the weights changed for the worse: applied spikes, or an LR rise
        damaged = damaged or base != "skip" or lr_rose
        if not damaged:
            if self.consecutive_bad >= cfg.max_consecutive_bad:
                # the weights are unchanged since the burst began: the data's loss level moved
                # (a new phase, or a long bad shard); skipping for ever would stop training
                n, self.consecutive_bad = self.consecutive_bad, 0
                self.recent.clear()
                return Decision(
                    "apply",
                    reason=f"{n} loss spikes in a row on unchanged weights (limit "
                    f"max_consecutive_bad={cfg.max_consecutive_bad}): the data's loss level "
                    "changed; accepting it as the new baseline",
                    rebase=True,
                )
            return Decision("skip", reason=f"{bad} step (skipped; no evidence of damage)")
        if self.consecutive_bad >= cfg.max_consecutive_bad:
            return Decision(
                "abort",
                reason=f"{self.consecutive_bad} bad steps in a row (limit max_consecutive_bad="
                f"{cfg.max_consecutive_bad})",
            )
        escalate = base == "rollback" or len(self.recent) >= cfg.rollback_after
        if not escalate:
            return Decision(base, reason=f"{bad} step")
        recurring = (
            self.last_rollback_tick is not None
            and self.tick - self.last_rollback_tick <= cfg.lr_backoff_window
        )
        self.recent.clear()
        can_back_off = cfg.lr_backoff_factor < 1.0
        if not can_rollback:
            # no snapshot to go back to: the next best thing is a lower LR
            if can_back_off and not self._back_off(stable_lr):
                return self._abort_lr()
            self.last_rollback_tick = self.tick
            return Decision(
                "skip" if base == "rollback" else base,
                backoff=can_back_off,
                reason=f"{cfg.rollback_after} bad steps within {cfg.escalate_window}, no snapshot",
            )
        if self.rollbacks >= cfg.max_rollbacks:
            return Decision(
                "abort",
                reason=f"bad steps keep coming after {self.rollbacks} rollbacks (limit "
                f"max_rollbacks={cfg.max_rollbacks})",
            )
        self.rollbacks += 1
        self.last_rollback_tick = self.tick
        backoff = can_back_off and (recurring or lr_rose)
        if backoff and not self._back_off(stable_lr):
            return self._abort_lr()
        why = f"{cfg.rollback_after} bad steps within {cfg.escalate_window} steps"
        if backoff and lr_rose and not recurring:
            why += " right after the scheduled LR rose"
        return Decision("rollback", backoff=backoff, reason=why)

    def damage(self, evidence: str, *, can_rollback: bool, stable_lr: float) -> Decision:
        """The verdict on damage (applied updates made things worse): roll back to the snapshot
        before it began and cap the LR; abort when the rollbacks or the LR are exhausted.
        ``evidence``: what showed it, for the log. Not counted as a step (no tick)."""
        cfg = self.config
        self.recent.clear()
        if can_rollback and self.rollbacks >= cfg.max_rollbacks:
            return Decision(
                "abort",
                reason=f"{evidence}, after {self.rollbacks} rollbacks (limit "
                f"max_rollbacks={cfg.max_rollbacks})",
            )
        can_back_off = cfg.lr_backoff_factor < 1.0
        if can_back_off and not self._back_off(stable_lr):
            return self._abort_lr()
        if not can_rollback:
            return Decision("skip", backoff=can_back_off, reason=evidence + ", no snapshot")
        self.rollbacks += 1
        self.last_rollback_tick = self.tick
        return Decision("rollback", backoff=can_back_off, reason=evidence)

    @property
    def ramping(self) -> bool:
        """The LR is still re-warming (ramping up) after a back-off or a start-up ramp."""
        if self.rewarm_start is None:
            return False
        return self.tick - self.rewarm_start + 1 < self.config.lr_rewarm_steps

    def ramp(
        self,
        evidence: str,
        *,
        cap_at: float | None,
        can_rollback: bool,
        factor: float | None = None,
    ) -> Decision:
        """Start-up instability (``startup.py``): roll back (when there is a state to go to)
        and ramp the LR from ~0 over ``lr_rewarm_steps``; ``cap_at``: the LR the ramp's top
        proved too high at: cap at ``factor`` (default ``lr_backoff_factor``) x it. Counts as
        a rollback."""
        if cap_at is not None and not self._back_off(cap_at, factor):
            cap_at = None  # already at the floor: ramp only (the start-up rule never aborts)
        self.rewarm_start = self.tick
        self.recent.clear()
        if not can_rollback or self.rollbacks >= self.config.max_rollbacks:
            return Decision("skip", backoff=cap_at is not None, reason=evidence,
                            damage="startup-instability")  # fmt: skip
        self.rollbacks += 1
        self.last_rollback_tick = self.tick
        return Decision("rollback", backoff=cap_at is not None, reason=evidence,
                        damage="startup-instability")  # fmt: skip

    def cap_lr(self, lr: float, factor: float) -> tuple[float | None, float]:
        """Lower the cap to ``factor`` x ``lr`` (never raise it; no re-warm): the eval-plateau
        rung. Returns (old cap, new cap)."""
        old = self.cap_before = self.lr_cap
        new = lr * factor if old is None else min(old, lr * factor)
        if self.lr_ref is None:
            self.lr_ref = lr
        self.lr_cap = new
        self.backoffs += 1
        return old, new

    def _back_off(self, stable_lr: float, factor: float | None = None) -> bool:
        """Cap the LR at ``factor`` (default ``lr_backoff_factor``) x the stable LR (or x the
        current cap, if lower). False when that would go below ``min_lr_scale`` x the first
        back-off's stable LR."""
        base = stable_lr if self.lr_cap is None else min(self.lr_cap, stable_lr)
        new = base * (self.config.lr_backoff_factor if factor is None else factor)
        ref = self.lr_ref if self.lr_ref is not None else stable_lr
        if not new > 0 or new < self.config.min_lr_scale * ref:
            return False
        self.cap_before = self.lr_cap
        self.lr_cap, self.lr_ref = new, ref
        self.rewarm_start = self.tick
        self.backoffs += 1
        return True

    def _abort_lr(self) -> Decision:
        return Decision(
            "abort",
            reason=f"spikes persist with the LR already capped at {self.lr_scale:.3g}x its stable "
            f"value (min_lr_scale={self.config.min_lr_scale:g})",
        )

    def lr_factor(self, scheduled_lr: float = 1.0) -> float:
        """The multiplier on the scheduled LR for the *next* step: the cap × the re-warm ramp."""
        cap = self.lr_cap
        factor = 1.0 if cap is None or scheduled_lr <= cap else cap / scheduled_lr
        if self.rewarm_start is None or self.config.lr_rewarm_steps <= 0:
            return factor
        done = self.tick - self.rewarm_start + 1
        if done >= self.config.lr_rewarm_steps:
            return factor
        return factor * done / self.config.lr_rewarm_steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "tick": self.tick,
            "consecutive_bad": self.consecutive_bad,
            "recent": list(self.recent),
            "rollbacks": self.rollbacks,
            "last_rollback_tick": self.last_rollback_tick,
            "lr_cap": self.lr_cap,
            "lr_ref": self.lr_ref,
            "rewarm_start": self.rewarm_start,
            "backoffs": self.backoffs,
            "last_bad_tick": self.last_bad_tick,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tick = int(state["tick"])
        self.consecutive_bad = int(state["consecutive_bad"])
        self.recent = deque(int(t) for t in state["recent"])
        self.rollbacks = int(state["rollbacks"])
        self.last_rollback_tick = state["last_rollback_tick"]
        self.lr_cap = state.get("lr_cap")
        self.lr_ref = state.get("lr_ref")
        self.rewarm_start = state["rewarm_start"]
        self.backoffs = int(state["backoffs"])
        self.last_bad_tick = state.get("last_bad_tick")
