"""``grad-norm-growth``: the gradient norm trending up across the run.

Seed 003: "epoch 0 mostly < 2, epochs 1-2 reaching 5-7, 3-4 reaching 12-16". Fires when the
per-epoch 90th-percentile grad norm of the last third of the run is ≥ 3× that of the first third
and rises with a rank correlation ≥ 0.6, over ≥ 3 bins of ≥ 3 grad norms each (a few pasted lines
per block are outliers, not a trend). A healthy run's norm falls or stays flat.

A short log (≤ ``HEAD`` grad norms in all, too few for bins: a pasted excerpt of 10 steps whose
norm grows 1.5× per step) is judged on its norms themselves: ≥ 8 of them, ≥ 80 % of them above the
one before (a steady climb, not a few sparse spikes), the last third's median ≥ 3× the first
third's, rank correlation ≥ 0.8.
"""

from __future__ import annotations

import itertools
import math
from statistics import median
from typing import Any

from stabletrain.detectors.bins import Bins
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, scale_lr_fix, tighter_clip_fix
from stabletrain.detectors.robust import spearman
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: grad norms kept as they are, for a log too short for bins
HEAD = 32


class GradNormGrowthDetector:
    """Grad norm trending up across epochs (or step blocks)."""

    ids: tuple[str, ...] = ("grad-norm-growth",)

    def __init__(
        self, min_ratio: float = 3.0, min_rho: float = 0.6, min_bins: int = 3, min_points: int = 3
    ) -> None:
        self.min_points = min_points
        self.min_ratio = min_ratio
        self.min_rho = min_rho
        self.min_bins = min_bins
        self.bins = Bins()
        self.n = 0
        self.head: list[list[Any]] = []  # the first HEAD [step, grad norm]

    def update(self, record: StepRecord) -> Finding | None:
        g = record.grad_norm
        if record.kind == "train" and g is not None and math.isfinite(g) and g > 0:
            self.bins.add(record.step, record.epoch, g)
            self.n += 1
            if len(self.head) < HEAD:
                self.head.append([record.step, g])
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        g = batch.floats("grad_norm")
        batch.check_bins()
        idx = batch.finite("grad_norm")
        idx = idx[g[idx] > 0]
        self.bins.add_many(batch, idx, g[idx], batch.objects("grad_norm"))
        self.n += int(idx.size)
        room = HEAD - len(self.head)
        if room > 0:
            take = idx[:room]
            self.head += [
                [s, v]
                for s, v in zip(
                    batch.take("step", take), batch.take("grad_norm", take), strict=True
                )
            ]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        # a bin's 90th percentile needs a few points: a pasted excerpt of one or two lines per
        # block (bigscience tr8b) is outliers, not a trend
        ordered = [b for b in self.bins.ordered() if b.count >= self.min_points]
        if len(ordered) >= self.min_bins:
            p90 = [b.hist.quantile(0.9) or 0.0 for b in ordered]
            min_rho = self.min_rho
            steps, epochs = self.bins.where(ordered)
            labels = {
                self.bins.label(b): [round(v, 3), round(b.max, 3)]
                for b, v in zip(ordered, p90, strict=True)
            }
            top = max(b.max for b in ordered)
        elif 8 <= self.n <= HEAD:  # a short log: its norms are the series
            p90 = [float(v) for _, v in self.head]
            # a steady climb: nearly every step above the one before (a few sparse spikes or one
            # huge norm repeated are outliers, not growth)
            rises = sum(b > a for a, b in itertools.pairwise(p90))
            if rises < 0.8 * (len(p90) - 1):
                return []
            min_rho = 0.8
            steps, epochs = [int(s) for s, _ in self.head], []
            labels = {f"step {s}": [round(float(v), 3)] for s, v in self.head}
            top = max(p90)
        else:
            return []
        k = max(1, len(p90) // 3)
        first, last = median(p90[:k]), median(p90[-k:])
        rho = spearman(p90)
        if first <= 0 or last / first < self.min_ratio or rho < min_rho:
            return []
        ratio = last / first
        fixes: list[Fix] = []
        fixes.append(scale_lr_fix(facts, 0.5, "Lower the learning rate so the norm stops climbing"))
        clip_fix = tighter_clip_fix(facts, 1.0, "so growth cannot run away")
        if clip_fix is not None:
            fixes.append(clip_fix)
        return [
            Finding(
                id="grad-norm-growth",
                severity="warning",
                title=f"Gradient norm grows {ratio:.1f}× over the run",
                explanation=(
                    f"The 90th-percentile gradient norm rose from {fmt(first)} early in the run to "
                    f"{fmt(last)} at the end (max {fmt(top)}; rank "
                    f"correlation with time {rho:.2f}). In a healthy run the norm falls or stays "
                    "flat as the loss settles; a steady climb means updates are too large for the "
                    "curvature the model has reached — usually the learning rate — and it ends in "
                    "spikes or divergence. Clipping hides it without fixing it. After the change, "
                    "the per-epoch norm should stay flat or decrease."
                ),
                steps=steps,
                epochs=epochs,
                evidence={
                    "p90_and_max_per_bin": labels,
                    "ratio": round(ratio, 2),
                    "rho": round(rho, 3),
                },
                fixes=fixes,
                related=["clip-saturated", "loss-spike"],
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {"bins": self.bins.state_dict(), "n": self.n, "head": [list(h) for h in self.head]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bins.load_state_dict(state["bins"])
        self.n = int(state.get("n", 0))
        self.head = [list(h) for h in state.get("head", [])]
