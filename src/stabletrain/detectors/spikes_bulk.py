"""The spike detector's bulk replay: a stretch of records with no spike candidate, in one pass.

Once the baseline is full, a stretch of values none of which is a candidate (robust z above the
threshold) changes the detector's state in a fixed way: statistics recomputed every 8 values over
windows of the stream, values entering the baseline ``delay`` records later. ``steady`` applies
that to as many records as it can, exactly as ``SpikeDetector.update`` would one by one
(``tests/detectors/test_bulk.py`` checks it on real logs, seeds and fuzzed runs), and stops at the
first candidate, which ``update_many`` hands to ``update``.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.robust import robust_stats, robust_stats_many

if TYPE_CHECKING:
    from stabletrain.detectors.spikes import SpikeDetector


def steady(det: SpikeDetector, batch: Batch, idx: np.ndarray, values: np.ndarray) -> int:
    """Apply ``update`` to the records ``idx`` up to the first spike candidate; return how
    many were applied. Needs a full baseline, a full pending queue and cached statistics."""
    v = values[idx]
    k, d, w = len(v), len(det._pending), det.window
    pend = list(det._pending)
    # the baseline stream: the baseline, then each value popped from the pending queue
    # (record r pops the r-th of pending + block values) unless it was a spike
    joins = np.array([not spike for _, spike in pend] + [True] * max(k - d, 0))[:k]
    stream = np.concatenate(
        (np.array(det._baseline), [x for x, spike in pend if not spike], v[: max(k - d, 0)])
    )
    before = np.concatenate(([0], np.cumsum(joins)))  # joins before record r
    # statistics are recomputed at record r when 8 values joined since the last time; once
    # the pending values are popped every record joins, so that is every 8th record
    at: list[int] = []
    stale, r = det._stale, 0
    while r < min(d, k):
        if stale >= 8:
            at.append(r)
            stale = 0
        stale += int(joins[r])
        r += 1
    at.extend(range(r + max(0, 8 - stale), k, 8))
    starts = before[at]
    assert det._stats is not None  # (steady)
    med, std = det._stats
    meds, stds = np.full(k, med), np.full(k, std)
    if at:
        m, sd = robust_stats_many(sliding_window_view(stream, w)[starts])
        which = np.searchsorted(at, np.arange(k), side="right") - 1
        has = which >= 0
        meds[has], stds[has] = m[which[has]], sd[which[has]]
    cand = np.flatnonzero((v - meds) / stds > det.z_threshold)
    c = int(cand[0]) if cand.size else k
    if c == 0:
        return 0
    # commit records 0..c-1
    steps, epochs = batch.objects("step"), batch.objects("epoch")
    last = int(idx[c - 1])
    det.n_seen += c
    det.last_step, det.last_epoch = steps[last], epochs[last]
    det.max_lr = batch.running_max("lr", idx[:c], det.max_lr)
    if det.episodes and det.episodes[-1]["recovered_at"] is None:
        ep = det.episodes[-1]
        sd = stds[:c] if ep.get("early_std") is None else ep["early_std"]
        step_arr = batch.steps[idx[:c]]
        back = (step_arr > ep["end"]) & (
            (v[:c] <= ep["baseline"] + det.recover_z * sd) | (v[:c] <= ep["baseline"])
        )
        if back.any():
            ep["recovered_at"] = steps[int(idx[int(np.argmax(back))])]
    used = [a for a in at if a < c]
    if used:
        r = used[-1]
        det._stats = (float(meds[r]), float(stds[r]))
        if det._stats[0] == 0:  # the sign of a zero median: as robust_stats gives it
            det._stats = robust_stats(stream[before[r] : before[r] + w].tolist())
        det._stale = int(before[c] - before[r])
    else:
        det._stale += int(before[c])
    det._baseline.extend(stream[w : w + int(before[c])].tolist())
    # the queue after c records: what is left of it, then the newest values (never spikes)
    kept = pend[c:] + [(x, False) for x in v[max(0, c - d) : c].tolist()]
    det._pending = deque(kept[-d:] if d else [])
    return c
