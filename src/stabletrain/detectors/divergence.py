"""``loss-divergence``: the training loss trending away from the run's own best.

A too-high LR under Adam (an LSTM or a transformer without warm-up) rarely gives a 6σ spike or a
NaN: the loss falls, reaches its best, then climbs back over hundreds of steps, often above where
it started. A spike test compares each value with its recent neighbours and never sees that.

The rule, on a bias-corrected EMA of the loss (span ``span`` steps, finite values only)::

    start    = the EMA once it has ``span`` values (the loss the run started from)
    best     = the lowest EMA since, and its step
    progress = start - best                         (must be ≥ min_progress x |start|)
    diverged = EMA > best + fraction x progress     for ``patience`` records in a row

With the defaults (``fraction=0.5``, ``patience=span``) the run must have given back half of its
progress and stayed there for another ``span`` steps: far outside what noise, a warm restart of a
schedule or an epoch boundary does to a smoothed loss, so the guard may act on it (roll back to
the best snapshot and lower the LR). A run that never made progress is not judged (that is a
stall, not a divergence).

The grad norm is reported beside it as evidence (its EMA against its lowest EMA), never as a
trigger: grad norms legitimately climb while a schedule decays.

Limits: only train-loss records count (eval records have their own rule in the guard's
``observe_eval``); a run whose loss is rising because its data changed (a curriculum step) looks
the same and is reported the same.
"""

from __future__ import annotations

import math
from typing import Any

from stabletrain.detectors.fixes import scale_lr_fix
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord


class Ema:
    """A bias-corrected exponential moving average (span ``span``)."""

    def __init__(self, span: int) -> None:
        self.alpha = 2.0 / (span + 1.0)
        self.raw = 0.0
        self.weight = 0.0
        self.n = 0

    def add(self, value: float) -> float:
        self.raw = (1.0 - self.alpha) * self.raw + self.alpha * value
        self.weight = (1.0 - self.alpha) * self.weight + self.alpha
        self.n += 1
        return self.value

    @property
    def value(self) -> float:
        return self.raw / self.weight if self.weight > 0 else math.nan

    def state_dict(self) -> dict[str, Any]:
        return {"raw": self.raw, "weight": self.weight, "n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.raw, self.weight, self.n = float(state["raw"]), float(state["weight"]), int(state["n"])


class DivergenceDetector:
    """The train loss giving back ``fraction`` of its progress, sustained (see module doc)."""

    ids: tuple[str, ...] = ("loss-divergence",)

    def __init__(
        self,
        span: int = 50,
        fraction: float = 0.5,
        patience: int | None = None,
        min_progress: float = 0.05,
    ) -> None:
        self.span = span
        self.fraction = fraction
        self.patience = span if patience is None else patience
        self.min_progress = min_progress
        self.loss = Ema(span)
        self.norm = Ema(span)
        self.start: float | None = None
        self.best: float | None = None
        self.best_step: int | None = None
        self.norm_best: float | None = None
        self.above = 0
        self.episodes: list[dict[str, Any]] = []

    @property
    def smoothed(self) -> float | None:
        """The loss EMA (None before the first value)."""
        return self.loss.value if self.loss.n else None

    def update(self, record: StepRecord) -> Finding | None:
        loss = record.loss
        if record.kind != "train" or record.skipped or loss is None or not math.isfinite(loss):
            return None
        ema = self.loss.add(loss)
        g = record.grad_norm
        if g is not None and math.isfinite(g) and g > 0:
            n = self.norm.add(g)
            if self.norm.n >= self.span and (self.norm_best is None or n < self.norm_best):
                self.norm_best = n
        if self.loss.n < self.span:
            return None
        if self.start is None:
            self.start = ema
        if self.best is None or ema < self.best:
            self.best, self.best_step, self.above = ema, record.step, 0
            return None
        progress = self.start - self.best
        if progress < self.min_progress * abs(self.start) or progress <= 0:
            return None
        if ema > self.best + self.fraction * progress:
            self.above += 1
        else:
            self.above = 0
        if self.above < self.patience:
            return None
        self.above = 0
        episode = {
            "step": record.step,
            "start": self.start,
            "best": self.best,
            "best_step": self.best_step,
            "loss_ema": ema,
            "given_back": (ema - self.best) / progress,
        }
        if self.norm.n and self.norm_best:
            episode["grad_norm_ratio"] = self.norm.value / self.norm_best
        self.episodes.append(episode)
        return self._finding([episode], ConfigFacts())

    def rebase(self) -> None:
        """After the guard rolled back to a snapshot: the EMA restarts from the restored
        weights' losses (``best`` and ``start`` are kept: the run's own reference)."""
        self.loss = Ema(self.span)
        self.norm = Ema(self.span)
        self.above = 0

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if not self.episodes:
            return []
        return [self._finding(self.episodes, facts or ConfigFacts())]

    def _finding(self, episodes: list[dict[str, Any]], facts: ConfigFacts) -> Finding:
        first = episodes[0]
        fixes: list[Fix] = [scale_lr_fix(facts, 0.5, "Lower the learning rate")]
        norm = first.get("grad_norm_ratio")
        norm_note = f"; the grad norm's EMA is {norm:.3g}x its lowest" if norm else ""
        return Finding(
            id="loss-divergence",
            severity="error",
            title=(
                f"the loss diverged from its best ({first['best']:.4g} at step "
                f"{first['best_step']}) to {first['loss_ema']:.4g} (start {first['start']:.4g})"
            ),
            explanation=(
                f"The smoothed train loss gave back {first['given_back']:.0%} of the progress "
                f"it had made, sustained for {self.patience} steps{norm_note}: the updates are "
                "making the model worse, the signature of a learning rate too high for this "
                "stage of training."
            ),
            steps=[e["step"] for e in episodes],
            evidence=dict(first),
            fixes=fixes,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "loss": self.loss.state_dict(),
            "norm": self.norm.state_dict(),
            "start": self.start,
            "best": self.best,
            "best_step": self.best_step,
            "norm_best": self.norm_best,
            "above": self.above,
            "episodes": [dict(e) for e in self.episodes],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.loss.load_state_dict(state["loss"])
        self.norm.load_state_dict(state["norm"])
        self.start, self.best = state["start"], state["best"]
        self.best_step, self.norm_best = state["best_step"], state["norm_best"]
        self.above = int(state["above"])
        self.episodes = [dict(e) for e in state["episodes"]]
