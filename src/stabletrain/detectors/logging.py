"""``duplicate-logging``: identical records repeated — several processes logging without a guard.

Seed 004: "the same epoch results printed 4 times" — every rank of a multi-process run printed
its (all-reduced, hence identical) metrics. This detector must see the RAW records (``RunData.raw``,
before the readers drop exact duplicates); :func:`stabletrain.detectors.registry.replay` feeds it
``raw`` for that reason (``wants_raw = True``).

Rule: a record is a duplicate when an identical one (every field but ``rank``, ``wall_time`` and
``step_time``, which differ per process; other metrics only for records without a loss, grad norm,
LR... — see :func:`signature`) appeared among the last 16 distinct records. Fires when ≥ 3 records
are duplicated and they are ≥ 20 % of the distinct records, or when one record appears ≥ 3 times
(a pasted excerpt of a few lines from 8 ranks), so a single line repeated at a resume boundary
does not count. The typical copy count (often = the number of processes) is reported.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, OrderedDict
from operator import attrgetter
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

_IGNORED = ("rank", "wall_time", "step_time")
_WINDOW = 16


_FIELDS = tuple(
    f.name for f in dataclasses.fields(StepRecord) if f.name not in _IGNORED and f.name != "metrics"
)
_VALUES = attrgetter(*_FIELDS)


def _nan_safe(v: object) -> object:
    # NaN != NaN and hashes by identity: map it to a marker so two NaN losses compare equal.
    return "nan" if isinstance(v, float) and v != v else v


#: what a training step measured, identical on every rank once all-reduced
_MEASURED = attrgetter(
    "loss", "grad_norm", "clip_coef", "lr", "loss_scale", "accuracy", "eval_loss", "eval_accuracy"
)


def signature(record: StepRecord) -> tuple[object, ...]:
    """A hashable key of a record's content, ignoring rank and timing (NaN-safe).

    The other metrics count only when the record measured none of the training values (loss,
    grad norm, LR, ...): next to them, what differs between copies of one step is what each
    process measures for itself — throughput, TFLOPs, memory (torchtitan's 8 ranks print one step
    with 8 slightly different ``tps``).

    A plain tuple of the field values: this runs once per record of million-step logs, so it
    avoids building a dict or a string per record.
    """
    values = tuple(map(_nan_safe, _VALUES(record)))
    if record.metrics and all(v is None for v in _MEASURED(record)):
        return (*values, tuple(sorted((k, _nan_safe(v)) for k, v in record.metrics.items())))
    return values


def _seen_before(steps: np.ndarray, train: np.ndarray) -> np.ndarray:
    """Records whose (step, train or not) appeared earlier in the arrays."""
    n = len(steps)
    out = np.zeros(n, dtype=bool)
    for part in (np.flatnonzero(train), np.flatnonzero(~train)):
        s = steps[part]
        if s.size < 2 or (s[1:] > s[:-1]).all():
            continue  # strictly increasing: every step is new
        order = np.argsort(s, kind="stable")
        ordered = s[order]
        again = np.zeros(len(s), dtype=bool)
        again[order[1:][ordered[1:] == ordered[:-1]]] = True
        out[part[again]] = True
    return out


def signature_from_json(key: Any) -> Any:
    """A :func:`signature` back from a state dict (JSON turns its tuples into lists)."""
    return tuple(signature_from_json(v) for v in key) if isinstance(key, (list, tuple)) else key


class DuplicateLoggingDetector:
    """Counts exact repeats of recent records."""

    ids: tuple[str, ...] = ("duplicate-logging",)
    #: replay() feeds this detector the raw, uncleaned records.
    wants_raw: bool = True

    def __init__(self, min_duplicates: int = 3, min_fraction: float = 0.2) -> None:
        self.min_duplicates = min_duplicates
        self.min_fraction = min_fraction
        self.recent: OrderedDict[tuple[object, ...], list[int]] = (
            OrderedDict()
        )  # sig -> [copies, step]
        self.copies: Counter[int] = Counter()  # copies -> how many distinct records
        self.n_distinct = 0
        self.n_duplicates = 0
        self.first_steps: list[int] = []

    def _retire(self, copies: int) -> None:
        self.copies[copies] += 1

    def update(self, record: StepRecord) -> Finding | None:
        self._see(signature(record), record.step)
        return None

    def _see(self, sig: tuple[object, ...], step: int) -> None:
        hit = self.recent.get(sig)
        if hit is not None:
            hit[0] += 1
            self.n_duplicates += 1
            if hit[0] == 2 and len(self.first_steps) < 50:
                self.first_steps.append(hit[1])
            self.recent.move_to_end(sig)
            return
        self.n_distinct += 1
        self.recent[sig] = [1, step]
        if len(self.recent) > _WINDOW:
            _, (copies, _step) = self.recent.popitem(last=False)
            self._retire(copies)

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``).

        A signature holds the step and kind, so a record can only repeat one whose (step, kind)
        it shares. Records whose (step, kind) is new — not earlier in the batch, not in the window
        — are certainly new: they go in as a block (only the last 16 need a signature). The rest
        go through the per-record rule.
        """
        steps, train = batch.steps, batch.train
        n = len(batch)
        if n == 0:
            return
        maybe = _seen_before(steps, train)
        for sig in self.recent:
            same = (steps == sig[0]) & (train == (sig[1] == "train"))
            maybe |= same
        start = 0
        for i in [*np.flatnonzero(maybe).tolist(), n]:
            self._insert_new(batch, start, i)
            if i < n:
                self._see(signature(batch[i]), batch[i].step)
            start = i + 1

    def _insert_new(self, batch: Batch, a: int, b: int) -> None:
        """Records ``a:b``, none of which repeats anything in the window, as ``_see`` would."""
        m = b - a
        if m <= 0:
            return
        self.n_distinct += m
        evict = len(self.recent) + m - _WINDOW
        while evict > 0 and self.recent:
            _, (copies, _step) = self.recent.popitem(last=False)
            self._retire(copies)
            evict -= 1
        if evict > 0:
            self.copies[1] += evict
        for r in batch[max(a, b - _WINDOW) : b]:
            self.recent[signature(r)] = [1, r.step]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        copies = self.copies + Counter(v[0] for v in self.recent.values())
        duplicated = sum(n for c, n in copies.items() if c > 1)
        many = (
            duplicated >= self.min_duplicates and duplicated >= self.min_fraction * self.n_distinct
        )
        # one record printed ≥ 3 times: several processes (a resume repeats a line once)
        if not many and max(copies, default=1) < 3:
            return []
        typical = max((c for c in copies if c > 1), key=lambda c: copies[c])
        world = facts.get("world_size") if facts is not None else None
        return [
            Finding(
                id="duplicate-logging",
                severity="warning",
                title=f"Each record is logged {typical}× ({duplicated} of {self.n_distinct} records repeated)",
                explanation=(
                    f"{duplicated} of {self.n_distinct} distinct records appear more than once, "
                    f"typically {typical} times, identical in every training value. That is the "
                    "signature "
                    f"of {typical} processes (ranks) each writing the same metrics"
                    + (f" (world size {world})" if world else "")
                    + f": the log is {typical}× longer and confusing, and any metric summed from "
                    "it is wrong. The doctor kept one copy of each record and analysed that. "
                    "Log, print and save checkpoints only on the main process; afterwards each "
                    "step or epoch should appear exactly once."
                ),
                steps=self.first_steps,
                evidence={
                    "typical_copies": typical,
                    "duplicated_records": duplicated,
                    "distinct_records": self.n_distinct,
                    "extra_lines": self.n_duplicates,
                },
                fixes=[
                    Fix(
                        "Guard logging with a rank check (Lightning: rank_zero_only / "
                        "self.log(..., rank_zero_only=True); Accelerate: accelerator.is_main_process)",
                        code="if not torch.distributed.is_initialized() or torch.distributed.get_rank() == 0:\n"
                        "    print(epoch_summary)",
                    )
                ],
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": [[k, v[0], v[1]] for k, v in self.recent.items()],
            "copies": sorted(self.copies.items()),
            "n_distinct": self.n_distinct,
            "n_duplicates": self.n_duplicates,
            "first_steps": list(self.first_steps),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent = OrderedDict(
            (signature_from_json(k), [int(c), int(s)]) for k, c, s in state["recent"]
        )
        self.copies = Counter({int(c): int(n) for c, n in state["copies"]})
        self.n_distinct = int(state["n_distinct"])
        self.n_duplicates = int(state["n_duplicates"])
        self.first_steps = [int(s) for s in state["first_steps"]]
