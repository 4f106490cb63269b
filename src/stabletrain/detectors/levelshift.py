"""``loss-spike`` for a step up that stays: the training loss jumps to a higher level in one
record and does not come back down with the next records.

The spike rule (:mod:`stabletrain.detectors.spikes`) asks a loss to rise 1.3x above its rolling
median, a margin sized for per-batch losses, which swing by tens of percent from step to step. A
log of per-epoch means (DeiT's and CF-ViT's ``log.txt``, one line per epoch averaged over
thousands of batches) moves by a few thousandths from line to line: there, the train loss going
from 4.503 to 5.313 in one epoch and staying above 4.7 for the next ten (CF-ViT, epoch 201; its
test accuracy 77.6 % -> 54.1 %, never above 65 % again) is a break hundreds of times its noise,
yet only 1.18x its median. This rule judges such a jump against the series' own noise:

- the value ``v`` is at least ``RATIO`` (1.1x) the highest of the ``3`` values just before it
  (``ref``), and at least ``Z`` (20) times the noise of the ``WINDOW`` (20) values before it, the
  noise being the robust spread of their first differences (a smooth trend has tiny differences
  whatever its slope), floored at ``NOISE_FLOOR`` (0.2 %) of ``ref`` for values printed with few
  digits;
- it stays up: each of the next ``AFTER`` (3) values keeps at least ``STAY`` (a quarter) of the
  jump above ``ref`` (a new level, not one bad batch that is gone on the next record — the
  spike rule's business);
- the schedule did not do it: no LR rise of more than 5 % at that record (a warm restart lifts
  the loss by design), and the record does not start a new epoch in a log with several records
  per epoch (running means that restart with each epoch: Keras' progress bar).

Minimum evidence: ``MIN_BEFORE`` (10) values before the jump and ``AFTER`` after it; positive
losses only (a ratio to a negative objective means nothing). A jump of 1.3x its median or more is
left to the spike rule: the registry keeps one ``loss-spike`` finding per log.

The doctor replays logs through this detector; the guard does not run it (its live spike rule is
:class:`~stabletrain.detectors.spikes.SpikeDetector`). State: the last ``WINDOW + AFTER + 1``
values with their LR and epoch, at most ``MAX_EPISODES`` episodes and a count of the rest.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.base import epoch_index
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import spike_fixes
from stabletrain.detectors.robust import MAD_TO_STD, diff_noise
from stabletrain.records import ConfigFacts, Finding, StepRecord

RATIO = 1.1
Z = 20.0
WINDOW = 20
MIN_BEFORE = 10
AFTER = 3
#: the share of the jump the next ``AFTER`` values keep (all of them)
STAY = 0.25
NOISE_FLOOR = 0.002
LR_RISE = 1.05
#: a jump the spike rule judges (``SpikeDetector``'s loss ``min_ratio``): not this rule's
SPIKE_RATIO = 1.3
MAX_EPISODES = 10


def judge(
    values: np.ndarray, lrs: np.ndarray, epochs: np.ndarray, i: int
) -> dict[str, float] | None:
    """The jump at index ``i`` (``AFTER`` values follow it in the arrays), or None. ``epochs``
    holds whole epochs as floats, NaN where a record has none; ``lrs`` NaN where none."""
    v, prev = float(values[i]), float(values[i - 1])
    if not (prev > 0 and v >= RATIO * prev):
        return None
    before = values[max(0, i - WINDOW) : i]
    ref = float(before[-3:].max())
    rise = v - ref
    if ref <= 0 or v < RATIO * ref or v >= SPIKE_RATIO * float(np.median(before)):
        return None
    after = values[i + 1 : i + 1 + AFTER]
    if float(after.min()) < ref + STAY * rise:
        return None
    noise = max(diff_noise(before), NOISE_FLOOR * ref)
    if rise < Z * noise:
        return None
    lr, lr_prev = float(lrs[i]), float(lrs[i - 1])
    if math.isfinite(lr) and math.isfinite(lr_prev) and lr > lr_prev * LR_RISE:
        return None
    if i >= 2 and epochs[i] != epochs[i - 1] and epochs[i - 1] == epochs[i - 2]:
        return None  # the first record of an epoch in a log of several records per epoch
    return {"value": v, "ref": ref, "z": round(rise / noise, 1), "after_min": float(after.min())}


def candidates(values: np.ndarray, first: int, stop: int) -> np.ndarray:
    """The indices ``first <= i < stop`` (``first`` >= 3, each with ``AFTER`` values after it)
    that ``judge`` may accept: its tests on the values alone, vectorised, each a little looser
    than ``judge`` computes it (a median along an axis may round apart from a median of one
    row), so ``judge`` decides."""
    rose = values[first:stop] >= RATIO * values[first - 1 : stop - 1]
    idx = np.flatnonzero(rose) + first
    v, prev = values[idx], values[idx - 1]
    ref = np.maximum(np.maximum(prev, values[idx - 2]), values[idx - 3])
    after = np.lib.stride_tricks.sliding_window_view(values[1:], AFTER)[idx].min(axis=1)
    ok = (prev > 0) & (v >= RATIO * prev) & (ref > 0) & (v >= RATIO * ref)
    ok &= after >= ref + STAY * (v - ref)
    idx, v, ref = idx[ok], v[ok], ref[ok]
    full = idx >= WINDOW
    if not full.any():
        return idx
    before = np.lib.stride_tricks.sliding_window_view(values, WINDOW)[idx[full] - WINDOW]
    d = np.diff(before, axis=1)
    mad = np.median(np.abs(d - np.median(d, axis=1)[:, None]), axis=1)
    noise = np.maximum(MAD_TO_STD * mad / math.sqrt(2.0), NOISE_FLOOR * ref[full])
    slack = 1.0 + 1e-9
    keep = (v[full] < SPIKE_RATIO * np.median(before, axis=1) * slack) & (
        (v[full] - ref[full]) * slack >= Z * noise
    )
    return np.sort(np.concatenate((idx[~full], idx[full][keep])))


class LossStepDetector:
    """The train loss stepping up to a new level and staying there (module doc)."""

    ids: tuple[str, ...] = ("loss-spike",)

    def __init__(self) -> None:
        #: (step, loss, lr or NaN, whole epoch or NaN) of the last train records with a loss
        self.tail: deque[tuple[int, float, float, float]] = deque(maxlen=WINDOW + AFTER + 1)
        self.n_seen = 0
        self.episodes: list[dict[str, Any]] = []
        self.more = 0

    # -- per record -----------------------------------------------------------------------------
    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train" or record.loss is None or not math.isfinite(record.loss):
            return None
        lr = float(record.lr) if record.lr is not None and math.isfinite(record.lr) else math.nan
        e = epoch_index(record.epoch)
        self.tail.append((record.step, float(record.loss), lr, math.nan if e is None else float(e)))
        self.n_seen += 1
        i = len(self.tail) - 1 - AFTER
        if i >= MIN_BEFORE:
            self._judge_at(list(self.tail), i)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of ``batch``: the tail and the batch joined, the indices
        not judged yet narrowed by ``candidates`` (vectorised, never stricter than ``judge``),
        and ``judge`` itself on the few that are left."""
        idx = batch.finite("loss")
        if idx.size == 0:
            return
        steps = np.concatenate(([r[0] for r in self.tail], batch.steps[idx])).astype(np.int64)
        lr = batch.floats("lr")[idx]
        ep = batch.floats("epoch")[idx]
        old = len(self.tail)
        values = np.concatenate(([r[1] for r in self.tail], batch.floats("loss")[idx]))
        lrs = np.concatenate(([r[2] for r in self.tail], np.where(np.isfinite(lr), lr, np.nan)))
        eps = np.concatenate(
            ([r[3] for r in self.tail], np.where(np.isfinite(ep), np.trunc(ep), np.nan))
        )
        n = values.size
        first = max(MIN_BEFORE, old - AFTER)  # indices judged before this batch are done
        if n - 1 - AFTER >= first:
            for i in candidates(values, first, n - AFTER).tolist():
                self._judge_arrays(values, lrs, eps, steps, i)
        self.n_seen += int(idx.size)
        self.tail.clear()
        for k in range(max(0, n - (WINDOW + AFTER + 1)), n):
            self.tail.append((int(steps[k]), float(values[k]), float(lrs[k]), float(eps[k])))

    def _judge_at(self, rows: list[tuple[int, float, float, float]], i: int) -> None:
        values = np.array([r[1] for r in rows])
        lrs = np.array([r[2] for r in rows])
        eps = np.array([r[3] for r in rows])
        self._judge_arrays(values, lrs, eps, [r[0] for r in rows], i)

    def _judge_arrays(
        self,
        values: np.ndarray,
        lrs: np.ndarray,
        eps: np.ndarray,
        steps: np.ndarray | list[int],
        i: int,
    ) -> None:
        got = judge(values, lrs, eps, i)
        if got is None:
            return
        step = int(steps[i])
        last = self.episodes[-1] if self.episodes else None
        if last is not None and last["step"] >= int(steps[max(0, i - AFTER)]):
            return  # the same break, seen again on the record after it
        if len(self.episodes) >= MAX_EPISODES:
            self.more += 1
            return
        e = eps[i]
        self.episodes.append({"step": step, "epoch": None if math.isnan(e) else int(e), **got})

    # -- run level --------------------------------------------------------------------------------
    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if not self.episodes:
            return []
        facts = facts or ConfigFacts()
        eps = self.episodes
        lines = [
            f"step {e['step']}: {e['ref']:.4g} -> {e['value']:.4g} "
            f"({e['value'] / e['ref']:.2f}x, {e['z']:g}x the noise of the {WINDOW} values "
            f"before), still >= {e['after_min']:.4g} over the next {AFTER}"
            for e in eps
        ]
        if self.more:
            lines.append(f"... and {self.more} more")
        worst = max(eps, key=lambda e: e["value"] / e["ref"])
        return [
            Finding(
                id="loss-spike",
                severity="warning",
                title=(
                    f"training loss stepped up at step {worst['step']}: "
                    f"{worst['ref']:.4g} -> {worst['value']:.4g}, and stayed up"
                ),
                explanation=(
                    "The training loss jumped to a higher level in one record and did not come "
                    "back down with the next ones: " + "; ".join(lines) + ". The jump is small "
                    "against the loss itself, but far outside this log's own record-to-record "
                    "noise, and nothing in the schedule caused it (no LR rise, no epoch "
                    "boundary of a running mean). A break like this is an update that damaged "
                    "the weights — a learning rate or batch too large for that moment, a bad "
                    "batch the optimizer state amplified — and it usually costs accuracy that "
                    "the rest of the run does not win back. Check the evaluation metrics around "
                    "that step, and resume from the checkpoint before it with the change below."
                ),
                steps=[e["step"] for e in eps],
                epochs=[e["epoch"] for e in eps if e["epoch"] is not None],
                evidence={
                    "rule": "step",
                    "episodes": len(eps) + self.more,
                    "worst_step": worst["step"],
                    "worst_value": worst["value"],
                    "worst_before": worst["ref"],
                    "worst_ratio": round(worst["value"] / worst["ref"], 3),
                    "worst_z": worst["z"],
                },
                fixes=spike_fixes(facts, None, None),
                source="log",
            )
        ]

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "tail": [list(r) for r in self.tail],
            "n_seen": self.n_seen,
            "episodes": [dict(e) for e in self.episodes],
            "more": self.more,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.tail = deque(
            ((int(s), float(v), float(lr), float(e)) for s, v, lr, e in state.get("tail", [])),
            maxlen=WINDOW + AFTER + 1,
        )
        self.n_seen = int(state.get("n_seen", 0))
        self.episodes = [dict(e) for e in state.get("episodes", [])]
        self.more = int(state.get("more", 0))
