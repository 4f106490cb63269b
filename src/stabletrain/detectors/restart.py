"""``run-restart``: the step counter went back — several runs, or attempts of one run, in one log.

A log that a run appends to on every launch (``>> train.log``, a run directory reused, a resumed
job) holds several step sequences. Read as one, they mislead: the readers keep the latest record
per step (``logs.readers.base.clean_records``), so a run resumed from its checkpoint at step 800
after it blew up at step 990 shows no trace of the blow-up, and a second run started from step 1
hides the first entirely. This detector reads the RAW records (``wants_raw``), finds where the
counter reset, and reports each segment; the doctor then analyses each earlier segment on its
own (:func:`stabletrain.doctor.diagnose`).

Rule: a train record starts a new segment when its step is lower than the previous train
record's step, unless

- it repeats, in every value but rank and timing, one of the last 16 train records (ranks
  printing the same metrics slightly out of order: ``duplicate-logging``'s business), or
- its epoch is higher than the previous record's (a step counter that counts batches within an
  epoch, like torchvision's ``[ 100/1251]``).

A segment whose first step is above the previous segment's first step continues it from a
checkpoint ("resumed"); one that starts at or below it is a "new run". Eval records never cut a
segment. State: the last train step and epoch, 16 signatures, ≤ ``MAX_SEGMENTS`` segments.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.logging import signature
from stabletrain.records import ConfigFacts, Finding, StepRecord

_WINDOW = 16
#: segments kept in full; more resets than this are counted only (and are hardly restarts)
MAX_SEGMENTS = 64


def _as_tuple(key: Any) -> Any:
    return tuple(_as_tuple(v) for v in key) if isinstance(key, (list, tuple)) else key


class RunRestartDetector:
    """Where the train step counter went back, and the segments it cut the log into."""

    ids: tuple[str, ...] = ("run-restart",)
    #: replay() feeds this detector the raw records (the cleaned ones have no resets left).
    wants_raw: bool = True

    def __init__(self) -> None:
        self.n_seen = 0  # records seen, of every kind: a segment starts at this index of raw
        self.last_step: int | None = None
        self.last_epoch: float | None = None
        self.recent: deque[tuple[object, ...]] = deque(maxlen=_WINDOW)
        #: [index in raw of the first record, first step, highest step, train records]
        self.segments: list[list[int]] = []
        self.extra_resets = 0

    # -- the rule, for one train record ---------------------------------------------------------
    def _resets(self, record: StepRecord, sig: tuple[object, ...]) -> bool:
        if self.last_step is None or record.step >= self.last_step:
            return False
        e, prev = record.epoch, self.last_epoch
        if e is not None and prev is not None and math.isfinite(e) and math.isfinite(prev):
            # the epoch moved on: a counter of batches within the epoch, not a restart
            return e <= prev and sig not in self.recent
        return sig not in self.recent

    def _open(self, index: int, step: int) -> None:
        if len(self.segments) >= MAX_SEGMENTS:
            self.extra_resets += 1
            return
        self.segments.append([index, step, step, 0])

    def update(self, record: StepRecord) -> Finding | None:
        index = self.n_seen
        self.n_seen += 1
        if record.kind != "train":
            return None
        sig = signature(record)
        if not self.segments or self._resets(record, sig):
            self._open(index, record.step)
        seg = self.segments[-1]
        seg[2] = max(seg[2], record.step)
        seg[3] += 1
        self.recent.append(sig)
        self.last_step, self.last_epoch = record.step, record.epoch
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``): only the records
        whose step is below the previous train record's are judged one by one."""
        steps, train = batch.steps, batch.train
        t = np.flatnonzero(train)
        if t.size == 0:
            self.n_seen += len(batch)
            return
        ts = steps[t]
        prev = np.empty_like(ts)
        prev[1:] = ts[:-1]
        prev[0] = ts[0] if self.last_step is None else self.last_step
        if self.last_step is None:
            cands = np.flatnonzero(ts[1:] < prev[1:]) + 1
        else:
            cands = np.flatnonzero(ts < prev)
        step_obj, epoch_obj = batch.objects("step"), batch.objects("epoch")
        base = self.n_seen
        start = 0  # position in t of the first record not yet applied
        for k in [*cands.tolist(), int(t.size)]:
            self._run(batch, t, ts, step_obj, epoch_obj, base, start, k)
            if k == t.size:
                break
            i = int(t[k])
            record = batch[i]
            sig = signature(record)
            if not self.segments or self._resets(record, sig):
                self._open(base + i, record.step)
            seg = self.segments[-1]
            seg[2] = max(seg[2], record.step)
            seg[3] += 1
            self.recent.append(sig)
            self.last_step, self.last_epoch = record.step, record.epoch
            start = k + 1
        self.n_seen = base + len(batch)

    def _run(
        self,
        batch: Batch,
        t: np.ndarray,
        ts: np.ndarray,
        step_obj: Sequence[Any],
        epoch_obj: Sequence[Any],
        base: int,
        a: int,
        b: int,
    ) -> None:
        """Train records ``t[a:b]``, none of which resets the counter, as ``update`` would."""
        if b <= a:
            return
        if not self.segments:
            self._open(base + int(t[a]), step_obj[int(t[a])])
        seg = self.segments[-1]
        top = a + int(np.argmax(ts[a:b]))
        seg[2] = max(seg[2], step_obj[int(t[top])])
        seg[3] += b - a
        for j in t[max(a, b - _WINDOW) : b].tolist():
            self.recent.append(signature(batch[j]))
        last = int(t[b - 1])
        self.last_step, self.last_epoch = step_obj[last], epoch_obj[last]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if len(self.segments) < 2:
            return []
        segs: list[dict[str, Any]] = []
        for i, (index, first, last, n) in enumerate(self.segments):
            kind = "first"
            if i:
                kind = "resumed" if first > self.segments[i - 1][1] else "new run"
            segs.append(
                {
                    "from_record": index,
                    "first_step": first,
                    "last_step": last,
                    "records": n,
                    "kind": kind,
                }
            )
        n_runs = 1 + sum(s["kind"] == "new run" for s in segs)
        resumes = sum(s["kind"] == "resumed" for s in segs)
        parts = []
        for prev, s in itertools.pairwise(segs):
            if s["kind"] == "resumed":
                parts.append(f"resumed at step {s['first_step']} after step {prev['last_step']}")
            else:
                parts.append(f"started again at step {s['first_step']} after {prev['last_step']}")
        what = f"{n_runs} runs" if n_runs > 1 else "1 run"
        if resumes:
            what += f", resumed {resumes}×"
        more = f" (and {self.extra_resets} more resets)" if self.extra_resets else ""
        return [
            Finding(
                id="run-restart",
                severity="info",
                title=f"The step counter went back {len(segs) - 1}× ({what} in one log){more}",
                explanation=(
                    "The log holds several step sequences: "
                    + "; ".join(parts[:6])
                    + ("; …" if len(parts) > 6 else "")
                    + ". Read as one curve they would mislead — a later attempt replaces what an "
                    "earlier one logged at the same steps, so a blow-up that made you restart "
                    "would vanish. The latest record per step is analysed as the run, and every "
                    "earlier attempt is analysed on its own; findings from those name the attempt."
                ),
                steps=[int(s["first_step"]) for s in segs[1:]],
                evidence={"segments": segs, "resets": len(segs) - 1 + self.extra_resets},
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_seen": self.n_seen,
            "last_step": self.last_step,
            "last_epoch": self.last_epoch,
            "recent": [list(s) for s in self.recent],
            "segments": [list(s) for s in self.segments],
            "extra_resets": self.extra_resets,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_seen = int(state["n_seen"])
        self.last_step = state["last_step"]
        self.last_epoch = state["last_epoch"]
        self.recent = deque((_as_tuple(s) for s in state["recent"]), maxlen=_WINDOW)
        self.segments = [[int(x) for x in s] for s in state["segments"]]
        self.extra_resets = int(state["extra_resets"])
