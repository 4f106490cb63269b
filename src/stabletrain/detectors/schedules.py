"""Is the learning-rate schedule doing what it should? ``lr-constant``, ``lr-zero``,
``scheduler-late``, ``patience-conflict``.

- ``scheduler-late`` (seed 001: best loss at epoch 10, spike at 13, ReduceLROnPlateau with
  patience 10 cut the LR at epoch 24 — "14 epochs too late"): the first LR cut (a drop of ≥ 20 % in
  one record) came ≥ ``late_epochs`` after the best point of the loss series. Fires when the config
  says plateau, or, without config, when the LR is piecewise constant (cuts only), so cosine decay
  logged per epoch is not mistaken for a late cut.
- ``lr-constant`` (seed 003: "LR stayed at 2e-05 throughout all epochs despite validation loss
  plateauing"): a schedule (or plateau patience) is configured, the LR never decreased, and the
  loss series has gone ≥ 3 points (and ≥ 30 % of the run) without a new best.
- ``lr-zero``: the LR is 0 on every record, or for a stretch ≥ 3 records and ≥ 5 % of the run
  (one 0 at the start of a warmup or the end of a cosine-to-zero is normal).
- ``patience-conflict`` (seed 001: scheduler patience 10, early stopping 10): plateau patience ≥
  early-stopping patience, so early stopping ends the run before the LR can be cut. From facts;
  the log confirms it when the run ended with no LR cut.

The loss series is the eval loss (one point per eval) when there are ≥ 3 evals, else the
per-epoch mean training loss. State is O(#evals + #epochs), plus ≤ 32 recorded cuts.
The two plateau-scheduler findings are built in ``plateau.py`` from this detector's state.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from stabletrain.detectors import plateau
from stabletrain.detectors.bins import Bins
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, make_fix, user_key
from stabletrain.detectors.plateau import is_plateau
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: Schedule names (lower-case fragments) that must move the LR. Free-form names (LambdaLR,
#: custom) are not assumed to decay: a constant LR under them is not flagged.
_DECAYING = (
    "plateau",
    "cosine",
    "linear",
    "step",
    "exponential",
    "poly",
    "onecycle",
    "inverse_sqrt",
    "warmupdecay",
    "wsd",
)


class LRScheduleDetector:
    """Tracks the LR trajectory and the loss series it should react to."""

    ids: tuple[str, ...] = (
        "lr-constant",
        "lr-zero",
        "scheduler-late",
        "patience-conflict",
    )

    def __init__(self, cut_ratio: float = 0.8, late_epochs: int = 5, max_cuts: int = 32) -> None:
        self.cut_ratio = cut_ratio
        self.late_epochs = late_epochs
        self.max_cuts = max_cuts
        self.n_lr = 0
        self.first_lr: float | None = None
        self.last_lr: float | None = None
        self.max_lr = 0.0
        self.n_decrease = 0
        self.n_increase = 0
        self.cuts: list[list[Any]] = []  # [step, epoch, old, new]
        self.n_zero = 0
        self.zero_run = 0
        self.zero_run_start = 0
        self.longest_zero = (0, 0)  # (length, start step)
        #: the first positive LRs of a log whose first LR is 0 (a print's resolution, see _zero)
        self.after_zero: list[float] = []
        self.evals: list[list[Any]] = []  # [step, epoch, eval_loss]
        self.loss_bins = Bins(histogram=False)
        self.last_step = 0
        self.last_epoch: float | None = None

    def update(self, record: StepRecord) -> Finding | None:
        if record.eval_loss is not None and math.isfinite(record.eval_loss):
            self.evals.append([record.step, record.epoch, record.eval_loss])
        if record.kind != "train":
            return None
        self.last_step = max(self.last_step, record.step)
        if record.epoch is not None:
            self.last_epoch = record.epoch
        if record.loss is not None and math.isfinite(record.loss):
            self.loss_bins.add(record.step, record.epoch, record.loss)
        lr = record.lr
        if lr is None or not math.isfinite(lr):
            return None
        self.n_lr += 1
        if self.first_lr is None:
            self.first_lr = lr
        prev = self.last_lr
        if prev is not None:
            if lr < prev * (1 - 1e-9):
                self.n_decrease += 1
                if lr <= prev * self.cut_ratio and len(self.cuts) < self.max_cuts:
                    self.cuts.append([record.step, record.epoch, prev, lr])
            elif lr > prev * (1 + 1e-9):
                self.n_increase += 1
        self.last_lr = lr
        self.max_lr = max(self.max_lr, lr)
        if lr > 0.0 and self.first_lr == 0.0 and len(self.after_zero) < _AFTER_ZERO:
            self.after_zero.append(lr)
        if lr <= 0.0:
            if self.zero_run == 0:
                self.zero_run_start = record.step
            self.n_zero += 1
            self.zero_run += 1
            if self.zero_run > self.longest_zero[0]:
                self.longest_zero = (self.zero_run, self.zero_run_start)
        else:
            self.zero_run = 0
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        eval_loss, loss, lr = batch.floats("eval_loss"), batch.floats("loss"), batch.floats("lr")
        steps, train = batch.steps, batch.train
        epoch_none = batch.none("epoch")
        batch.check_bins()
        step_obj, epoch_obj = batch.objects("step"), batch.objects("epoch")
        for i in np.flatnonzero(np.isfinite(eval_loss)).tolist():
            self.evals.append([step_obj[i], epoch_obj[i], batch.objects("eval_loss")[i]])
        i_train = np.flatnonzero(train)
        if i_train.size == 0:
            return
        top = int(i_train[np.argmax(steps[i_train])])
        self.last_step = max(self.last_step, step_obj[top])
        has_epoch = i_train if epoch_none is None else i_train[~epoch_none[i_train]]
        if has_epoch.size:
            self.last_epoch = epoch_obj[int(has_epoch[-1])]
        i_loss = batch.finite("loss")
        self.loss_bins.add_many(batch, i_loss, loss[i_loss], batch.objects("loss"))
        i_lr = batch.finite("lr")
        if i_lr.size:
            self._lr_many(batch, i_lr, lr[i_lr])

    def _lr_many(self, batch: Batch, idx: np.ndarray, lr: np.ndarray) -> None:
        """The LR part of ``update`` for the finite LRs ``lr`` of records ``idx``."""
        objs = batch.take("lr", idx)
        self.n_lr += len(objs)
        if self.first_lr is None:
            self.first_lr = objs[0]
        # each LR against the one before it (the state's last LR for the first)
        cmp_from = 0 if self.last_lr is not None else 1
        if self.last_lr is not None:
            prev = np.concatenate(([float(self.last_lr)], lr[:-1]))
            prev_obj = [self.last_lr, *objs[:-1]]
        else:
            prev, prev_obj = lr[:-1], objs[:-1]
        cur = lr[cmp_from:]
        down = cur < prev * (1 - 1e-9)
        up = ~down & (cur > prev * (1 + 1e-9))
        self.n_decrease += int(down.sum())
        self.n_increase += int(up.sum())
        room = self.max_cuts - len(self.cuts)
        if room > 0:
            cut = np.flatnonzero(down & (cur <= prev * self.cut_ratio))[:room].tolist()
            for k in cut:
                i = int(idx[k + cmp_from])
                self.cuts.append(
                    [
                        batch.objects("step")[i],
                        batch.objects("epoch")[i],
                        prev_obj[k],
                        objs[k + cmp_from],
                    ]
                )
        self.last_lr = objs[-1]
        self.max_lr = max(self.max_lr, objs[int(np.argmax(lr))])
        room = _AFTER_ZERO - len(self.after_zero)
        if self.first_lr == 0.0 and room > 0:
            self.after_zero += [objs[k] for k in np.flatnonzero(lr > 0.0)[:room].tolist()]
        zero = lr <= 0.0
        if not zero.any():
            self.zero_run = 0
            return
        self.n_zero += int(zero.sum())
        steps = batch.steps[idx]
        # runs of zero LR: (start, stop) positions; the first may continue the state's run
        edges = np.diff(np.concatenate(([0], zero.astype(np.int8), [0])))
        starts, stops = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
            if a == 0 and self.zero_run > 0:
                length, start = self.zero_run + b, self.zero_run_start
            else:
                length, start = b - a, int(steps[a])
            if length > self.longest_zero[0]:
                self.longest_zero = (length, start)
            self.zero_run, self.zero_run_start = length, start
        if not zero[-1]:
            self.zero_run = 0

    # -- the loss series a scheduler reacts to --------------------------------------------------
    def loss_series(self) -> tuple[list[tuple[float, float]], str]:
        """[(x, loss)] with x the epoch (or eval index / step) and the unit name."""
        if len(self.evals) >= 3:
            if all(e[1] is not None and math.isfinite(e[1]) for e in self.evals):
                return [(float(e[1]), float(e[2])) for e in self.evals], "epoch"
            return [(float(e[0]), float(e[2])) for e in self.evals], "step"
        if self.loss_bins.mode == "epoch":
            return [(float(b.key), b.mean) for b in self.loss_bins.ordered()], "epoch"
        return [], "step"

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        out = [
            f for f in (self._zero(facts), plateau.late(self, facts), self._constant(facts)) if f
        ]
        conflict = plateau.conflict(self, facts)
        if conflict is not None:
            out.append(conflict)
        return out

    def _zero(self, facts: ConfigFacts) -> Finding | None:
        length, start = self.longest_zero
        if self.n_lr < 3 or length < 3:
            return None
        all_zero = self.n_zero == self.n_lr
        if not all_zero and length < 0.05 * self.n_lr:
            return None
        if not all_zero and length == self.n_zero and _rounded_ramp(self.after_zero):
            return None
        lr = facts.number("lr")
        fixes = [
            Fix(
                "Check the schedule: warmup that starts and stays at 0, min_lr 0 reached early, "
                "or a scheduler stepped per batch when it expects epochs"
            )
        ]
        if lr is not None and lr <= 0:
            fixes.insert(0, make_fix(facts, "Set a non-zero learning rate", lr=1e-3))
        return Finding(
            id="lr-zero",
            severity="error" if all_zero else "warning",
            title="Learning rate is 0 "
            + ("on every step" if all_zero else f"for {length} records"),
            explanation=(
                f"The logged learning rate was exactly 0 on {self.n_zero} of {self.n_lr} records "
                f"(longest stretch {length} records from step {start}). With LR 0 the optimiser "
                "does nothing: those steps cost compute and change no weight. After the fix the "
                "logged LR should be positive everywhere except possibly the very first warmup "
                "step or the very last step of a decay to zero."
            ),
            steps=[start],
            evidence={"zero_records": self.n_zero, "records": self.n_lr, "longest_stretch": length},
            fixes=fixes,
        )

    def _constant(self, facts: ConfigFacts) -> Finding | None:
        sched = str(facts.get("schedule", "")).lower()
        decaying = any(tok in sched for tok in _DECAYING)
        configured = decaying or (not sched and "plateau_patience" in facts)
        if not configured or self.n_lr < 2 or self.n_decrease > 0:
            return None
        series, unit = self.loss_series()
        if len(series) < 4:
            return None
        i_best = min(range(len(series)), key=lambda i: series[i][1])
        since = len(series) - 1 - i_best
        if since < 3 or since < 0.3 * len(series):
            return None
        best_x, best = series[i_best]
        patience = facts.number("plateau_patience")
        fixes: list[Fix] = []
        if is_plateau(facts) or not sched:
            if patience is not None and patience > 1:
                fixes.append(
                    make_fix(
                        facts,
                        "Lower the plateau patience so the LR reacts to the plateau",
                        plateau_patience=int(max(1, min(patience - 1, since - 1))),
                    )
                )
            fixes.append(Fix("Log each LR reduction so you can see the scheduler act"))
        else:
            fixes.append(
                Fix(
                    f"The configured {sched!r} schedule never changed the LR: make sure "
                    "scheduler.step() is called (once per optimizer step for per-step "
                    "schedules)",
                    code="optimizer.step(); scheduler.step()",
                )
            )
        tail = ", ".join(fmt(v) for _, v in series[-min(len(series), 6) :])
        return Finding(
            id="lr-constant",
            severity="warning",
            title=f"LR stayed at {fmt(self.last_lr)} while the loss plateaued for {since} evals",
            explanation=(
                f"A {'plateau ' if is_plateau(facts) else ''}schedule is configured "
                f"({user_key(facts, 'schedule')}={sched or '?'}"
                + (f", patience {patience:g}" if patience is not None else "")
                + f"), yet the learning rate never moved from {fmt(self.first_lr)}. The loss has "
                f"not improved on its best ({fmt(best)} at {unit} {best_x:g}) for {since} "
                f"points (recent values: {tail}). The scheduler either is not stepped or waits "
                "longer than the plateau lasts. After the change, an LR reduction should appear "
                "within a few evaluations of the loss plateauing, followed by a new best."
            ),
            epochs=[int(x) for x, _ in series[i_best + 1 :]] if unit == "epoch" else [],
            steps=[] if unit == "epoch" else [int(x) for x, _ in series[i_best + 1 :]],
            evidence={
                "lr": self.last_lr,
                "best": best,
                f"best_{unit}": best_x,
                "points_since_best": since,
                "plateau_patience": patience,
            },
            fixes=fixes,
            related=["eval-unstable", "scheduler-late"],
        )

    def state_dict(self) -> dict[str, Any]:
        keys = (
            "n_lr",
            "first_lr",
            "last_lr",
            "max_lr",
            "n_decrease",
            "n_increase",
            "n_zero",
            "zero_run",
            "zero_run_start",
            "last_step",
            "last_epoch",
        )
        s: dict[str, Any] = {k: getattr(self, k) for k in keys}
        s.update(
            cuts=[list(c) for c in self.cuts],
            evals=[list(e) for e in self.evals],
            longest_zero=list(self.longest_zero),
            after_zero=list(self.after_zero),
            loss_bins=self.loss_bins.state_dict(),
        )
        return s

    def load_state_dict(self, state: dict[str, Any]) -> None:
        s = dict(state)
        self.cuts = [list(c) for c in s.pop("cuts")]
        self.evals = [list(e) for e in s.pop("evals")]
        length, start = s.pop("longest_zero")
        self.longest_zero = (int(length), int(start))
        self.after_zero = list(s.pop("after_zero", []))
        self.loss_bins.load_state_dict(s.pop("loss_bins"))
        for k, v in s.items():
            setattr(self, k, v)


#: positive LRs kept after a log's leading zeros
_AFTER_ZERO = 8


def _rounded_ramp(after: list[float]) -> bool:
    """Whether a log's leading zero LRs may be a warm-up below its print's resolution: the LRs
    after them are all multiples of one decimal unit ``10**-d`` (d <= 8: the LR is printed with d
    fixed decimals, ``lr: 0.000000`` then ``lr: 0.000003``) and the first is a small multiple of it
    (at most 99 units: the ramp has just become visible). A printed 0 there is any LR below half
    a unit, not an LR of 0 (LLaMA2-Accessory#48's MetricLogger warm-up). Limit: an LR printed in
    full that happens to be a few decimal units (``2e-06``) after zeros reads the same."""
    if not after:
        return False
    for d in range(1, 9):
        unit = 10.0**-d
        units = [v / unit for v in after]
        if all(abs(u - round(u)) <= 1e-6 * max(1.0, u) for u in units):
            return round(units[0]) <= 99
    return False
