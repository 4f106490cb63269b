"""``too-few-steps``: the run stopped, still learning, after too few optimizer steps.

``underfitting`` (detectors/underfit.py) leaves a run of under 50 logged steps alone: "a run that
is simply short has not had the chance to learn". When that short run is the mistake, this
names it. The fix loop's case (round 4, tune half): the digits CNN with a multi-GPU recipe's
``grad_accum: 16`` on 1.4k samples makes 16 optimizer steps in 8 epochs; its eval loss falls at
every eval, 2.66 → 0.76 (a third of ln 10), 84 % accuracy where the stable run reaches 99 %.

All must hold (from the mechanism; none is a tuned number):

- **few optimizer steps**: the last train step logged is under ``MIN_STEPS`` (50; the step a
  trainer logs counts optimizer steps, so accumulation shows as fewer of them);
- **still learning at the end**: with ``MIN_EVALS`` evals or more, the eval loss ends at its
  best and fell at all but at most one of them; else the train loss of the run's last third is
  at most ``FALLING`` of its middle third's (still falling fast);
- **far from learned**: a classifier's last eval (else train) loss is still ``FAR`` × ln(C) or
  more, a fifth of a uniform guess's (the stable digits CNN ends near 0.02 ln 10; two epochs of
  it, 46 steps, at 0.10: short by choice and nearly learned, nothing is said), or its eval loss
  fell at every one of ``STEADY`` evals or more (it had not levelled off at any of them: batch
  512 on the digits CNN, 24 steps, 2.31 → 0.42 over 8 evals, each below the last, 89 %); a
  language model has no such floor and is judged by the two above;
- **nothing unstable**: no non-finite loss, and the last loss under the first;
- **the steps are updates**: some train record's epoch differs from its step (a log with one
  record per epoch, its step *being* the epoch -- an ultralytics ``results.csv`` -- says nothing
  of how many optimizer steps ran, so nothing is said).

The fix gives the run more optimizer steps, never a different LR (class ``progress``): no
accumulation when ``grad_accum`` > 1 (the same epochs, that many times the steps); else, when the
run stopped at ``max_steps``, a budget ``MORE``× larger; else ``MORE``× the epochs. Which of them
applies is read from the config's facts; with none known, the advice is words only.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, make_fix
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: a run that made fewer optimizer steps than this is short
MIN_STEPS = 50
#: evals needed to read the eval loss's trend
MIN_EVALS = 3
#: the last third's mean train loss at most this share of the middle third's: still falling fast
FALLING = 0.8
#: a classifier's loss at or above this share of ln(C) is far from learned
FAR = 0.2
#: evals that all fell, each below the last: the run had not levelled off, whatever its level
STEADY = 5
#: how much longer the fix makes the run
MORE = 10
#: losses kept (a run that fires has fewer than MIN_STEPS of them)
KEEP = 2 * MIN_STEPS


class ShortRunDetector:
    """``too-few-steps`` (see the module docstring)."""

    ids: tuple[str, ...] = ("too-few-steps",)

    def __init__(self) -> None:
        self.losses: list[float] = []  # the first KEEP finite train losses
        self.n_loss = 0
        self.n_nonfinite = 0
        self.last_step = -1
        self.evals: list[float] = []  # the first KEEP finite eval losses
        #: some train record's epoch differs from its step: the steps are not epochs
        self.steps_not_epochs = False

    def update(self, record: StepRecord) -> Finding | None:
        if (
            record.eval_loss is not None
            and math.isfinite(record.eval_loss)
            and len(self.evals) < KEEP
        ):
            self.evals.append(float(record.eval_loss))
        if record.kind != "train":
            return None
        self.last_step = max(self.last_step, int(record.step))
        if record.epoch is not None and float(record.epoch) != float(record.step):
            self.steps_not_epochs = True
        if record.loss is None:
            return None
        if not math.isfinite(record.loss):
            self.n_nonfinite += 1
            return None
        self.n_loss += 1
        if len(self.losses) < KEEP:
            self.losses.append(float(record.loss))
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        ev = batch.floats("eval_loss")
        ok = np.flatnonzero(np.isfinite(ev))
        need = KEEP - len(self.evals)
        if ok.size and need > 0:
            self.evals.extend(float(x) for x in ev[ok[:need]])
        t = np.flatnonzero(batch.train)
        if t.size == 0:
            return
        self.last_step = max(self.last_step, int(batch.steps[t].max()))
        ep = batch.floats("epoch")[t]  # NaN where a record has none
        if np.any(np.isfinite(ep) & (ep != batch.steps[t])):
            self.steps_not_epochs = True
        v = batch.floats("loss")[t]
        none = batch.none("loss")
        present = t.size if none is None else int((~none[t]).sum())
        fin = np.isfinite(v)
        self.n_nonfinite += present - int(fin.sum())
        self.n_loss += int(fin.sum())
        need = KEEP - len(self.losses)
        if need > 0:
            self.losses.extend(float(x) for x in v[fin][:need])

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        steps = self.last_step + 1
        if not (0 < steps < MIN_STEPS) or self.n_nonfinite or len(self.losses) < 6:
            return []
        if not self.steps_not_epochs:
            return []
        if self.losses[-1] >= self.losses[0]:
            return []
        learning = self._still_learning()
        if learning is None:
            return []
        c = _classes(facts)
        last = self.evals[-1] if len(self.evals) >= MIN_EVALS else _mean(self._thirds()[2])
        ev = self.evals
        steady = len(ev) >= STEADY and all(b < a for a, b in pairwise(ev))
        if facts.get("num_classes") is not None:
            if c is None or (last < FAR * math.log(c) and not steady):
                return []
            far = f", still {last / math.log(c):.0%} of ln({c})"
        else:
            far = ""
        fix = self._fix(facts, steps)
        return [
            Finding(
                id="too-few-steps",
                severity="warning",
                title=f"The run stopped after {steps} optimizer steps, still learning{far}",
                explanation=(
                    f"The run made {steps} optimizer steps and {learning}{far}, with nothing "
                    "unstable (no NaN/inf; the loss ended below its start). It is not learning "
                    "too slowly per step: it stopped too early. Give it more optimizer steps "
                    "(less gradient accumulation, a larger step budget or more epochs); the LR "
                    "is not the problem and stays as it is. Afterwards the loss should flatten "
                    "out before the run ends."
                ),
                steps=[self.last_step],
                evidence={
                    "optimizer_steps": steps,
                    "min_steps": MIN_STEPS,
                    "last_loss": round(last, 5),
                    "evals": len(self.evals),
                    "direction": "progress",
                },
                fixes=[fix] if fix is not None else [Fix("Train for more optimizer steps.")],
                source="log",
            )
        ]

    def _still_learning(self) -> str | None:
        """How the log shows the run still learning at its end, or None."""
        ev = self.evals
        if len(ev) >= MIN_EVALS:
            down = sum(b < a for a, b in pairwise(ev))
            if ev[-1] <= min(ev) and down >= len(ev) - 2:
                return (
                    f"its eval loss fell at {down} of {len(ev) - 1} evals to its best, "
                    f"{fmt(ev[-1])}, at the end"
                )
            return None
        _, mid, end = self._thirds()
        a, b = _mean(mid), _mean(end)
        if b <= FALLING * a:
            return f"its train loss was still falling fast at the end ({fmt(a)} → {fmt(b)})"
        return None

    def _thirds(self) -> tuple[list[float], list[float], list[float]]:
        n = len(self.losses)
        k = n // 3
        return self.losses[:k], self.losses[k : n - k], self.losses[n - k :]

    def _fix(self, facts: ConfigFacts, steps: int) -> Fix | None:
        accum = facts.number("grad_accum")
        if accum is not None and accum > 1:
            return make_fix(
                facts,
                f"Accumulate no gradients ({accum:g} → 1): {accum:g}× the optimizer steps "
                "over the same epochs",
                grad_accum=1,
            )
        budget = facts.number("max_steps", positive=True)
        if budget is not None and steps >= 0.9 * budget:
            new = int(budget) * MORE
            return make_fix(
                facts,
                f"Raise the step budget ({budget:g} → {new}); the run stopped at it",
                max_steps=new,
            )
        epochs = facts.number("epochs", positive=True)
        if epochs is not None:
            new = math.ceil(epochs) * MORE
            return make_fix(facts, f"Train {MORE}× longer ({epochs:g} → {new} epochs)",
                            epochs=new)  # fmt: skip
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "losses": list(self.losses),
            "n_loss": self.n_loss,
            "n_nonfinite": self.n_nonfinite,
            "last_step": self.last_step,
            "evals": list(self.evals),
            "steps_not_epochs": self.steps_not_epochs,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.losses = [float(x) for x in state["losses"]]
        self.n_loss = int(state["n_loss"])
        self.n_nonfinite = int(state["n_nonfinite"])
        self.last_step = int(state["last_step"])
        self.evals = [float(x) for x in state["evals"]]
        self.steps_not_epochs = bool(state.get("steps_not_epochs", False))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _classes(facts: ConfigFacts) -> int | None:
    v = facts.get("num_classes")
    return v if isinstance(v, int) and not isinstance(v, bool) and v >= 2 else None
