"""``slow-steps``: step-time regressions — the run got several times slower and stayed slow.

Seed 004 complained of "8.3 hours per epoch (expected 1-2 hours)"; inside one log, the visible
symptom is a sustained jump in seconds per step (a leak keeping tensors alive, a data loader that
fell back to one worker, a host sync added in the hot loop, swapping).

Durations come from ``step_time`` or, when absent, from ``wall_time`` deltas divided by the step
delta (logging every N steps). They are summarised per epoch (or per step block) with a log
histogram. Rule: baseline = lower quartile of the per-bin medians; a bin (other than the first,
which includes compilation and cache warm-up) whose median is ≥ ``factor`` (3×) the baseline is a
regression. Single slow steps (eval pauses, checkpoint saves) do not move a bin's median. A slow
bin's median must also be ≥ ``min_seconds`` (50 ms): millisecond steps (tiny models, CPU tests)
are dominated by host jitter — another process on the cores reads as a 3-100× "slowdown" — so a
regression that small is noise, not a training problem.

A gradual drift (seed 004's "8.3 hours per epoch": a leak makes every step a little slower than
the last) never jumps 3×, so durations are also kept per step block (always by step, ≤ 64
blocks, whatever the epochs): the median of each block with ≥ 3 durations; with ≥ 6 such blocks,
a Theil–Sen line through the medians (robust to a slow warm-up block or a stretch of eval
pauses) that rises steadily (rank correlation with time ≥ 0.8) and ends ≥ ``drift_factor``
(1.4×) above where it started is ``slow-steps`` too.

A run that slows down over a few epochs and then *stays* slow (a TF1 script whose epochs go from
1.75 s to 2.6-2.8 s by epoch 6 and hold there: a ramp, then a plateau, which neither jumps 3× nor
rises steadily) is a **level shift**: the per-bin medians (bins with ≥ 3 durations; a log of
per-epoch summaries, one duration per epoch, uses each — it is already the epoch's average) are
split into two levels where the split leaves the least absolute deviation; the later level is
``slow-steps`` when it is ≥ ``shift_factor`` (1.3×) the earlier, holds for at least a third of the
points (to the end of the log), and the gap between the levels is ≥ 4 σ of the points around
their own level (σ = 1.4826 × the median absolute deviation), so noisy steps cannot make one.
Minimum evidence: a split of fewer than :data:`~stabletrain.detectors.evidence.MIN_TREND_POINTS`
(8) points rests on 2-3 points a side and is a note, not a warning (``too_few``).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

import numpy as np

from stabletrain.detectors.bins import Bins
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import MIN_TREND_POINTS, too_few
from stabletrain.detectors.robust import MAD_TO_STD, spearman
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

_PROFILE_FIX = Fix(
    "Profile one slow step (torch.profiler) and compare with a fast one; "
    "log loss.item(), not the tensor; check DataLoader num_workers/pin_memory",
    code="running_loss += loss.item()  # not `+= loss`, which keeps the graph",
)


def _theil_sen(xs: list[float], ys: list[float]) -> tuple[float, float]:
    """(slope, intercept) of the Theil–Sen line: the median pairwise slope, the median offset."""
    slopes = sorted(
        (ys[j] - ys[i]) / (xs[j] - xs[i])
        for i in range(len(xs))
        for j in range(i + 1, len(xs))
        if xs[j] != xs[i]
    )
    if not slopes:
        return 0.0, statistics.median(ys)
    slope = statistics.median(slopes)
    return slope, statistics.median(y - slope * x for x, y in zip(xs, ys, strict=True))


class SlowStepsDetector:
    """Seconds per step, per epoch/step block, against the run's own fast baseline."""

    ids: tuple[str, ...] = ("slow-steps",)

    def __init__(
        self,
        factor: float = 3.0,
        min_bins: int = 3,
        min_seconds: float = 0.05,
        drift_factor: float = 1.4,
        shift_factor: float = 1.3,
    ) -> None:
        self.factor = factor
        self.shift_factor = shift_factor
        self.min_seconds = min_seconds
        self.min_bins = min_bins
        self.drift_factor = drift_factor
        self.bins = Bins()
        self.blocks = Bins(by_step=True)  # the same durations by step block, for a drift
        self._prev: tuple[int, float] | None = None

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        dt = record.step_time
        if dt is None and record.wall_time is not None and math.isfinite(record.wall_time):
            if self._prev is not None and record.step > self._prev[0]:
                dt = (record.wall_time - self._prev[1]) / (record.step - self._prev[0])
            self._prev = (record.step, record.wall_time)
        if dt is not None and math.isfinite(dt) and dt > 0:
            self.bins.add(record.step, record.epoch, dt)
            self.blocks.add(record.step, None, dt)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        step_time, wall = batch.floats("step_time"), batch.floats("wall_time")
        steps, st_none = batch.steps, batch.none("step_time")
        batch.check_bins()
        t = np.flatnonzero(batch.train)
        dt = step_time.copy()  # by batch index; NaN = no duration
        # records without step_time: the wall-clock delta to the previous such record
        no_st = t if st_none is None else t[st_none[t]]
        w = no_st[np.isfinite(wall[no_st])] if st_none is not None else no_st[:0]
        if w.size:
            ws, ss = wall[w], steps[w]
            if self._prev is not None:
                pw = np.concatenate(([float(self._prev[1])], ws[:-1]))
                ps = np.concatenate(([self._prev[0]], ss[:-1]))
                at = w
            else:
                pw, ps, at, ws, ss = ws[:-1], ss[:-1], w[1:], ws[1:], ss[1:]
            ok = ss > ps
            dt[at[ok]] = (ws[ok] - pw[ok]) / (ss[ok] - ps[ok])
            last = int(w[-1])
            self._prev = (batch.objects("step")[last], batch.objects("wall_time")[last])
        d = dt[t]
        sel = t[np.isfinite(d) & (d > 0)]
        durations = _Durations(batch.objects("step_time"), dt)
        self.bins.add_many(batch, sel, dt[sel], durations)
        self.blocks.add_many(batch, sel, dt[sel], durations)

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        jump = self._jump()
        if jump is not None:
            return [jump]
        return self._drift() or self._shift()

    def _shift(self) -> list[Finding]:
        """The later of two levels of seconds per step, well above the earlier (see module)."""
        # bins of ≥ 3 durations; a log of per-epoch summaries has one (already an average) each
        full = [b for b in self.bins.ordered() if b.count >= 3]
        ordered = full if len(full) >= 4 else self.bins.ordered()
        x = [b.hist.quantile(0.5) or 0.0 for b in ordered]
        n = len(x)
        if n < 4:
            return []
        best: tuple[float, int] | None = None
        for k in range(2, n - 1):
            lo, hi = statistics.median(x[:k]), statistics.median(x[k:])
            cost = sum(abs(v - lo) for v in x[:k]) + sum(abs(v - hi) for v in x[k:])
            if best is None or cost < best[0]:
                best = (cost, k)
        if best is None:
            return []
        k = best[1]
        early, late = statistics.median(x[:k]), statistics.median(x[k:])
        resid = [abs(v - early) for v in x[:k]] + [abs(v - late) for v in x[k:]]
        sigma = MAD_TO_STD * statistics.median(resid)
        if (
            early <= 0
            or late < self.shift_factor * early
            or late < self.min_seconds
            or n - k < max(2, n // 3)
            or late - early < 4.0 * sigma
            or x[-1] < (early + late) / 2  # still slow at the end of the log
        ):
            return []
        ratio = late / early
        first = ordered[k]
        epoch_mode = self.bins.mode == "epoch"
        finding = Finding(
            id="slow-steps",
            severity="warning",
            title=f"Steps became {ratio:.1f}× slower from {self.bins.label(first)} and stayed so",
            explanation=(
                f"Seconds per step held at about {early:.3g} s until "
                f"{self.bins.label(ordered[k - 1])}, then about {late:.3g} s "
                f"({ratio - 1:.0%} slower) from {self.bins.label(first)} to the end of the log "
                f"({n - k} of {n} {'epochs' if epoch_mode else 'stretches'}) — a shift far "
                f"beyond the noise around either level (σ ≈ {sigma:.2g} s). The same work "
                "taking longer and staying so usually means something accumulated or degraded: "
                "tensors kept alive (e.g. appending the loss tensor instead of loss.item()), a "
                "growing graph or cache, data loading falling behind, thermal or memory "
                "pressure. After the fix, seconds per step should stay flat across the run."
            ),
            steps=[] if epoch_mode else [b.first_step for b in ordered[k:]],
            epochs=[b.key for b in ordered[k:]] if epoch_mode else [],
            evidence={
                "early_s_per_step": round(early, 6),
                "late_s_per_step": round(late, 6),
                "shift_ratio": round(ratio, 3),
                "noise_sigma": round(sigma, 6),
                "points": n,
            },
            fixes=[_PROFILE_FIX],
        )
        return [too_few(finding, n, MIN_TREND_POINTS, "epoch/stretch durations")]

    def _drift(self) -> list[Finding]:
        blocks = [b for b in self.blocks.ordered() if b.count >= 3]
        if len(blocks) < 6:
            return []
        meds = [b.hist.quantile(0.5) or 0.0 for b in blocks]
        xs = [(b.first_step + b.last_step) / 2 for b in blocks]
        slope, intercept = _theil_sen(xs, meds)
        start, end = intercept + slope * xs[0], intercept + slope * xs[-1]
        if start <= 0 or spearman(meds) < 0.8:
            return []
        ratio = end / start
        if ratio < self.drift_factor or end < self.min_seconds:
            return []
        first, last = blocks[0], blocks[-1]
        return [
            Finding(
                id="slow-steps",
                severity="warning",
                title=f"Steps became {ratio:.1f}× slower over the run (a steady drift)",
                explanation=(
                    f"Seconds per step rose steadily from about {start:.3g} s (steps "
                    f"{first.first_step}-{first.last_step}) to {end:.3g} s (steps "
                    f"{last.first_step}-{last.last_step}): a drift of {ratio - 1:.0%} across "
                    f"{len(blocks)} stretches of the run, rising in nearly every one — not a "
                    "single slow phase. Steps that get slower the longer a run lasts usually "
                    "mean something accumulates: tensors kept alive (e.g. appending the loss "
                    "tensor instead of loss.item()), a growing Python list or cache, memory "
                    "fragmentation or swapping. After the fix, seconds per step should stay flat "
                    "across the run."
                ),
                steps=[
                    b.first_step
                    for b, m in zip(blocks, meds, strict=True)
                    if m >= start * self.drift_factor
                ],
                evidence={
                    "start_s_per_step": round(start, 6),
                    "end_s_per_step": round(end, 6),
                    "drift_ratio": round(ratio, 3),
                    "blocks": len(blocks),
                },
                fixes=[_PROFILE_FIX],
            )
        ]

    def _jump(self) -> Finding | None:
        ordered = [b for b in self.bins.ordered() if b.count >= 3]
        if len(ordered) < self.min_bins:
            return None
        meds = [b.hist.quantile(0.5) or 0.0 for b in ordered]
        base = sorted(meds)[(len(meds) - 1) // 4]
        if base <= 0:
            return None
        slow = [
            (b, m)
            for b, m in zip(ordered[1:], meds[1:], strict=True)
            if m >= self.factor * base and m >= self.min_seconds
        ]
        if not slow:
            return None
        worst = max(m for _, m in slow)
        first = slow[0][0]
        epoch_mode = self.bins.mode == "epoch"
        return Finding(
            id="slow-steps",
            severity="warning",
            title=f"Steps became {worst / base:.1f}× slower from {self.bins.label(first)}",
            explanation=(
                f"The typical step took {base:.3g} s, but from {self.bins.label(first)} the "
                f"median step took up to {worst:.3g} s ({worst / base:.1f}×) in "
                f"{len(slow)} of {len(ordered)} "
                f"{'epochs' if epoch_mode else 'stretches'}. A sustained jump (not a single "
                "checkpoint or eval pause) usually means memory growth (tensors kept alive, "
                "e.g. appending the loss tensor instead of loss.item()), a new host sync in "
                "the loop, data loading falling behind, or swapping. After the fix, seconds "
                "per step should stay flat across the run."
            ),
            steps=[] if epoch_mode else [b.first_step for b, _ in slow],
            epochs=[b.key for b, _ in slow] if epoch_mode else [],
            evidence={
                "baseline_s_per_step": round(base, 6),
                "slow": {self.bins.label(b): round(m, 6) for b, m in slow},
                "worst_ratio": round(worst / base, 2),
            },
            fixes=[_PROFILE_FIX],
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins.state_dict(),
            "blocks": self.blocks.state_dict(),
            "prev": list(self._prev) if self._prev else None,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bins.load_state_dict(state["bins"])
        self.blocks.load_state_dict(state["blocks"])
        p = state["prev"]
        self._prev = (int(p[0]), float(p[1])) if p else None


class _Durations(Sequence[Any]):
    """The duration of record i as ``update`` holds it: its step_time, else the computed delta."""

    def __init__(self, step_time: Sequence[Any], dt: np.ndarray) -> None:
        self.step_time, self.dt = step_time, dt

    def __len__(self) -> int:
        return len(self.dt)

    def __getitem__(self, i: Any) -> Any:
        st = self.step_time[i]
        return st if st is not None else float(self.dt[i])
