"""``lr-jump``: the learning rate jumped up between two logged steps, against its own trend.

A schedule is smooth in log space: between consecutive logged LRs, the rise per step of
``log(lr)`` shrinks (a power-law warm-up: linear, YOLOX's quadratic, cubic), stays (an exponential
warm-up) or changes gradually (one-cycle's cosine rise; cosine and linear decay and plateau cuts
only lower the LR). So the LR's own *trend* — the per-step log rise of the interval before —
predicts the next logged LR; so does a warm-up from step 0 no steeper than a cubic
(``lr_t / lr_s = (t / s) ** RAMP_POWER``: the first interval, which has no trend yet, and a
sparse log of a rise that steepens, one-cycle's flat cosine start). A rise of ``JUMP`` (3x) or more
*above the larger prediction* is a discontinuity: a scheduler stepped per batch instead of per
epoch, a resumed run with another LR, code writing ``param_group["lr"]``, a restart of a cyclic
schedule. A falling or flat trend predicts no rise; a rise from step 0 is always a ramp.
Downward cuts are expected and are not reported.

The finding says where (the step, from → to), and what the loss and gradient norm did in the
``AFTER`` (10) logged steps after the jump compared with the 10 before (medians), so the
instability it caused is tied to it (the report's chain: lr-jump → loss-spike / nonfinite /
divergence). The fix points at the schedule and takes the LR *before* the jump as the reference
value — never the peak, which is the bug.

Limits: a cosine schedule with warm restarts (SGDR) jumps by design: the finding says so, and a
config that names restarts silences it. Steps that go backwards (a restarted run) reset the
comparison. A warm-up steeper than cubic logged too sparsely to show its trend, a staircase
warm-up rising 3x or more per stair, or a sparse log of a cyclic rise that steepens mid-run reads
as a jump; early in a run, a jump within the cubic's room (1 → 10x between steps 1 and 10) does
not. Keeps at most ``max_jumps`` jumps.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.base import epoch_index
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, user_key
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: a logged LR this many times above what the LR's own trend predicts is a jump (room for
#: rounding, uneven logging and a trend that steepens smoothly: one-cycle's cosine rise, logged
#: sparsely, beats its previous interval's rate by at most 4/3)
JUMP = 3.0
#: the steepest warm-up from step 0 accepted without a trend: ``lr ∝ step ** RAMP_POWER``
#: (YOLOX's quadratic and a cubic are schedules)
RAMP_POWER = 3.0
#: logged values on each side of a jump that describe its effect
AFTER = 10


class LRJumpDetector:
    """Upward LR discontinuities not explained by a smooth schedule."""

    ids: tuple[str, ...] = ("lr-jump",)

    def __init__(self, jump: float = JUMP, max_jumps: int = 16) -> None:
        self.jump = jump
        self.max_jumps = max_jumps
        self.prev_lr: float | None = None
        #: the step of ``prev_lr`` (``prev_step``: of the last train record, with or without one)
        self.prev_lr_step: int | None = None
        #: the LR's trend: the per-step rise of log(lr) over the interval before ``prev_lr``
        #: (None: no interval yet)
        self.rate: float | None = None
        self.prev_step: int | None = None
        self.n_jumps = 0
        #: {"step", "epoch", "from", "to", "from_step", "loss_before", "grad_before",
        #:  "loss_after": [...], "grad_after": [...]}
        self.jumps: list[dict[str, Any]] = []
        self.loss_before: deque[float] = deque(maxlen=AFTER)
        self.grad_before: deque[float] = deque(maxlen=AFTER)

    # -- per record ----------------------------------------------------------------------------
    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        if self.prev_step is not None and record.step < self.prev_step:
            self.prev_lr = self.rate = None  # a restarted run: its LR starts over
        found: Finding | None = None
        lr = record.lr
        if lr is not None and math.isfinite(lr) and lr > 0:
            jumped = self._is_jump(lr, record.step)
            if jumped:
                found = self._add_jump(record, lr)
            self._advance(lr, record.step, jumped)
        self.prev_step = record.step
        self._observe(record.loss, record.grad_norm)
        return found

    def _is_jump(self, lr: float, step: int) -> bool:
        """Whether ``lr`` at ``step`` rose ``jump``x or more above the trend's prediction."""
        prev, at = self.prev_lr, self.prev_lr_step
        if prev is None or at is None or lr < self.jump * prev:
            return False
        if at <= 0:
            return False  # a ramp from step 0: any rise from there fits one
        # a schedule is a warm-up from step 0 no steeper than a cubic, or the LR's own trend
        # going on (a flat or falling one predicts no rise), whichever predicts more
        ramp = RAMP_POWER * math.log(max(step, at) / at)
        trend = 0.0 if self.rate is None else max(self.rate, 0.0) * max(step - at, 0)
        return math.log(lr) - math.log(prev) >= math.log(self.jump) + max(ramp, trend)

    def _advance(self, lr: float, step: int, jumped: bool = False) -> None:
        """Move the trend on to ``lr`` at ``step`` (after a jump, the LR's new level is flat)."""
        if jumped:
            self.rate = 0.0
        elif (
            self.prev_lr is not None and self.prev_lr_step is not None and step > self.prev_lr_step
        ):
            self.rate = (math.log(lr) - math.log(self.prev_lr)) / (step - self.prev_lr_step)
        self.prev_lr, self.prev_lr_step = lr, step

    def _add_jump(self, record: StepRecord, lr: float) -> Finding:
        self.n_jumps += 1
        prev = self.prev_lr
        assert prev is not None  # (checked by _is_jump)
        if len(self.jumps) < self.max_jumps:
            self.jumps.append(
                {
                    "step": record.step,
                    "epoch": epoch_index(record.epoch),
                    "from": prev,
                    "to": lr,
                    "from_step": self.prev_step,
                    "loss_before": _median(self.loss_before),
                    "grad_before": _median(self.grad_before),
                    "loss_after": [],
                    "grad_after": [],
                }
            )
        return Finding(
            id="lr-jump",
            severity="warning",
            title=f"learning rate jumped {lr / prev:.3g}x at step {record.step}: "
            f"{fmt(prev)} → {fmt(lr)}",
            steps=[record.step],
            evidence={"from": prev, "to": lr},
            source="log",
        )

    def _observe(self, loss: float | None, grad: float | None) -> None:
        pending = self.jumps[-1] if self.jumps else None
        for v, before, key in ((loss, self.loss_before, "loss_after"),
                               (grad, self.grad_before, "grad_after")):  # fmt: skip
            if v is None or not math.isfinite(v):
                continue
            before.append(v)
            if pending is not None and len(pending[key]) < AFTER:
                pending[key].append(v)

    # -- bulk ----------------------------------------------------------------------------------
    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``): the records that can be a jump
        or a restart one by one, the stretches between them in bulk."""
        lr, steps = batch.floats("lr"), batch.steps
        batch.floats("loss")
        batch.floats("grad_norm")
        train = batch.train
        ok = train & np.isfinite(lr) & (lr > 0)
        # candidates: a positive LR at least `jump` times the previous positive LR, and any
        # record whose step goes backwards (among train records)
        t_idx = np.flatnonzero(train)
        odd = np.zeros(len(batch), dtype=bool)
        if t_idx.size:
            back = np.zeros(t_idx.size, dtype=bool)
            back[1:] = steps[t_idx[1:]] < steps[t_idx[:-1]]
            odd[t_idx[back]] = True
            odd[t_idx[0]] = True  # compared with the state before the batch
        l_idx = np.flatnonzero(ok)
        if l_idx.size:
            rise = np.zeros(l_idx.size, dtype=bool)
            rise[1:] = lr[l_idx[1:]] >= self.jump * lr[l_idx[:-1]]
            rise[0] = True
            odd[l_idx[rise]] = True
        start = 0
        for i in [*np.flatnonzero(odd).tolist(), len(batch)]:
            if i > start:
                self._stretch(batch, np.arange(start, i))
            if i < len(batch):
                self.update(batch[i])
            start = i + 1

    def _stretch(self, batch: Batch, idx: np.ndarray) -> None:
        """``update`` on records with no jump and no restart: only the state moves."""
        t = idx[batch.train[idx]]
        if t.size == 0:
            return
        lr = batch.floats("lr")[t]
        good = t[np.isfinite(lr) & (lr > 0)]
        lrs, steps = batch.objects("lr"), batch.objects("step")
        for i in good[-2:].tolist():  # (the trend is the last interval's)
            self._advance(lrs[i], steps[i])
        self.prev_step = steps[int(t[-1])]
        pending = self.jumps[-1] if self.jumps else None
        for col, before, key in (("loss", self.loss_before, "loss_after"),
                                 ("grad_norm", self.grad_before, "grad_after")):  # fmt: skip
            fin = t[np.isfinite(batch.floats(col)[t])]
            if fin.size == 0:
                continue
            if pending is not None and len(pending[key]) < AFTER:
                pending[key].extend(batch.take(col, fin[: AFTER - len(pending[key])]))
            before.extend(batch.take(col, fin[-AFTER:]))

    # -- run level -----------------------------------------------------------------------------
    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if not self.jumps:
            return []
        facts = facts or ConfigFacts()
        schedule = str(facts.get("schedule", "")).lower()
        if "restart" in schedule:
            return []  # the config says its LR restarts: that jump is the schedule
        first = self.jumps[0]
        lines = [self._line(j) for j in self.jumps[:5]]
        more = self.n_jumps - len(lines)
        worse = self._worse(first)
        explanation = (
            "The learning rate rose between two consecutive logged steps far above its own "
            f"trend ({self.jump:g}x or more above what the rise before it predicts): "
            + "; ".join(lines)
            + (f"; and {more} more" if more > 0 else "")
            + ". Warm-ups of any shape and cosine or linear decay are smooth and plateau schedulers only "
            "cut the LR, so something outside the schedule changed it: a scheduler stepped per "
            "batch instead of per epoch, a run resumed with another LR or a fresh scheduler, "
            "code writing param_group['lr'], or the restart of a cyclic schedule (SGDR restarts "
            "jump by design; if yours restarts, ignore this). "
            + (
                f"After the jump {worse}: the instability that follows is its effect. "
                if worse
                else ""
            )
            + f"Keep the LR at {fmt(first['from'])}, its value before the jump."
        )
        return [
            Finding(
                id="lr-jump",
                severity="warning",
                title=f"Learning rate jumped {first['to'] / first['from']:.3g}x at step "
                f"{first['step']} ({fmt(first['from'])} → {fmt(first['to'])}), outside any "
                "smooth schedule",
                explanation=explanation,
                steps=[j["step"] for j in self.jumps],
                epochs=sorted({j["epoch"] for j in self.jumps if j["epoch"] is not None}),
                evidence={
                    "jumps": self.n_jumps,
                    "step": first["step"],
                    "from": first["from"],
                    "to": first["to"],
                    "ratio": round(first["to"] / first["from"], 3),
                    "lr_at_onset": first["from"],
                    "loss_before": first["loss_before"],
                    "loss_after": _median(first["loss_after"]),
                    "grad_norm_before": first["grad_before"],
                    "grad_norm_after": _median(first["grad_after"]),
                    "direction": "instability",
                },
                fixes=self._fixes(facts, first),
                source="log",
            )
        ]

    def _line(self, j: dict[str, Any]) -> str:
        return (
            f"step {j['from_step']} → {j['step']}: {fmt(j['from'])} → {fmt(j['to'])} "
            f"({j['to'] / j['from']:.3g}x)"
        )

    @staticmethod
    def _worse(j: dict[str, Any]) -> str:
        """What got worse in the logged steps after the jump (medians vs the ones before)."""
        parts = []
        for name, b, a in (("the loss", j["loss_before"], _median(j["loss_after"])),
                           ("the gradient norm", j["grad_before"], _median(j["grad_after"]))):  # fmt: skip
            if b is not None and a is not None and a > 1.2 * b:
                parts.append(f"{name} rose from {fmt(b)} to {fmt(a)} (medians of {AFTER} steps)")
        return " and ".join(parts)

    @staticmethod
    def _fixes(facts: ConfigFacts, j: dict[str, Any]) -> list[Fix]:
        onset = j["from"]
        key = user_key(facts, "lr")
        configured = facts.number("lr", positive=True)
        fix = Fix(
            f"Find what raised the LR at step {j['step']} and keep it at {fmt(onset)} (the LR "
            f"before the jump; not the {fmt(j['to'])} after it): check where the scheduler is "
            "stepped (per optimizer step for step-based schedules), the LR a resumed run "
            "restores, and any code writing param_group['lr']."
            + (
                f" The configured {key} is {fmt(configured)}, {configured / onset:.3g}x the LR "
                "before the jump."
                if configured is not None and not 0.5 <= configured / onset <= 2.0
                else ""
            ),
            code=f"# after scheduler.step(): assert optimizer.param_groups[0]['lr'] <= {onset:g}",
        )
        return [fix]

    def state_dict(self) -> dict[str, Any]:
        return {
            "prev_lr": self.prev_lr,
            "prev_lr_step": self.prev_lr_step,
            "rate": self.rate,
            "prev_step": self.prev_step,
            "n_jumps": self.n_jumps,
            "jumps": [
                dict(j, loss_after=list(j["loss_after"]), grad_after=list(j["grad_after"]))
                for j in self.jumps
            ],
            "loss_before": list(self.loss_before),
            "grad_before": list(self.grad_before),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.prev_lr = state["prev_lr"]
        self.prev_step = state["prev_step"]
        # (a state saved before the trend was kept: the LR's step is the record's, no trend)
        self.prev_lr_step = state.get("prev_lr_step", self.prev_step)
        self.rate = state.get("rate")
        self.n_jumps = int(state["n_jumps"])
        self.jumps = [
            dict(j, loss_after=list(j["loss_after"]), grad_after=list(j["grad_after"]))
            for j in state["jumps"]
        ]
        self.loss_before = deque(state["loss_before"], maxlen=AFTER)
        self.grad_before = deque(state["grad_before"], maxlen=AFTER)


def _median(values: Any) -> float | None:
    vals = list(values)
    return statistics.median(vals) if vals else None
