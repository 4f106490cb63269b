"""``run-restart``: the step counter went back — several runs, or attempts of one run, in one log.

A log that a run appends to on every launch (``>> train.log``, a run directory reused, a resumed
job) holds several step sequences. Read as one, they mislead: the readers keep the latest record
per step (``logs.readers.base.clean_records``), so a run resumed from its checkpoint at step 800
after it blew up at step 990 shows no trace of the blow-up, and a second run started from step 1
hides the first entirely. This detector reads the RAW records (``wants_raw``), finds where the
counter reset, and reports each segment; the doctor then analyses each earlier segment on its
own (:func:`stabletrain.doctor.diagnose`).

Rule: a train record starts a new segment when its step is lower than the previous train
record's step of the same rank (``record.rank`` when the log names it: the lines of several
processes interleave out of order, and their local losses differ), unless

- it repeats, in every value but rank and timing, one of the last 16 train records (ranks
  printing the same metrics slightly out of order: ``duplicate-logging``'s business), or
- its epoch is higher than that previous record's (a step counter that counts batches within an
  epoch, like torchvision's ``[ 100/1251]``).

A segment that starts the counter over — at ~0 (≤ 1 % of the step it came back from), or, when the
log begins at its run's start, at or below the log's first step — is a "new run"; any other
segment continues from a checkpoint ("resumed", a rollback included: an excerpt from step 7000
that goes back to 6900 was resumed, not restarted). Several runs appended to
one log are a warning (their curves are mixed, and only the last is "the run"); resumes alone
are a note (that is how runs survive crashes). Minimum evidence: a new run is a warning only when
the counters on both sides of its reset ran for ≥
:data:`~stabletrain.detectors.evidence.MIN_SEGMENT_RECORDS` (3) train records — one stray line
with a lower step (a summary line, a misread, a pasted fragment) is no second run — else the
finding is a note that says so. Eval records never cut a segment. State: the last train step and epoch of each rank, 16 signatures, ≤ ``MAX_SEGMENTS``
segments.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import MIN_SEGMENT_RECORDS, too_few
from stabletrain.detectors.logging import signature, signature_from_json
from stabletrain.records import ConfigFacts, Finding, StepRecord

_WINDOW = 16
#: segments kept in full; more resets than this are counted only (and are hardly restarts)
MAX_SEGMENTS = 64


class RunRestartDetector:
    """Where the train step counter went back, and the segments it cut the log into."""

    ids: tuple[str, ...] = ("run-restart",)
    #: replay() feeds this detector the raw records (the cleaned ones have no resets left).
    wants_raw: bool = True

    def __init__(self) -> None:
        self.n_seen = 0  # records seen, of every kind: a segment starts at this index of raw
        #: per rank ("None" without one): [last train step, its epoch]
        self.last: dict[str, list[Any]] = {}
        self.recent: deque[tuple[object, ...]] = deque(maxlen=_WINDOW)
        #: [index in raw of the first record, first step, highest step, train records]
        self.segments: list[list[int]] = []
        self.extra_resets = 0

    # -- the rule, for one train record ---------------------------------------------------------
    def _resets(self, record: StepRecord, sig: tuple[object, ...]) -> bool:
        prev = self.last.get(str(record.rank))
        if prev is None or record.step >= prev[0]:
            return False
        e, pe = record.epoch, prev[1]
        if e is not None and pe is not None and math.isfinite(e) and math.isfinite(pe) and e > pe:
            return False  # the epoch moved on: a counter of batches within the epoch
        return sig not in self.recent

    def _open(self, index: int, step: int) -> None:
        if len(self.segments) >= MAX_SEGMENTS:
            self.extra_resets += 1
            return
        self.segments.append([index, step, step, 0])

    def _take(self, index: int, record: StepRecord) -> None:
        """The per-record rule and bookkeeping (``update`` and ``update_many``'s candidates)."""
        sig = signature(record)
        if not self.segments:
            self._open(index, record.step)
        elif self._resets(record, sig):
            self._open(index, record.step)
            self.last.clear()  # a new attempt: every rank's counter starts over with it
        seg = self.segments[-1]
        seg[2] = max(seg[2], record.step)
        seg[3] += 1
        self.recent.append(sig)
        self.last[str(record.rank)] = [record.step, record.epoch]

    def update(self, record: StepRecord) -> Finding | None:
        index = self.n_seen
        self.n_seen += 1
        if record.kind == "train":
            self._take(index, record)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``): only the records
        whose step is below the previous train step of their rank are judged one by one."""
        steps, train = batch.steps, batch.train
        t = np.flatnonzero(train)
        base = self.n_seen
        if t.size == 0:
            self.n_seen += len(batch)
            return
        ts = steps[t]
        named = batch.none("rank")
        keys = None
        if named is None or not named.all():
            keys = np.asarray([str(r) for r in batch.take("rank", t)])
        cands = self._candidates(ts, keys)
        step_obj, epoch_obj = batch.objects("step"), batch.objects("epoch")
        start = 0  # position in t of the first record not yet applied
        for k in [*cands, int(t.size)]:
            self._run(batch, t, ts, keys, step_obj, epoch_obj, base, start, k)
            if k == t.size:
                break
            i = int(t[k])
            self._take(base + i, batch[i])
            start = k + 1
        self.n_seen = base + len(batch)

    def _candidates(self, ts: np.ndarray, keys: np.ndarray | None) -> list[int]:
        """Positions whose step is below the previous train step of the same rank."""
        groups: dict[str, list[int]] = {}
        if keys is None:
            groups["None"] = list(range(len(ts)))
        else:
            for j, key in enumerate(keys.tolist()):
                groups.setdefault(key, []).append(j)
        out: list[int] = []
        for key, pos in groups.items():
            p = np.asarray(pos)
            s = ts[p]
            prev = np.empty_like(s)
            prev[1:] = s[:-1]
            known = self.last.get(key)
            if known is None:
                out += (p[1:][s[1:] < prev[1:]]).tolist()
            else:
                prev[0] = known[0]
                out += (p[s < prev]).tolist()
        return sorted(out)

    def _run(
        self,
        batch: Batch,
        t: np.ndarray,
        ts: np.ndarray,
        keys: np.ndarray | None,
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
        # each rank's last record in the stretch
        if keys is None:
            last = {"None": int(t[b - 1])}
        else:
            ranks, back = np.unique(keys[a:b][::-1], return_index=True)
            last = {
                str(r): int(t[b - 1 - k])
                for r, k in zip(ranks.tolist(), back.tolist(), strict=True)
            }
        for key in sorted(last, key=last.__getitem__):  # in record order, as update sets them
            i = last[key]
            self.last[key] = [step_obj[i], epoch_obj[i]]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if len(self.segments) < 2:
            return []
        segs: list[dict[str, Any]] = []
        s0, s0_last = self.segments[0][1], self.segments[0][2]
        # the log begins at its run's start (not an excerpt from step 7000 on)
        from_start = s0 <= max(1, 0.25 * s0_last)
        for i, (index, first, last, n) in enumerate(self.segments):
            kind = "first"
            if i:
                prev_last = self.segments[i - 1][2]
                again = first <= max(1, 0.01 * prev_last) or (from_start and first <= max(s0, 1))
                kind = "new run" if again else "resumed"
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
        # the best-evidenced new run: the fewer train records on either side of its reset
        support = max(
            (
                min(prev["records"], s["records"])
                for prev, s in itertools.pairwise(segs)
                if s["kind"] == "new run"
            ),
            default=0,
        )
        # separate runs appended to one log are mixed into one curve (a warning); resuming from a
        # checkpoint is how runs survive crashes (a note)
        finding = Finding(
            id="run-restart",
            severity="warning" if n_runs > 1 else "info",
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
        return [too_few(finding, support, MIN_SEGMENT_RECORDS, "train records around a reset")]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_seen": self.n_seen,
            "last": {k: list(v) for k, v in self.last.items()},
            "recent": [list(s) for s in self.recent],
            "segments": [list(s) for s in self.segments],
            "extra_resets": self.extra_resets,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_seen = int(state["n_seen"])
        self.last = {str(k): list(v) for k, v in state["last"].items()}
        self.recent = deque((signature_from_json(s) for s in state["recent"]), maxlen=_WINDOW)
        self.segments = [[int(x) for x in s] for s in state["segments"]]
        self.extra_resets = int(state["extra_resets"])
