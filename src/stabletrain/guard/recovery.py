"""Recovery: the snapshots, when to take them, which one a rollback goes to, and the skip debt.

One owner for the state a rollback needs (the guard composes it; ``rollback.py`` acts through
its public methods):

- the snapshot ladder (``count``): every ``snapshot_every`` clean steps a candidate snapshot is
  captured; it becomes a rollback target only after ``snapshot_confirm_steps`` more clean steps
  (an update's damage shows in the *next* losses, so a copy taken right after a bad update
  would carry it), and is dropped at the first sign of damage (a rollback or an abort; a
  skipped step changed nothing, so it neither confirms nor drops it); none is taken while the
  policy says a bad step was recent;
- the state before the first update (``take_initial``), the target of last resort until a
  snapshot is confirmed (pure fp16 weights under Adam break on the very first update);
- the choice of target (``target``), by the evidence: for a divergence the snapshot with the
  lowest smoothed loss, else the newest, unless rolling back to it already failed twice (then
  one older: the trouble replays from it even at a lower LR), else the initial state;
- the skip debt: batches (or, for a loop without ``guard.batches()``, updates) to drop after a
  rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.snapshots import Snapshot, SnapshotStore


class Recovery:
    """Snapshots and the skip debt of one guard."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.store = SnapshotStore(config.snapshots_kept)
        #: a snapshot waiting for clean steps after it
        self.candidate: Snapshot | None = None
        self.candidate_age = 0
        self.since_snapshot = 0
        #: batches to drop after a rollback (``Guard.batches``, or forced skips without it)
        self.skip_debt = 0

    @property
    def enabled(self) -> bool:
        return self.config.snapshot_every > 0

    def count(
        self, verdict: str, *, quiet: bool, can_capture: bool, capture: Callable[[], Snapshot]
    ) -> None:
        """Count one step toward the next snapshot; capture, confirm or drop the candidate.
        ``quiet``: no bad step recently; ``can_capture``: the live weights are this step's."""
        cfg = self.config
        if not self.enabled:
            return
        if verdict == "skip":
            # harmless: nothing changed; the candidate waits (it is not confirmed by a step
            # that was not taken, nor dropped for a batch that was not applied)
            return
        if verdict != "apply":
            self.candidate = None
            return
        self.since_snapshot += 1
        if self.candidate is not None:
            self.candidate_age += 1
            if self.candidate_age >= cfg.snapshot_confirm_steps:
                self.keep(self.candidate)
                self.candidate = None
        elif (
            can_capture
            and quiet
            and (len(self.store) == 0 or self.since_snapshot >= cfg.snapshot_every)
        ):
            self.candidate = capture()
            self.candidate_age = 0
            self.since_snapshot = 0
            if cfg.snapshot_confirm_steps == 0:
                self.keep(self.candidate)
                self.candidate = None

    def keep(self, snap: Snapshot) -> None:
        """A confirmed snapshot: the newest target, and the best one if its loss is lowest."""
        self.store.add(snap)
        self.store.initial = None  # a confirmed target exists: free the first copy
        self.store.keep_best(snap, snap.guard.get("loss_ema"))

    def take_initial(self, capture: Callable[[], Snapshot]) -> None:
        """Keep the state before the first update (once)."""
        if self.enabled and self.store.initial is None and len(self.store) == 0:
            self.store.initial = capture()

    def reset_initial(self, capture: Callable[[], Snapshot]) -> None:
        """The model was repaired before any snapshot was confirmed (``init-repair``): the
        state of last resort is the repaired one; a candidate taken before is dropped."""
        if self.enabled and len(self.store) == 0:
            self.store.initial = capture()
            self.candidate = None

    def target(self, evidence: str | None = None) -> Snapshot | None:
        """The snapshot a rollback on ``evidence`` goes to (None: none to go to)."""
        if not self.enabled:
            return None
        if evidence == "loss-divergence" and self.store.best is not None:
            return self.store.best
        newest = self.store.pick(0)
        if newest is not None and newest.restores >= 2:
            return self.store.pick(1)
        return newest if newest is not None else self.store.initial

    def restored(self, snap: Snapshot) -> None:
        """``snap`` was loaded: forget the abandoned timeline's snapshots and the candidate."""
        self.store.drop_after(snap.step)
        self.candidate = None
        self.since_snapshot = 0

    def owe(self, batches: int) -> None:
        self.skip_debt = batches

    def pay(self) -> bool:
        """True (and one less owed) when the next batch or update must be dropped."""
        if self.skip_debt > 0:
            self.skip_debt -= 1
            return True
        return False

    def state_dict(self) -> dict[str, Any]:
        return {
            "skip_pending": self.skip_debt,
            "since_snapshot": self.since_snapshot,
            "snapshots": self.store.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.skip_debt = int(state.get("skip_pending", 0))
        self.since_snapshot = int(state.get("since_snapshot", 0))
        if "snapshots" in state:
            self.store.load_state_dict(state["snapshots"])
