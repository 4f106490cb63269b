"""Slow, run-level loss trends: ``loss-divergence`` and ``chance-level``.

- ``loss-divergence``: the per-epoch mean training loss ends well above its running minimum (the
  last two bins above ``min + max(25 % of the drop achieved, 20 % of min, 3 σ)``, σ the noise of
  the bin means around their own trend, :func:`~stabletrain.detectors.robust.trend_noise`), i.e.
  a drift up, or a spike the run never recovered from (seed 001: 0.05 at epoch 10 → ~0.5 until
  the end). A sustained rise — ``RISE_BINS``+ bins after the best, ``RISE_SHARE`` of them up,
  the last the highest — is material from ``RISE_FLOOR`` (5 %) of the best: a short epoch log
  climbing epoch after epoch has no noise to measure, and noise does not climb that way. Not when the accuracy was at chance on every record of the log (a chance-level
  finding from accuracy): a model that never learned has nothing to diverge from.
- ``chance-level`` (seed 002: "accuracy 10.07 % = random guessing on 10 classes", loss 17.6 from a
  start of 2.3): accuracy ≤ 1.25× chance for C classes, or the loss stuck at/above ln(C). C comes
  from ``facts["num_classes"]`` or is inferred from an initial loss ≈ ln(C) (cross-entropy of a
  uniform guess), read from the first finite logged loss (not a median of the first few: an early
  explosion would hide it), and only when the log begins at its run's start (first logged step
  in the first quarter of the steps: an excerpt has no initial loss). Limits: the inference assumes cross-entropy; it needs C ≥ 3 and an
  initial loss within 3 % of ln(C). On the loss alone (no accuracy logged) that is not evidence —
  any loss ≥ 2 is within 3 % of the log of some integer, so a converged excerpt would read as
  "stuck at chance" — the first loss must then be ln(C) within 0.05/C nats (~10 % odds of a
  coincidence) for a C ≤ 100, the loss stay ≥ 0.9·ln(C) throughout, and the finding is a warning that names its
  assumption. Accuracy at chance, or C from the config, make it an error.

  A third source of C, for logs that are excerpts or whose first loss is off ln(C): the loss and
  the accuracy at the end of the log agreeing on the same C — a final loss (eval, else train)
  within 2 % of ln(C) for an integer 2 ≤ C ≤ 10⁶ *and* a final accuracy (eval or train, either
  paired with either loss) within [0.8, 1.25]/C.
  Two independent numbers pointing at one C is the signature of a uniform guess (Lasagne MNIST:
  validation loss 2.3018 ≈ ln 10 beside validation accuracy 10.64 %), so the finding is an error;
  one of the two alone is not evidence. A fourth: the accuracy frozen at exactly 1/C (within 2 %,
  2 ≤ C ≤ 20) on the last ≥ 5 training values *and* the last ≥ 3 eval values — a model that
  predicts one class for every input scores 1/C on balanced data, on every split, whatever its
  loss does (a link predictor at train/val/test acc 0.5000 for 8 epochs). A fifth: the last
  ``FROZEN_RECORDS`` training losses one value, ln(C) within 1e-5 nats for C ≤ 1000 (a constant
  uniform prediction; nin-cifar#1's 2.302585 = ln 10), an error without any accuracy. A class count the log
  prints as a setting (the text reader's facts) is named as the log's, not the config's.
"""

from __future__ import annotations

import itertools
import math
from collections import deque
from statistics import fmean
from typing import Any

import numpy as np

from stabletrain.detectors.bins import Bins
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import (
    config_known,
    fmt,
    make_fix,
    nice,
    scale_lr_fix,
    tighter_clip_fix,
)
from stabletrain.detectors.robust import trend_noise
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: step blocks at most, when a log of few epochs is judged by steps (see ``_divergence``)
STEP_BINS = 8
#: per-step losses per block at least, on average, for that judgement
MIN_PER_STEP_BIN = 4
#: the least rise (in the loss's units, nats for a cross-entropy) that judgement calls material
MIN_RISE = 0.01


