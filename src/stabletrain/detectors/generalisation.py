"""Eval-loss behaviour: ``eval-unstable`` and ``overfitting``.

- ``eval-unstable``, judged against the eval curve's own trend and noise, two ways:

  * spikes (seed 000: eval loss 1.10 → 1.46 → 1.02, 0.97 → 1.39 → 0.93): ≥ 2 evals that stand
    above *both* neighbours by more than the curve's noise can explain — ≥ 4 σ, where σ is the
    robust scale of the evals' residuals around their running median of 3, taken over the evals
    that are not local peaks (the spikes must not inflate the noise they are judged against) —
    and by a material amount: ≥ 10 % of the improvement the curve achieved (first − best) and
    ≥ 2 % of the best.
  * fluctuating after the best (seed 003: 0.8294, 0.5869 (best), 0.6093, 0.6127, 0.6011,
    0.5884): ≥ 5 evals, the last ≥ 3 (and ≥ 30 % of them) without a new best, the curve
    changes direction ≥ 2 times, and the evals since the best give back a material share of the
    progress beyond the curve's noise: their mean sits ≥ 5 % of (first − best), ≥ 1 % of the best
    and ≥ 3 σ above the best. A converged run wiggling at its noise (best = its luckiest sample,
    ±0.7 % around a flat trend) gives back ~1-2 % and stays quiet.

- ``overfitting`` (seed 000's monitoring advice: "watch the train/eval gap"): after the best eval
  the eval loss rises (≥ 5 % and ≥ 3 σ of its own noise above the best, rank correlation ≥ 0.5,
  ≥ 2 evals) while the training
  loss keeps falling, so the eval-train gap widens by ≥ 5 % of the best eval loss. Or, a gap
  too wide to be anything else: the eval loss has made no new best for ≥ 3 evals (≥ 30 % of
  them) while the training loss kept falling, and over those evals the eval loss averages
  (median) ≥ ``gap_ratio`` (3)× the training loss and sits above it by ≥ 10 % of the best eval (an
  AlexNet on 1,224 images: train loss 0.10-0.25, eval loss 3.2-4.7 — memorised, whatever the
  eval curve's wiggles). A healthy run's eval loss sits within ~2× its training loss (a CIFAR
  convnet near convergence: 0.22 vs 0.52). Medians, so that eval spikes do not pass for a gap.
  When the rising-eval rule fires, ``eval-unstable`` is not reported (a rising eval curve is
  overfitting, not noise); the wide-gap rule leaves it to be judged.

- ``chance-level`` *without a class count* (a free-form log: ``Accu :0.0012`` over a whole
  stretch of epoch 2, the script's number of classes nowhere in the log or a config): accuracy
  that never exceeds 1 % and does not rise (the mean of the last ≤ 20 values ≤ 1.5× the mean of
  as many first ones, the two not overlapping) over ≥ ``AccuracyFloor.min_records`` (8) values is at chance for *any* task of up to
  1.25 / max-accuracy classes — but above chance for a larger one, and the log does not say which.
  So it is a note (``info``) that says so and asks for the class count; it is not a guess. With
  ``num_classes``/``vocab_size`` known, :mod:`stabletrain.detectors.trends` judges chance level.

Minimum evidence: both findings weigh a move against the eval curve's noise σ
(:func:`~stabletrain.detectors.robust.trend_noise`), measured on the inner evals that are not
local peaks; with fewer than 3 of those there is no noise estimate (σ = 0) and the rule rests on
its materiality floors alone — a zigzag of six Keras evals (0.660, 0.683, 0.643, 0.687, 0.634)
would read as two spikes. Such a finding is a note (:func:`~stabletrain.detectors.evidence.too_few`);
``eval-unstable`` is not judged at all under ``min_evals`` (5) evals.

The training loss at each eval is the mean of the training records since the previous eval,
leaving out steps marked skipped: their loss comes from a batch that never reached the weights
(a guard-skipped 1e6-scaled batch made one epoch's mean train loss 5208, and the eval-train gap
"widened" from -5208). State: one small row per eval. A non-finite or missing epoch is data:
such evals are located by step.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.bins import sequential_sum
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import too_few
from stabletrain.detectors.fixes import fmt, lower_lr, make_fix
from stabletrain.detectors.robust import MIN_NOISE_POINTS, noise_points, spearman, trend_noise
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord


def _finite(x: Any) -> bool:
    return x is not None and math.isfinite(x)


class AccuracyFloor:
    """Accuracy values in record order (train, then eval, per record): how many, the largest,
    the first and the last 20 — for a chance-level note when the class count is unknown."""

    def __init__(self, min_records: int = 8, ceiling: float = 0.01) -> None:
        self.min_records, self.ceiling = min_records, ceiling
        self.n = 0
        self.top = -math.inf
        self.first: list[float] = []
        self.last: deque[float] = deque(maxlen=20)

    def add(self, values: list[float]) -> None:
        if not values:
            return
        self.n += len(values)
        self.top = max(self.top, *values)
        self.first.extend(values[: 20 - len(self.first)])
        self.last.extend(values[-20:])

    def finding(self, facts: ConfigFacts) -> Finding | None:
        if self.n < self.min_records or any(
            facts.get(k) is not None for k in ("num_classes", "vocab_size")
        ):
            return None  # with a class count, detectors.trends judges chance level
        # (a percent-scaled accuracy under 1 % cannot be told from a fraction: both stay quiet
        # above the ceiling, so 0.5 means 50 % here; readers turn ``0.5%`` into 0.005)
        top = self.top
        k = min(20, self.n // 2)  # the first and last k values do not overlap
        early = sum(self.first[:k]) / k
        late = sum(list(self.last)[-k:]) / k
        if not (0.0 <= top <= self.ceiling) or late > 1.5 * early + 1e-12:
            return None
        bound = math.floor(1.25 / top) if top > 0 else None
        upto = f"any task of up to {bound} classes" if bound else "any number of classes"
        return Finding(
            id="chance-level",
            severity="info",
            title=(
                f"Accuracy stays at {top:.2%} or below and does not rise: chance level for "
                f"{upto} (the class count is unknown)"
            ),
            explanation=(
                f"Over {self.n} logged accuracies the best is {top:.2%}, and the last ones "
                f"({late:.2%} on average) are no better than the first ({early:.2%}). A model "
                f"that guesses uniformly among C classes scores 1/C, so this is chance level for "
                f"{upto}; for a task with more classes it would be above chance, and neither "
                "the log nor a config says how many classes there are. Give the config "
                "(num_classes / num_labels / vocab_size) with --config to have it judged. If the "
                "task has fewer classes, look for labels that do not match the inputs, a loss "
                "that reads the wrong outputs, or a learning rate far too high or zero."
            ),
            evidence={
                "max_accuracy": round(top, 6),
                "first_accuracy_mean": round(early, 6),
                "last_accuracy_mean": round(late, 6),
                "accuracies": self.n,
                "chance_for_classes_up_to": bound,
            },
        )

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n, "top": self.top, "first": self.first, "last": list(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n, self.top = int(state["n"]), float(state["top"])
        self.first = [float(v) for v in state["first"]]
        self.last = deque((float(v) for v in state["last"]), maxlen=20)


class EvalDetector:
    """The eval-loss curve: fluctuating (``eval-unstable``) or rising (``overfitting``); and
    accuracy at its floor when the class count is unknown (a ``chance-level`` note)."""

    ids: tuple[str, ...] = ("eval-unstable", "overfitting", "chance-level")

    def __init__(self, min_evals: int = 5, gap_ratio: float = 3.0) -> None:
        self.min_evals = min_evals
        self.gap_ratio = gap_ratio
        self.evals: list[list[Any]] = []  # [step, epoch, eval_loss, train_loss | None]
        self._sum = 0.0
        self._n = 0
        self.accuracy = AccuracyFloor()

    def update(self, record: StepRecord) -> Finding | None:
        accs = (record.accuracy, record.eval_accuracy)
        self.accuracy.add([float(v) for v in accs if v is not None and math.isfinite(v)])
        loss = record.loss
        if (
            record.kind == "train"
            and loss is not None
            and math.isfinite(loss)
            and record.skipped is not True
        ):
            self._sum += loss
            self._n += 1
        if record.eval_loss is not None and math.isfinite(record.eval_loss):
            train = self._sum / self._n if self._n else None
            self.evals.append([record.step, record.epoch, record.eval_loss, train])
            self._sum, self._n = 0.0, 0
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        loss, eval_loss = batch.floats("loss"), batch.floats("eval_loss")
        acc, eval_acc = batch.floats("accuracy"), batch.floats("eval_accuracy")
        i_acc, i_eacc = np.flatnonzero(np.isfinite(acc)), np.flatnonzero(np.isfinite(eval_acc))
        if i_acc.size + i_eacc.size:  # in record order, a record's train value before its eval
            keys = np.concatenate((i_acc * 2, i_eacc * 2 + 1))
            vals = np.concatenate((acc[i_acc], eval_acc[i_eacc]))
            self.accuracy.add(vals[np.argsort(keys, kind="stable")].tolist())
        i_loss = batch.finite("loss")
        i_loss = i_loss[batch.floats("skipped")[i_loss] != 1.0]  # skipped steps are left out
        i_eval = np.flatnonzero(np.isfinite(eval_loss))
        # the train losses up to and including each eval record (a record adds its loss first)
        ends = np.searchsorted(i_loss, i_eval, side="right").tolist()
        start = 0
        for i, end in zip(i_eval.tolist(), ends, strict=True):
            self._sum = sequential_sum(self._sum, loss[i_loss[start:end]])
            self._n += end - start
            train = self._sum / self._n if self._n else None
            self.evals.append(
                [
                    batch.objects("step")[i],
                    batch.objects("epoch")[i],
                    batch.objects("eval_loss")[i],
                    train,
                ]
            )
            self._sum, self._n, start = 0.0, 0, end
        self._sum = sequential_sum(self._sum, loss[i_loss[start:]])
        self._n += int(i_loss.size) - start

    def _where(self, idx: list[int]) -> tuple[list[int], list[int]]:
        epochs = [self.evals[i][1] for i in idx]
        if all(_finite(e) for e in epochs):
            return [], [int(e) for e in epochs]
        return [int(self.evals[i][0]) for i in idx], []

    def _label(self, i: int) -> str:
        step, epoch = self.evals[i][0], self.evals[i][1]
        return f"epoch {epoch:g}" if _finite(epoch) else f"step {step}"

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        floor = self.accuracy.finding(facts)
        notes = [floor] if floor is not None else []
        over = self._overfitting(facts)
        if over is not None:
            return [over, *notes]
        # a wide gap over a stalled eval curve and that curve's own instability are two things
        found = [self._wide_gap(facts), self._unstable(facts)]
        return [f for f in found if f is not None] + notes

    def _unstable(self, facts: ConfigFacts) -> Finding | None:
        vals = [float(e[2]) for e in self.evals]
        n = len(vals)
        if n < self.min_evals:
            return None
        i_best = min(range(n), key=lambda i: vals[i])
        best = vals[i_best]
        since = n - 1 - i_best
        tol = 1e-3 * abs(best)
        diffs = [b - a for a, b in itertools.pairwise(vals) if abs(b - a) > tol]
        turns = sum(1 for a, b in itertools.pairwise(diffs) if (a > 0) != (b > 0))
        spread = (max(vals[i_best:]) - best) / abs(best) if best else 0.0
        progress = max(vals[0] - best, 0.0)
        after = vals[i_best + 1 :]
        give_back = (sum(after) / len(after) - best) if after else 0.0
        sigma = trend_noise(vals)
        fluctuating = (
            since >= 3
            and since >= 0.3 * n
            and turns >= 2
            and give_back >= max(0.05 * progress, 0.01 * abs(best), 3.0 * sigma)
        )
        floor = max(4.0 * sigma, 0.1 * progress, 0.02 * abs(best))
        spikes = [
            i for i in range(1, n - 1) if vals[i] - max(vals[i - 1], vals[i + 1]) >= floor > 0
        ]
        if not fluctuating and len(spikes) < 2:
            return None
        idx = list(range(i_best + 1, n)) if fluctuating else spikes
        steps, epochs = self._where(idx)
        fixes: list[Fix] = []
        new_lr = lower_lr(facts.number("lr"))
        if new_lr is not None:
            fixes.append(
                make_fix(facts, "Lower the learning rate for smoother progress", lr=new_lr)
            )
        patience = facts.number("plateau_patience")
        if patience is not None and patience > 3:
            fixes.append(
                make_fix(facts, "Let the plateau scheduler react sooner", plateau_patience=3)
            )
        if not fixes:
            fixes.append(Fix("Lower the learning rate (e.g. halve it) or add LR decay"))
        series = ", ".join(fmt(v) for v in vals[-8:])
        finding = Finding(
            id="eval-unstable",
            severity="warning",
            title=f"Eval loss fluctuates: no new best for {since} evals after {fmt(best)}",
            explanation=(
                f"Eval loss: {series}. The best ({fmt(best)}) came at {self._label(i_best)}; "
                + (
                    f"the {since} evaluations since went up and down (spread {spread:.1%} above "
                    "the best, "
                    f"{turns} changes of direction) instead of improving."
                    if fluctuating
                    else f"the curve spiked {len(spikes)} times, each ≥ {fmt(floor)} above both "
                    f"neighbouring evals — far beyond its own noise (σ ≈ {fmt(sigma)})."
                )
                + " The model is bouncing around a minimum rather than descending into it — "
                "typically a learning rate too high for this stage of training, often together "
                "with frequent clipping or growing gradient norms. After the change the eval "
                "loss should decrease consistently, with new bests every few evaluations."
            ),
            steps=steps,
            epochs=epochs,
            evidence={
                "eval_loss": [round(v, 6) for v in vals[-20:]],
                "best": best,
                "best_at": self._label(i_best),
                "evals_since_best": since,
                "turns": turns,
                "spread_above_best": round(spread, 4),
                "gave_back_of_progress": round(give_back / progress, 4) if progress else None,
                "noise_sigma": round(sigma, 6),
                "spikes": len(spikes),
            },
            fixes=fixes,
            related=["lr-constant", "clip-saturated", "grad-norm-growth"],
        )
        return too_few(finding, noise_points(vals), MIN_NOISE_POINTS, "evals to measure noise on")

    def _overfitting(self, facts: ConfigFacts) -> Finding | None:
        rows = [e for e in self.evals if e[3] is not None]
        if len(rows) < 4:
            return None
        vals = [float(e[2]) for e in rows]
        train = [float(e[3]) for e in rows]
        n = len(vals)
        i_best = min(range(n), key=lambda i: vals[i])
        best = vals[i_best]
        if i_best > n - 3 or vals[-1] < 1.05 * best or train[-1] >= train[i_best]:
            return None
        # the rise must be beyond the eval curve's own noise: its best is partly luck
        if spearman(vals[i_best:]) < 0.5 or vals[-1] - best < 3.0 * trend_noise(vals):
            return None
        gap_best, gap_last = vals[i_best] - train[i_best], vals[-1] - train[-1]
        if gap_last - gap_best < 0.05 * abs(best):
            return None
        return self._overfit_finding(facts, rows, i_best, gap_best, gap_last, wide=False)

    def _wide_gap(self, facts: ConfigFacts) -> Finding | None:
        """No new best eval for ≥ 3 evals (≥ 30 % of them) while the training loss fell, with
        the eval loss ≥ ``gap_ratio``× the training loss over those evals (see the docstring)."""
        rows = [e for e in self.evals if e[3] is not None]
        n = len(rows)
        if n < self.min_evals:
            return None
        vals = [float(e[2]) for e in rows]
        train = [float(e[3]) for e in rows]
        i_best = min(range(n), key=lambda i: vals[i])
        best = vals[i_best]
        since = n - 1 - i_best
        if since < 3 or since < 0.3 * n or train[-1] >= train[i_best] or best <= 0:
            return None
        # medians: a spiky eval curve (eval-unstable) must not pass for a wide gap
        mid_ev, mid_tr = float(np.median(vals[i_best:])), float(np.median(train[i_best:]))
        if mid_tr <= 0 or mid_ev < self.gap_ratio * mid_tr or mid_ev - mid_tr < 0.1 * best:
            return None
        gap_best, gap_last = vals[i_best] - train[i_best], vals[-1] - train[-1]
        return self._overfit_finding(facts, rows, i_best, gap_best, gap_last, wide=True)

    def _overfit_finding(
        self,
        facts: ConfigFacts,
        rows: list[list[Any]],
        i_best: int,
        gap_best: float,
        gap_last: float,
        wide: bool,
    ) -> Finding:
        vals = [float(e[2]) for e in rows]
        train = [float(e[3]) for e in rows]
        n, best = len(rows), vals[i_best]
        # a training loss at 0 (a log of '-0' or 1e-400) has no ratio: the evidence says so
        mid_tr = float(np.median(train[i_best:]))
        ratio = float(np.median(vals[i_best:])) / mid_tr if mid_tr > 0 else None
        idx = [self.evals.index(rows[i]) for i in range(i_best + 1, n)]
        steps, epochs = self._where(idx)
        wd = facts.number("weight_decay")
        fixes = [make_fix(facts, "Regularise more", weight_decay=wd * 2 if wd else 0.01)]
        if facts.number("early_stop_patience") is None:
            fixes.append(make_fix(facts, "Stop at the best eval", early_stop_patience=3))
        if wide and ratio is not None:  # (the wide path asked for a positive median)
            title = (
                f"Overfitting: eval loss {ratio:.1f}x the training loss, no new best for "
                f"{n - 1 - i_best} evals"
            )
            what = (
                f"The eval loss reached its best {fmt(best)} at {self._label(i_best)} and has not "
                f"improved since (last {fmt(vals[-1])}), while the training loss kept falling "
                f"({fmt(train[i_best])} → {fmt(train[-1])}); over those evals the eval loss "
                f"is typically (median) {ratio:.1f}× the training loss."
            )
        else:
            title = f"Overfitting: eval-train gap widened from {fmt(gap_best)} to {fmt(gap_last)}"
            what = (
                f"The eval loss reached its best {fmt(best)} at {self._label(i_best)} and has "
                f"risen since to {fmt(vals[-1])}, while the training loss kept falling "
                f"({fmt(train[i_best])} → {fmt(train[-1])})."
            )
        finding = Finding(
            id="overfitting",
            severity="warning",
            title=title,
            explanation=(
                what + " The model is memorising the training set. Keep the checkpoint from the "
                "best eval; with more regularisation (or an early stop) the gap should stop "
                "widening and the eval loss should flatten near its best instead of climbing."
            ),
            steps=steps,
            epochs=epochs,
            evidence={
                "best_eval": best,
                "best_at": self._label(i_best),
                "last_eval": vals[-1],
                "gap_at_best": round(gap_best, 6),
                "gap_last": round(gap_last, 6),
                "train_at_best": train[i_best],
                "train_last": train[-1],
                "eval_train_ratio_since_best": None if ratio is None else round(ratio, 3),
            },
            fixes=fixes,
            related=["eval-unstable"],
        )
        return too_few(finding, noise_points(vals), MIN_NOISE_POINTS, "evals to measure noise on")

    def state_dict(self) -> dict[str, Any]:
        return {
            "evals": [list(e) for e in self.evals],
            "sum": self._sum,
            "n": self._n,
            "accuracy": self.accuracy.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.evals = [list(e) for e in state["evals"]]
        self._sum = float(state["sum"])
        self._n = int(state["n"])
        if "accuracy" in state:
            self.accuracy.load_state_dict(state["accuracy"])
