"""``warmup-too-long``: the run ended while its learning rate was still warming up.

A warm-up copied from a long run into a short one (1000 warm-up steps in a 100-step run) keeps
the LR at a fraction of its level for the whole run: the run is slow, not unstable, and every
LR cut the other detectors propose (a clip firing on every step, a batch-size bound) makes it
slower still. Two marks, either is enough:

- **the log**: the LR rose through the run and was still rising at its last logged step — the
  last LR is the run's highest, above ``RISE`` x the first one, and above the LR ``TAIL`` logged
  values earlier (a schedule that reached its level and stayed there is not rising);
- **the config**: a warm-up (``warmup_steps``, or ``warmup_ratio`` x the run) at least as long
  as the run (``max_steps``, else the steps the log shows).

The fix is a warm-up of ``SHARE`` of the run (the usual 5-10 %), in the key the config uses;
its direction is *progress*: the LR reaches its level sooner, never lower.

Limits: a log cut short during its warm-up (a crash at step 50 of a 10,000-step run) shows the
same rising LR; with the run's ``max_steps`` in the config, only the config's mark counts.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, make_fix, sentence
from stabletrain.records import ConfigFacts, Finding, StepRecord

#: the last LR must be this many times the first for a ramp to count
RISE = 2.0
#: logged LRs kept at the end ("still rising" compares the last with the oldest of them)
TAIL = 5
#: the warm-up the fix proposes, as a share of the run
SHARE = 0.1
#: logged train LRs needed
MIN_RECORDS = 20


class WarmupLongDetector:
    """Was the LR still warming up when the run ended?"""

    ids: tuple[str, ...] = ("warmup-too-long",)

    def __init__(self) -> None:
        self.n = 0
        self.first_step: int | None = None
        self.last_step = 0
        self.first_lr: float | None = None
        self.max_lr = 0.0
        self.tail: deque[float] = deque(maxlen=TAIL)

    def update(self, record: StepRecord) -> Finding | None:
        lr = record.lr
        if record.kind != "train" or lr is None or not math.isfinite(lr) or lr <= 0:
            return None
        self.n += 1
        if self.first_step is None:
            self.first_step, self.first_lr = record.step, lr
        self.last_step = max(self.last_step, record.step)
        self.max_lr = max(self.max_lr, lr)
        self.tail.append(lr)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        lr = batch.floats("lr")
        steps = batch.steps  # (the shared int column: no float copy of a 10M-row step column)
        ok = np.flatnonzero(batch.train & np.isfinite(lr) & (lr > 0))
        if ok.size == 0:
            return
        self.n += int(ok.size)
        if self.first_step is None:
            self.first_step, self.first_lr = int(steps[ok[0]]), float(lr[ok[0]])
        self.last_step = max(self.last_step, int(steps[ok].max()))
        self.max_lr = max(self.max_lr, float(lr[ok].max()))
        self.tail.extend(float(x) for x in lr[ok[-TAIL:]])

    def _run_steps(self, facts: ConfigFacts) -> float | None:
        total = facts.number("max_steps", positive=True)
        if total is not None:
            return total
        if self.first_step is None:
            return None
        return float(self.last_step + 1)

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        total = self._run_steps(facts)
        if total is None:
            return []
        reasons: list[str] = []
        evidence: dict[str, Any] = {"run_steps": total}
        warm = facts.number("warmup_steps", positive=True)
        ratio = facts.number("warmup_ratio", positive=True)
        configured = warm if warm is not None else (ratio * total if ratio is not None else None)
        if configured is not None and configured >= total:
            evidence["warmup_steps"] = configured
            reasons.append(
                f"the configured warm-up ({fmt(configured)} steps) is at least as long as the "
                f"run ({fmt(total)} steps)"
            )
        rising = self._still_rising()
        if rising and "max_steps" not in facts:
            evidence.update(first_lr=self.first_lr, last_lr=self.tail[-1], last_step=self.last_step)
            reasons.append(
                f"the LR was still rising when the log ends (step {self.last_step}: "
                f"{fmt(self.tail[-1])}, from {fmt(self.first_lr)})"
            )
        if not reasons:
            return []
        evidence["direction"] = "progress"
        lr_cfg = facts.number("lr", positive=True)
        if self.n and lr_cfg is not None:
            evidence["peak_share"] = round(self.max_lr / lr_cfg, 4)
        want = max(1, round(SHARE * total))
        if warm is None and ratio is not None:
            fix = make_fix(
                facts,
                f"Warm up over {SHARE:.0%} of the run, so the LR reaches its level early.",
                warmup_ratio=SHARE,
            )
        else:
            fix = make_fix(
                facts,
                f"Warm up over {SHARE:.0%} of the run ({want} of {fmt(total)} steps), so the LR "
                "reaches its level early.",
                warmup_steps=want,
            )
        share = evidence.get("peak_share")
        reached = f" (it reached {share:.0%} of the configured LR)" if share is not None else ""
        return [
            Finding(
                id="warmup-too-long",
                severity="warning",
                title=f"The warm-up is longer than the run: the LR never reached its level{reached}",
                explanation=(
                    sentence("; and ".join(reasons))
                    + ". The run trained at a fraction of its learning rate throughout: it is "
                    "slow, not unstable, and lowering the LR would make it slower still. "
                    "Shorten the warm-up to a small share of the run; afterwards the logged LR "
                    "should reach its configured value within the first tenth of the run."
                ),
                steps=[self.first_step] if self.first_step is not None else [],
                evidence=evidence,
                fixes=[fix],
                source="log",
            )
        ]

    def _still_rising(self) -> bool:
        if self.n < MIN_RECORDS or self.first_lr is None or len(self.tail) < TAIL:
            return False
        last = self.tail[-1]
        return last >= self.max_lr and last >= RISE * self.first_lr and last > self.tail[0]

    def state_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "first_lr": self.first_lr,
            "max_lr": self.max_lr,
            "tail": list(self.tail),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n = int(state["n"])
        self.first_step = state["first_step"]
        self.last_step = int(state["last_step"])
        self.first_lr = state["first_lr"]
        self.max_lr = float(state["max_lr"])
        self.tail = deque(state["tail"], maxlen=TAIL)
