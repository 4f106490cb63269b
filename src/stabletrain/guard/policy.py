"""The policy ladder: what the guard does about a bad step.

::

    clean step                      → apply
    isolated spike                  → warn | skip (``spike_action``)
    non-finite loss/grad            → skip (optimizer state untouched)
    fp16 overflow (finite loss)     → skip; the GradScaler backs off (never escalates: it is the
                                      scaler probing its range, but counts toward the abort)
    ``rollback_after`` bad steps within ``escalate_window``
                                    → roll back to the last good snapshot, drop the next M batches
    a rollback soon after another   → also back the LR off by ``lr_backoff_factor`` and re-warm it
                                      over ``lr_rewarm_steps``
    ``max_consecutive_bad`` bad steps in a row, or ``max_rollbacks`` exhausted, or the LR backed
    off below ``min_lr_scale``      → abort with a diagnosis

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

Bad = Literal["nonfinite", "spike", "overflow"]
Verdict = Literal["apply", "warn", "skip", "rollback", "abort"]


@dataclass(slots=True)
class Decision:
    verdict: Verdict
    backoff: bool = False
    reason: str = ""


class Policy:
    """Stateful ladder; ``decide`` is called once per optimizer step."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.tick = 0
        self.consecutive_bad = 0
        self.recent: deque[int] = deque()
        self.rollbacks = 0
        self.last_rollback_tick: int | None = None
        self.lr_scale = 1.0
        self.rewarm_start: int | None = None
        self.backoffs = 0

    def decide(self, bad: Bad | None, *, can_rollback: bool) -> Decision:
        cfg = self.config
        self.tick += 1
        if bad is None:
            self.consecutive_bad = 0
            return Decision("apply")
        self.consecutive_bad += 1
        if bad == "overflow":
            if self.consecutive_bad >= cfg.max_consecutive_bad:
                return Decision("abort", reason=f"{self.consecutive_bad} fp16 overflows in a row")
            return Decision("skip", reason="fp16 overflow")
        self.recent.append(self.tick)
        while self.recent and self.recent[0] <= self.tick - cfg.escalate_window:
            self.recent.popleft()
        if self.consecutive_bad >= cfg.max_consecutive_bad:
            return Decision(
                "abort",
                reason=f"{self.consecutive_bad} bad steps in a row (limit max_consecutive_bad="
                f"{cfg.max_consecutive_bad})",
            )
        base: Verdict = "skip" if bad == "nonfinite" else cfg.spike_action
        escalate = base == "rollback" or len(self.recent) >= cfg.rollback_after
        if not escalate:
            return Decision(base, reason=f"{bad} step")
        recurring = (
            self.last_rollback_tick is not None
            and self.tick - self.last_rollback_tick <= cfg.lr_backoff_window
        )
        self.recent.clear()
        if not can_rollback:
            # no snapshot to go back to: the next best thing is a lower LR
            backoff = self._backoff() if cfg.lr_backoff_factor < 1.0 else False
            if backoff is None:
                return self._abort_lr()
            self.last_rollback_tick = self.tick
            return Decision(
                "skip" if base == "rollback" else base,
                backoff=bool(backoff),
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
        backoff = False
        if recurring and cfg.lr_backoff_factor < 1.0:
            b = self._backoff()
            if b is None:
                return self._abort_lr()
            backoff = b
        return Decision(
            "rollback",
            backoff=backoff,
            reason=f"{cfg.rollback_after} bad steps within {cfg.escalate_window} steps",
        )

    def _backoff(self) -> bool | None:
        """Scale the LR down; None when that would go below ``min_lr_scale``."""
        new = self.lr_scale * self.config.lr_backoff_factor
        if new < self.config.min_lr_scale:
            return None
        self.lr_scale = new
        self.rewarm_start = self.tick
        self.backoffs += 1
        return True

    def _abort_lr(self) -> Decision:
        return Decision(
            "abort",
            reason=f"spikes persist with the LR already backed off to {self.lr_scale:.3g}x "
            f"(min_lr_scale={self.config.min_lr_scale:g})",
        )

    def lr_factor(self) -> float:
        """The multiplier on the schedule's LR for the *next* step: back-off × re-warm ramp."""
        if self.rewarm_start is None or self.config.lr_rewarm_steps <= 0:
            return self.lr_scale
        done = self.tick - self.rewarm_start + 1
        if done >= self.config.lr_rewarm_steps:
            return self.lr_scale
        return self.lr_scale * done / self.config.lr_rewarm_steps

    def state_dict(self) -> dict[str, Any]:
        return {
            "tick": self.tick,
            "consecutive_bad": self.consecutive_bad,
            "recent": list(self.recent),
            "rollbacks": self.rollbacks,
            "last_rollback_tick": self.last_rollback_tick,
            "lr_scale": self.lr_scale,
            "rewarm_start": self.rewarm_start,
            "backoffs": self.backoffs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tick = int(state["tick"])
        self.consecutive_bad = int(state["consecutive_bad"])
        self.recent = deque(int(t) for t in state["recent"])
        self.rollbacks = int(state["rollbacks"])
        self.last_rollback_tick = state["last_rollback_tick"]
        self.lr_scale = float(state["lr_scale"])
        self.rewarm_start = state["rewarm_start"]
        self.backoffs = int(state["backoffs"])