class LossTrendDetector:
    """Training loss drifting up (``loss-divergence``) or never leaving chance (``chance-level``)."""

    ids: tuple[str, ...] = ("loss-divergence", "chance-level")

    def __init__(self, min_bins: int = 4, chance_margin: float = 1.25) -> None:
        self.min_bins = min_bins
        self.chance_margin = chance_margin
        self.bins = Bins(histogram=False)
        #: the same losses by step block: the divergence rule's bins when the log spans fewer
        #: than ``min_bins`` whole epochs (an HF fine-tune of one to three epochs); at most
        #: ``STEP_BINS`` of them, so that each mean averages several per-step losses
        self.step_bins = Bins(max_bins=STEP_BINS, block=1, histogram=False, by_step=True)
        self.first_losses: list[float] = []
        self.n_loss = 0
        self.acc: deque[float] = deque(maxlen=20)
        self.eval_acc: deque[float] = deque(maxlen=5)
        self.eval_loss: deque[float] = deque(maxlen=5)
        self.n_acc = 0
        self.acc_max = 0.0
        self.last_step = 0
        self.first_loss_step: int | None = None  # the step of first_losses[0]
        self.last_losses: deque[float] = deque(maxlen=FROZEN_RECORDS)

    def update(self, record: StepRecord) -> Finding | None:
        self.last_step = max(self.last_step, record.step)
        if record.kind == "train" and record.loss is not None and math.isfinite(record.loss):
            self.n_loss += 1
            self.bins.add(record.step, record.epoch, record.loss)
            self.step_bins.add(record.step, None, record.loss)
            self.last_losses.append(record.loss)
            if len(self.first_losses) < 5:
                if not self.first_losses:
                    self.first_loss_step = record.step
                self.first_losses.append(record.loss)
        if (
            record.kind == "eval"
            and record.eval_loss is not None
            and math.isfinite(record.eval_loss)
        ):
            self.eval_loss.append(record.eval_loss)
        for value, store in ((record.accuracy, self.acc), (record.eval_accuracy, self.eval_acc)):
            if value is not None and math.isfinite(value):
                self.n_acc += 1
                store.append(value)
                self.acc_max = max(self.acc_max, value)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``)."""
        loss = batch.floats("loss")
        acc, eval_acc = batch.floats("accuracy"), batch.floats("eval_accuracy")
        steps = batch.steps
        batch.check_bins()
        if len(batch) == 0:
            return
        # max(self.last_step, step) per record keeps the first of equal maxima, as max() does
        self.last_step = max(self.last_step, batch.objects("step")[int(np.argmax(steps))])
        idx = batch.finite("loss")
        if idx.size:
            self.n_loss += int(idx.size)
            self.bins.add_many(batch, idx, loss[idx], batch.objects("loss"))
            self.step_bins.add_many(batch, idx, loss[idx], batch.objects("loss"))
            self.last_losses.extend(batch.take("loss", idx[-FROZEN_RECORDS:]))
            room = 5 - len(self.first_losses)
            if room > 0:
                if not self.first_losses:
                    self.first_loss_step = batch.objects("step")[int(idx[0])]
                self.first_losses.extend(batch.take("loss", idx[:room]))
        eval_loss = batch.floats("eval_loss")
        i_el = np.flatnonzero(np.isfinite(eval_loss) & ~batch.train)
        self.eval_loss.extend(batch.take("eval_loss", i_el[-5:]))
        i_acc = np.flatnonzero(np.isfinite(acc))
        i_eval = np.flatnonzero(np.isfinite(eval_acc))
        if i_acc.size + i_eval.size == 0:
            return
        self.n_acc += int(i_acc.size + i_eval.size)
        self.acc.extend(batch.take("accuracy", i_acc[-20:]))
        self.eval_acc.extend(batch.take("eval_accuracy", i_eval[-5:]))
        # the running max visits a record's accuracy, then its eval accuracy: the first value
        # equal to the maximum in that order is the one max() keeps
        top = max(
            float(acc[i_acc].max()) if i_acc.size else -math.inf,
            float(eval_acc[i_eval].max()) if i_eval.size else -math.inf,
        )
        first = [
            (int(i[np.argmax(col[i] == top)]), order, name)
            for i, col, order, name in (
                (i_acc, acc, 0, "accuracy"),
                (i_eval, eval_acc, 1, "eval_accuracy"),
            )
            if i.size and col[i].max() == top
        ]
        i_top, _, name = min(first)
        self.acc_max = max(self.acc_max, batch.objects(name)[i_top])

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        out: list[Finding] = []
        chance = self._chance(facts)
        if chance is not None:
            out.append(chance)
        div = self._divergence(facts)
        if div is not None and not self._never_beat_chance(chance):
            out.append(div)
        return out

    def _never_beat_chance(self, chance: Finding | None) -> bool:
        """Whether the accuracy never rose above chance anywhere in the log (a chance-level
        finding that rests on accuracy, and the log's highest accuracy within the chance band):
        the model never learned, so its loss moving up after a low is a constant predictor's
        noise, not a divergence from something learned (distance-encoding#6: accuracy 0.5000 on
        every split for 8 epochs while the loss wandered 1.36 -> 0.73 -> 1.39). A run that beat
        chance and then fell back to it keeps its divergence: that is what broke it."""
        if chance is None or chance.evidence.get("final_accuracy") is None:
            return False
        return self.acc_max <= float(chance.evidence["chance_accuracy"]) * self.chance_margin

    # -- loss-divergence ----------------------------------------------------------------------
    def _divergence(self, facts: ConfigFacts) -> Finding | None:
        bins = self.bins
        by_step = len(bins.ordered()) < self.min_bins and bins.mode == "epoch"
        if by_step:
            # a few epochs: their means are too few to show a trend; blocks of steps, when
            # there are losses enough to average several into each (a pasted excerpt of six
            # per-step losses is noise in any order)
            if self.n_loss < STEP_BINS * MIN_PER_STEP_BIN:
                return None
            bins = self.step_bins
        ordered = bins.ordered()
        if len(ordered) < self.min_bins:
            return None
        means = [b.mean for b in ordered]
        i_min = min(range(len(means)), key=lambda i: means[i])
        start, low, end = means[0], means[i_min], means[-1]
        if i_min > len(means) - 3:
            return None
        # material (a quarter of the drop achieved, a fifth of the best) and beyond the noise of
        # the per-epoch means themselves (a noisy plateau's last two bins above its luckiest one)
        sigma = trend_noise(means)
        rising = _sustained_rise(means[i_min:])
        # a rise at (nearly) every bin since the best needs no fifth of the best to be material:
        # noise does not climb five bins in a row (1 in 120 for five steps of independent noise)
        floor = RISE_FLOOR * abs(low) if rising else max(0.25 * (start - low), 0.2 * abs(low))
        threshold = low + max(floor, 3.0 * sigma)
        if not (means[-1] > threshold and means[-2] > threshold):
            return None
        if by_step and min(means[-2:]) - low < MIN_RISE:
            return None  # a loss that lives near 0 (GRPO's ±1e-4) moving by less than 0.01
        above = [b for b in ordered[i_min + 1 :] if b.mean > threshold]
        steps, epochs = bins.where(above)
        fixes: list[Fix] = [scale_lr_fix(facts, 0.6, "Lower the learning rate")]
        clip = facts.number("max_grad_norm", positive=True)
        if clip is not None or config_known(facts):
            target = nice(clip / 2) if clip is not None else 1.0
            clip_fix = tighter_clip_fix(facts, target, "to stop the upward drift")
            if clip_fix is not None:
                fixes.append(clip_fix)
        worse = end >= start
        return Finding(
            id="loss-divergence",
            severity="error" if worse else "warning",
            title=f"Training loss ended at {fmt(end)}, well above its best {fmt(low)}",
            explanation=(
                (
                    f"The training loss fell from {fmt(start)} to its best {fmt(low)} at "
                    f"{bins.label(ordered[i_min])}, then rose and stayed up"
                    if i_min
                    else f"The training loss never went below its start {fmt(start)}: it rose"
                )
                + (
                    f" in {rising} of the {len(means) - 1 - i_min} windows (epochs or step ranges) after it"
                    if rising
                    else ""
                )
                + f": it ended at {fmt(end)}{' — above where it started' if worse else ''}. "
                "A loss that climbs "
                "away from its minimum and does not come back means the updates are too large "
                "for the region the model has reached (learning rate too high for this stage, no "
                "or loose clipping, or a spike that damaged the weights). Resume from the best "
                "checkpoint with the change below; afterwards the loss should keep decreasing "
                "past its previous best instead of drifting up."
            ),
            steps=steps,
            epochs=epochs,
            evidence={
                "start": round(start, 5),
                "best": round(low, 5),
                "best_at": bins.label(ordered[i_min]),
                "end": round(end, 5),
                "threshold": round(threshold, 5),
                **({"rising_bins": f"{rising} of {len(means) - 1 - i_min}"} if rising else {}),
            },
            fixes=fixes,
            related=["loss-spike", "scheduler-late", "grad-norm-growth"],
        )

    # -- chance-level --------------------------------------------------------------------------
    def _classes(self, facts: ConfigFacts) -> tuple[int | None, str]:
        """(C, where it came from): ``"config"`` or ``"log"`` (a stated class count), ``"loss and
        accuracy agree"``, ``"initial loss ≈ ln(C)"``; (None, "") when nothing says."""
        # a classifier's label count, else a language model's vocabulary (a BERT classifier's
        # config has both: its head has num_labels outputs)
        for name in ("num_classes", "vocab_size"):
            c = facts.get(name)
            if isinstance(c, int) and not isinstance(c, bool) and c >= 2:
                fact = facts.facts[name]
                # the text reader keeps a class count the script printed under the log's path
                from_log = fact.file is not None and fact.file != facts.source
                return c, "log" if from_log else "config"
        agreed = self._agreed_classes()
        if agreed is not None:
            return agreed, AGREE
        frozen = self._frozen_classes()
        if frozen is not None:
            return frozen, FROZEN
        frozen = self._frozen_loss_classes()
        if frozen is not None:
            return frozen, FROZEN_LOSS
        starts = self.first_loss_step is not None and self.first_loss_step <= max(
            1, 0.25 * self.last_step
        )
        if self.first_losses and starts:
            # the FIRST loss: a run that explodes in its first log lines (seed 002, per-epoch
            # 2.30 → 4.8 → 17) hides ln(C) from any median of the opening losses; and only when
            # the log begins at the run's start (an excerpt from step 53749 on has no initial loss)
            l0 = self.first_losses[0]
            if math.log(2) * 0.95 <= l0 <= math.log(1e6):
                guess = round(math.exp(l0))
                # C ≥ 3: a start near ln 2 ≈ 0.69 is too common a coincidence (BCE, MSE...).
                if guess >= 3 and abs(math.log(guess) - l0) <= 0.03 * l0:
                    return guess, INFERRED
        return None, ""

    def _final_accuracy(self) -> float | None:
        """The mean of the last accuracies (eval ones when there are two), as a fraction."""
        finals = self._final_accuracies()
        return finals[0] if finals else None

    def _final_accuracies(self) -> list[float]:
        """The final accuracy of each series that has two values, eval first, as fractions."""
        scale = 100.0 if self.acc_max > 1.0 else 1.0
        return [
            (sum(accs) / len(accs)) / scale for accs in (self.eval_acc, self.acc) if len(accs) >= 2
        ]

    def _agreed_classes(self) -> int | None:
        """C when a final loss (eval, else train) is ln(C) within 2 % for an integer
        2 ≤ C ≤ ``MAX_AGREED`` and a final accuracy (eval or train: any pairing, a script may
        evaluate only its accuracy) is within [0.8, 1.25]/C of the same C. Past a few hundred
        classes every loss is near the log of some integer, so the accuracy carries the
        evidence there: accuracy x e^loss ≈ 1 is a uniform guess's identity (Caffe on 3,755
        classes: loss 8.28, test accuracy 0.00028)."""
        accs = [a for a in self._final_accuracies() if 0 < a <= 0.625]
        if not accs:  # 1.25/2: no C ≥ 2 is that close otherwise
            return None
        ordered = self.bins.ordered()
        losses = []
        if len(self.eval_loss) >= 2:
            losses.append(sum(self.eval_loss) / len(self.eval_loss))
        if ordered:
            losses.append(ordered[-1].mean)
        for loss in losses:
            if not math.log(2) * 0.98 <= loss <= math.log(MAX_AGREED) * 1.02:
                continue
            c = round(math.exp(loss))
            near = 2 <= c <= MAX_AGREED and abs(loss - math.log(c)) <= 0.02 * math.log(c)
            for acc in accs:
                if near and 0.8 / c <= acc <= 1.25 / c:
                    return c
        return None

    def _frozen_classes(self) -> int | None:
        """C when the last ≥ 5 train and ≥ 3 eval accuracies all equal 1/C (see the docstring)."""
        if len(self.acc) < 5 or len(self.eval_acc) < 3:
            return None
        scale = 100.0 if self.acc_max > 1.0 else 1.0
        vals = [v / scale for v in (*list(self.acc)[-8:], *self.eval_acc)]
        v = vals[0]
        if v <= 0 or any(abs(x - v) > 1e-4 for x in vals):
            return None
        c = round(1.0 / v)
        return c if 2 <= c <= 20 and abs(v * c - 1.0) <= 0.02 else None

    def _frozen_loss_classes(self) -> int | None:
        """C when the last ``FROZEN_RECORDS`` train losses are one value (to 1e-6) that is ln(C)
        within ``FROZEN_TOL`` nats for 2 ≤ C ≤ 1000: a network whose outputs no longer depend on
        the input predicts a constant, and a constant uniform guess scores exactly ln(C)
        (nin-cifar#1: 2.302585 = ln 10 on every line for three epochs). A frozen loss elsewhere
        (a dead ReLU net at 1.9) names no C; the logs of neighbouring integers near C = 1000 are
        1e-3 apart, so a coincidence within 1e-5 has odds of about 2 % there, far less below."""
        vals = list(self.last_losses)
        if len(vals) < FROZEN_RECORDS:
            return None
        v = vals[-1]
        if max(vals) - min(vals) > 1e-6 * max(1.0, abs(v)) or not 0.5 < v < math.log(1001):
            return None
        c = round(math.exp(v))
        return c if 2 <= c <= 1000 and abs(v - math.log(c)) <= FROZEN_TOL else None

    def _tight(self, n_classes: int) -> bool:
        """Whether the first loss is ln(C) closer than a coincidence would be: within 0.05/C
        nats (a random loss lands that close to the log of some integer ~10 % of the time, as
        the logs of neighbouring integers are ~1/C apart), for C ≤ 100. Any loss ≥ 2 is within
        3 % of the log of *some* integer, so on the loss alone (no accuracy) only such a match
        is evidence of "a uniform guess over C"; for a large vocabulary give the config's
        vocab_size."""
        l0 = self.first_losses[0]
        return n_classes <= 100 and abs(l0 - math.log(n_classes)) <= 0.05 / n_classes

    def _chance(self, facts: ConfigFacts) -> Finding | None:
        ordered = self.bins.ordered()
        if len(ordered) < 3 and self.n_loss < 20 and self.n_acc < 20:
            return None
        n_classes, source = self._classes(facts)
        if n_classes is None:
            return None
        chance = 1.0 / n_classes
        final_acc = self._final_accuracy()
        stated = source in ("config", "log")
        final_loss = ordered[-1].mean if ordered else math.nan
        best_loss = min(b.mean for b in ordered) if ordered else math.nan
        start_loss = ordered[0].mean if ordered else math.nan
        ln_c = math.log(n_classes)
        reasons = []
        if final_acc is not None and final_acc <= chance * self.chance_margin:
            reasons.append(f"accuracy {final_acc:.2%} vs chance {chance:.2%}")
        if final_acc is None or reasons:
            if stated and final_loss >= 0.9 * ln_c:
                reasons.append(f"loss {fmt(final_loss)} stuck at/above ln({n_classes})={fmt(ln_c)}")
            elif source == FROZEN_LOSS:
                reasons.append(
                    f"loss frozen at {fmt(final_loss)} = ln({n_classes}) on its last "
                    f"{FROZEN_RECORDS} records"
                )
            elif (
                source == INFERRED
                and self._tight(n_classes)
                and 0.97 * ln_c <= final_loss <= 1.1 * ln_c
                and best_loss >= 0.9 * ln_c
            ):
                reasons.append(f"loss {fmt(final_loss)} never left its start ≈ ln({n_classes})")
        if not reasons:
            return None
        # sure when accuracy says so or the config gives C; on the loss alone with an inferred C
        # it rests on the loss being a C-class cross-entropy: a warning that says so
        sure = stated or reasons[0].startswith("accuracy") or source == FROZEN_LOSS
        steps, epochs = self.bins.where(ordered[-3:])
        if not ordered:
            steps = [self.last_step]
        shape = chance_shape(start_loss, final_loss, ln_c)
        return Finding(
            id="chance-level",
            severity="error" if sure else "warning",
            title=f"The model is at chance level ({'; '.join(reasons)})",
            explanation=(
                f"With {n_classes} classes ({_origin(source, facts)}) a model that guesses "
                "uniformly scores "
                f"{chance:.2%} accuracy and a cross-entropy of ln({n_classes}) = {fmt(ln_c)}. "
                f"This run ends at {'; '.join(reasons)}: it has learned nothing"
                + (
                    ", and the loss is above where it started"
                    if final_loss > start_loss * 1.2  # NaN (no loss bins): False
                    else ""
                )
                + ". "
                + (
                    ""
                    if sure
                    else f"(C = {n_classes} is inferred from the first loss ≈ ln({n_classes}); if "
                    "this loss is not a cross-entropy over classes, ignore this finding.) "
                )
                + "The usual causes are non-finite or exploding gradients that wrecked the weights "
                "(look for nonfinite-grad/fp16-overflow findings), no gradient clipping, or a "
                "learning rate far too high. After the fix, accuracy should beat chance within "
                f"the first epoch and the loss should fall below {fmt(ln_c)}."
            ),
            steps=steps,
            epochs=epochs,
            evidence={
                "num_classes": n_classes,
                "num_classes_from": source,
                **({"final_eval_loss": round(fmean(self.eval_loss), 5)} if self.eval_loss else {}),
                "chance_accuracy": round(chance, 6),
                "final_accuracy": None if final_acc is None else round(final_acc, 6),
                "ln_num_classes": round(ln_c, 4),
                "initial_loss": round(start_loss, 5),
                "final_loss": round(final_loss, 5),
                **({"shape": shape, "direction": _SHAPE_DIRECTION[shape]} if shape else {}),
            },
            fixes=self._chance_fixes(facts, shape),
            related=["nonfinite-grad", "fp16-overflow", "loss-divergence"],
        )

    def _chance_fixes(self, facts: ConfigFacts, shape: str | None) -> list[Fix]:
        if shape == "stalled":
            return [
                scale_lr_fix(
                    facts,
                    10.0,
                    "Raise the learning rate 10x: the loss has hardly moved from where it started "
                    "and nothing was unstable",
                )
            ]
        fixes: list[Fix] = []
        if config_known(facts):
            clip_fix = tighter_clip_fix(facts, 1.0, "in case the gradients exploded")
            if clip_fix is not None and "Enable" in clip_fix.description:
                fixes.append(clip_fix)
        if str(facts.get("precision", "")).lower() in ("fp16", "16", "16-mixed", "true"):
            fixes.append(make_fix(facts, "Train in fp32 (or bf16) until stable", precision="fp32"))
        if shape == "collapsed":
            why = "Lower the learning rate 10x: the loss collapsed to ln(C), a constant prediction"
        else:  # the direction depends on the rest of the run (report/changeset.py decides)
            why = "If the run was unstable: try a 10× lower learning rate"
        fixes.append(scale_lr_fix(facts, 0.1, why))
        return fixes

    def state_dict(self) -> dict[str, Any]:
        return {
            "bins": self.bins.state_dict(),
            "step_bins": self.step_bins.state_dict(),
            "first_losses": list(self.first_losses),
            "n_loss": self.n_loss,
            "acc": list(self.acc),
            "eval_acc": list(self.eval_acc),
            "eval_loss": list(self.eval_loss),
            "acc_max": self.acc_max,
            "n_acc": self.n_acc,
            "last_step": self.last_step,
            "first_loss_step": self.first_loss_step,
            "last_losses": list(self.last_losses),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bins.load_state_dict(state["bins"])
        if "step_bins" in state:
            self.step_bins.load_state_dict(state["step_bins"])
        self.first_losses = [float(x) for x in state["first_losses"]]
        self.n_loss = int(state["n_loss"])
        self.acc = deque((float(x) for x in state["acc"]), maxlen=20)
        self.eval_acc = deque((float(x) for x in state["eval_acc"]), maxlen=5)
        self.eval_loss = deque((float(x) for x in state.get("eval_loss", ())), maxlen=5)
        self.acc_max = float(state["acc_max"])
        self.n_acc = int(state["n_acc"])
        self.last_step = int(state["last_step"])
        self.first_loss_step = state.get("first_loss_step")
        self.last_losses = deque(
            (float(x) for x in state.get("last_losses", ())), maxlen=FROZEN_RECORDS
        )


#: a sustained rise: at least this many bins after the best, rising at RISE_SHARE of them
#: or more and ending at their highest; then RISE_FLOOR x the best is a material rise
RISE_BINS, RISE_SHARE, RISE_FLOOR = 5, 0.8, 0.05


def _sustained_rise(after: list[float]) -> int:
    """How many of the bins after the best (``after[0]``) rose from the one before, when the
    rise is sustained: ``RISE_BINS`` or more bins, ``RISE_SHARE`` of them up, the last the
    highest; else 0. A short epoch log whose loss climbs epoch after epoch (keras#5239: 1.093
    → 1.104 → 1.140 → 1.186 → 1.214 → 1.237, 13 % over its best) diverges by a margin the
    per-epoch noise never makes, below the fifth of the best a noisy run needs."""
    steps = len(after) - 1
    if steps < RISE_BINS or after[-1] < max(after):
        return 0
    ups = sum(1 for a, b in itertools.pairwise(after) if b > a)
    return ups if ups >= RISE_SHARE * steps else 0


INFERRED = "initial loss ≈ ln(C)"
#: the largest class count a loss and an accuracy agreeing can name (a 1M-token vocabulary)
MAX_AGREED = 1_000_000
AGREE = "final loss ≈ ln(C) and accuracy ≈ 1/C agree"
FROZEN = "accuracy frozen at 1/C on train and eval"
FROZEN_LOSS = "training loss frozen at ln(C)"
#: train losses that must be one value for a frozen loss, and how close to ln(C) it must be
FROZEN_RECORDS, FROZEN_TOL = 5, 1e-5


def _origin(source: str, facts: ConfigFacts) -> str:
    """Where C came from, for the explanation: the config's key, the log's own setting, or the
    inference."""
    if source in ("config", "log"):
        name = "num_classes" if "num_classes" in facts else "vocab_size"
        where = facts.facts[name].where()
        return f"from the {'config' if source == 'config' else 'log'}: {where}"
    return f"from the log: {source}"


#: a chance-level run's loss shape → the direction its fix takes (report/changeset.py)
_SHAPE_DIRECTION = {"collapsed": "instability", "stalled": "progress"}


def chance_shape(start: float, final: float, ln_c: float) -> str | None:
    """How a chance-level loss got there: ``"collapsed"`` when it moved from well off ln(C) to
    within 3 % of it (the model predicts a constant: wrecked weights, an LR far too high),
    ``"stalled"`` when it sits above ln(C) within 15 % of where it started (the updates are
    too small to move it), else None (both read the same: a start and an end at ln(C))."""
    if not (math.isfinite(start) and math.isfinite(final)) or ln_c <= 0:
        return None
    if abs(final - ln_c) <= 0.03 * ln_c and abs(start - ln_c) > 0.15 * ln_c:
        return "collapsed"
    if final > 1.03 * ln_c and abs(final - start) <= 0.15 * start:
        return "stalled"
    return None
