"""The training loss at both ends of a run: what the sanity table (detectors/sanity.py) and the
failed-run fallback (detectors/fallback.py) judge a run's health by.

:class:`LossEnds` keeps the first and last ``KEEP`` finite train losses, the non-finite ones
(how many, the first step, whether the run ended on one), the last step and the last finite eval
loss: a few dozen numbers whatever the log's length, fed record by record or in bulk (the two
paths leave the same state, ``detectors.base``).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.records import ConfigFacts, Finding, StepRecord

__all__ = ["KEEP", "LossEnds", "LossEndsDetector", "classes"]

#: losses kept at each end of the run
KEEP = 20


class LossEnds:
    """First and last finite train losses, non-finite ones, the last eval loss."""

    def __init__(self) -> None:
        self.n_loss = 0
        self.n_nonfinite = 0
        self.ends_nonfinite = False
        self.first_bad: int | None = None
        self.first: list[float] = []
        self.last: deque[float] = deque(maxlen=KEEP)
        self.last_step = 0
        self.eval_loss = math.nan

    def update(self, record: StepRecord) -> None:
        if record.eval_loss is not None and math.isfinite(record.eval_loss):
            self.eval_loss = record.eval_loss
        if record.kind != "train" or record.loss is None:
            return
        self.last_step = max(self.last_step, record.step)
        if not math.isfinite(record.loss):
            self.n_nonfinite += 1
            self.ends_nonfinite = True
            if self.first_bad is None:
                self.first_bad = record.step
            return
        self.ends_nonfinite = False
        self.n_loss += 1
        if len(self.first) < KEEP:
            self.first.append(record.loss)
        self.last.append(record.loss)

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of ``batch``."""
        ev = batch.floats("eval_loss")
        ok = np.flatnonzero(np.isfinite(ev))
        if ok.size:
            self.eval_loss = batch.take("eval_loss", ok[-1:])[0]
        t = np.flatnonzero(batch.train)
        none = batch.none("loss")
        present = t if none is None else t[~none[t]]
        if present.size == 0:
            return
        steps = batch.steps[present]
        self.last_step = max(self.last_step, int(steps.max()))
        v = batch.floats("loss")[present]
        finite = np.isfinite(v)
        fin = present[finite]
        bad = np.flatnonzero(~finite)
        if bad.size:
            self.n_nonfinite += int(bad.size)
            if self.first_bad is None:
                self.first_bad = int(steps[bad[0]])
        self.ends_nonfinite = not bool(finite[-1])
        self.n_loss += int(fin.size)
        if fin.size:
            need = KEEP - len(self.first)
            if need > 0:
                self.first.extend(batch.take("loss", fin[:need]))
            self.last.extend(batch.take("loss", fin[-KEEP:]))

    def medians(self) -> tuple[float, float] | None:
        """(median of the first KEEP, of the last KEEP) finite losses; None before any."""
        if not self.first:
            return None
        return statistics.median(self.first), statistics.median(self.last)

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_loss": self.n_loss,
            "n_nonfinite": self.n_nonfinite,
            "ends_nonfinite": self.ends_nonfinite,
            "first_bad": self.first_bad,
            "first": list(self.first),
            "last": list(self.last),
            "last_step": self.last_step,
            "eval_loss": self.eval_loss,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_loss = int(state["n_loss"])
        self.n_nonfinite = int(state["n_nonfinite"])
        self.ends_nonfinite = bool(state["ends_nonfinite"])
        self.first_bad = state["first_bad"]
        self.first = list(state["first"])
        self.last = deque(state["last"], maxlen=KEEP)
        self.last_step = int(state["last_step"])
        self.eval_loss = float(state["eval_loss"])


def classes(facts: ConfigFacts) -> tuple[int, bool] | None:
    """(C, is a language model) for the ln(C) scale: ``num_classes``, else ``vocab_size``."""
    for name in ("num_classes", "vocab_size"):
        v = facts.get(name)
        if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
            return v, name == "vocab_size"
    return None


class LossEndsDetector:
    """A detector judged on :class:`LossEnds` alone: it feeds them and owns their state; a
    subclass gives ``ids`` and ``finish`` (the sanity table, the failed-run fallback)."""

    def __init__(self) -> None:
        self.ends = LossEnds()

    def update(self, record: StepRecord) -> Finding | None:
        self.ends.update(record)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        self.ends.update_many(batch)

    def state_dict(self) -> dict[str, Any]:
        return self.ends.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ends.load_state_dict(state)
