"""In-memory snapshots for rollback: model, optimizer, scaler, scheduler, RNG and guard state.

What PaLM's team did by hand after a loss spike (restart from a checkpoint ~100 steps earlier and
skip a few hundred batches), done in memory: every K clean steps the guard copies the training
state to CPU and keeps the last N. A copy becomes a rollback target only after the next few steps
were clean too (the guard holds it as a candidate until then): an update's damage shows in the
*next* losses, so a copy taken right after a bad update would carry that update. Restoring loads copies (never the stored tensors themselves:
``Optimizer.load_state_dict`` would alias them and the next step would corrupt the snapshot).

Limits: a snapshot costs one copy of the weights and the optimizer state in host memory (3x the
model for Adam); sharded (FSDP) state is snapshotted per rank as the local shards.
"""

from __future__ import annotations

import copy
import random
from collections import deque
from dataclasses import dataclass
from typing import Any

import torch


def to_cpu(obj: Any) -> Any:
    """A deep copy of ``obj`` with every tensor cloned to CPU."""
    if isinstance(obj, torch.Tensor):
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_cpu(v) for v in obj)
    return copy.deepcopy(obj)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    try:
        import numpy as np

        state["numpy"] = np.random.get_state()
    except ImportError:  # numpy is a dependency, but the guard does not need it
        pass
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "numpy" in state:
        import numpy as np

        np.random.set_state(state["numpy"])


@dataclass(slots=True)
class Snapshot:
    """One saved training state (all tensors on CPU)."""

    step: int
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scaler: dict[str, Any] | None
    scheduler: dict[str, Any] | None
    rng: dict[str, Any]
    guard: dict[str, Any]
    restores: int = 0
    """How many times this snapshot was rolled back to (a twice-failed one is passed over)."""


class SnapshotStore:
    """The last ``keep`` snapshots, newest last."""

    def __init__(self, keep: int = 2) -> None:
        self.keep = keep
        self.snapshots: deque[Snapshot] = deque(maxlen=keep)
        #: the state before the first update: the target when no snapshot was kept yet
        self.initial: Snapshot | None = None
        #: the kept snapshot with the lowest smoothed train loss (the target of a divergence)
        self.best: Snapshot | None = None
        #: the weights of the best evaluation (the target of an eval rollback)
        self.best_eval: Snapshot | None = None

    def keep_best(self, snap: Snapshot, score: float | None) -> None:
        """Keep ``snap`` as ``best`` when its ``score`` (lower is better) beats the best's."""
        if score is None:
            return
        old = self.best.guard.get("score") if self.best is not None else None
        if old is None or score <= old:
            snap.guard["score"] = score
            self.best = snap

    @staticmethod
    def capture(
        step: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any = None,
        scheduler: Any = None,
        guard_state: dict[str, Any] | None = None,
    ) -> Snapshot:
        """A snapshot of the live objects, not yet kept (see ``add``)."""
        # host sync: copying device tensors to CPU waits for them (a snapshot step only)
        return Snapshot(
            step=step,
            model=to_cpu(model.state_dict()),
            optimizer=to_cpu(optimizer.state_dict()),
            scaler=to_cpu(scaler.state_dict()) if scaler is not None else None,
            scheduler=to_cpu(scheduler.state_dict()) if scheduler is not None else None,
            rng=rng_state(),
            guard=copy.deepcopy(guard_state or {}),
        )

    def add(self, snap: Snapshot) -> Snapshot:
        """Keep ``snap`` as the newest (the oldest kept is dropped beyond ``keep``)."""
        self.snapshots.append(snap)
        return snap

    def pick(self, back: int = 0) -> Snapshot | None:
        """The newest snapshot (``back=0``) or an older one; the oldest kept if ``back`` is too far."""
        if not self.snapshots:
            return None
        return self.snapshots[max(len(self.snapshots) - 1 - back, 0)]

    @staticmethod
    def restore(
        snap: Snapshot,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: Any = None,
        scheduler: Any = None,
    ) -> None:
        """Load ``snap`` into the live objects (copies: the snapshot stays reusable)."""
        snap.restores += 1
        model.load_state_dict(snap.model)  # copies into the existing parameters
        optimizer.load_state_dict(to_cpu(snap.optimizer))
        if scaler is not None and snap.scaler is not None:
            scaler.load_state_dict(copy.deepcopy(snap.scaler))
        if scheduler is not None and snap.scheduler is not None:
            scheduler.load_state_dict(copy.deepcopy(snap.scheduler))
        set_rng_state(snap.rng)

    def drop_after(self, step: int) -> None:
        """Forget snapshots newer than ``step`` (they belong to a timeline that was rolled back)."""
        while self.snapshots and self.snapshots[-1].step > step:
            self.snapshots.pop()
        if self.best is not None and self.best.step > step:
            self.best = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "keep": self.keep,
            "snapshots": [_as_dict(s) for s in self.snapshots],
            "initial": _as_dict(self.initial) if self.initial is not None else None,
            "best": _as_dict(self.best) if self.best is not None else None,
            "best_eval": _as_dict(self.best_eval) if self.best_eval is not None else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.keep = int(state["keep"])
        self.snapshots = deque(
            (Snapshot(**to_cpu(s)) for s in state["snapshots"]), maxlen=self.keep
        )
        for name in ("initial", "best", "best_eval"):
            saved = state.get(name)
            setattr(self, name, Snapshot(**to_cpu(saved)) if saved is not None else None)

    def __len__(self) -> int:
        return len(self.snapshots)


def _as_dict(s: Snapshot) -> dict[str, Any]:
    return {
        "step": s.step,
        "model": s.model,
        "optimizer": s.optimizer,
        "scaler": s.scaler,
        "scheduler": s.scheduler,
        "rng": s.rng,
        "guard": s.guard,
        "restores": s.restores,
    }
