"""``underfitting``: the learning rate is too low to learn anything in the steps the run took.

The issue 13 case: the digits CNN at ``optim.lr: 1e-6`` (AdamW) ends at 13 % accuracy, its loss
3.37 → 3.10 in 184 steps, with small and steady gradients. The instability detectors rightly see
nothing; ``chance-level`` sees the symptom but blames an LR *too high*. This names the cause and
the direction: raise the LR.

All must hold (each from the mechanism, none fitted to that run):

- **the LR is below the optimizer's usual range**: Adam-family updates move each weight by about
  the LR per step, and He-initialised weights are 0.01–0.1 in size, so an LR under 1e-5 cannot
  change them in a run of thousands of steps (1e-5 is also the low end of fine-tuning recipes);
  SGD's update is LR × gradient, and its recipes start at 1e-3 (``LOW``). The LR is the
  configured one, else the median of the last logged LRs;
- **no better than chance**: accuracy (eval preferred) at most ``2x`` chance for C classes, or
  without accuracy the loss still ≥ 0.95·ln(C), a uniform guess's cross-entropy (C from the
  config: ``num_classes``/``vocab_size``, or the reference trainer's ``meta.json``). A language
  model is judged by its loss only: its token accuracy has no 1/C chance level. Without C or accuracy there is no scale to call a
  loss "not learned", and nothing is said;
- **no instability**: no non-finite loss or gradient, the gradient norm did not grow (late median
  ≤ 2x the early median) and the loss did not rise (last ≤ first);
- **enough steps**: at least ``MIN_RECORDS`` (50) logged train losses — a run that is simply
  short has not had the chance to learn.

The fix raises the LR relative to the configured one, to the optimizer's usual default
(``USUAL``: 1e-3 for Adam, 1e-2 for SGD) — never lowers it.

An LR in the usual range but under its usual value is underfitting only when the run stopped far
from learned while still learning: the eval loss falling at nearly every eval
(``_still_learning``), or, with too few evals to read a trend, the train loss still falling at its
full pace at the end (``_still_falling``). Both need the class count or vocabulary size as a scale.
Their fix raises the LR ``RAISE``x within the usual range, or to the usual value when the run
ended barely past a uniform guess (``BARELY`` x ln(C) or more).
Before the LR is blamed, a setting that shrinks every step is (``_setting``): Adam's epsilon at
or above ``EPS_LARGE``, dropout at or above ``DROPOUT_LARGE``, when the run ends far from learned
(its fix is the setting, at any LR; the LR is left alone).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, make_fix, nice
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: the low end of each optimizer family's usual LR range (see the module docstring)
LOW = {"adam": 1e-5, "sgd": 1e-3}
#: a usual LR for each family: what the fix raises to
USUAL = {"adam": 1e-3, "sgd": 1e-2}
#: logged train losses needed before "it did not learn" means anything
MIN_RECORDS = 50
#: values kept at each end of the run
KEEP = 20
#: evals needed to call the eval loss "falling steadily"
MIN_EVALS = 5
#: an eval loss at least this share of ln(C) is far from learned
STILL_LEARNING = 0.5
#: how far an LR in the usual range is raised at most (and never above ``USUAL``)
RAISE = 5.0
#: a run whose loss is still this share of ln(C) or more has barely left a uniform guess: its
#: LR is raised to the family's usual value, not only ``RAISE``x (the tiny GPT at the HF default
#: 5e-5 ends at 0.86 ln(vocab); raised 5x it still ends at 0.70 ln(vocab), at 1e-3 under 0.6)
BARELY = 0.8
#: Adam's epsilon at or above this dominates sqrt(v), the typical per-weight gradient size
#: (1e-5 to 1e-2 in most networks): the step is then lr x gradient / eps
EPS_LARGE = 1e-3
#: dropout at the 0.5 of the original paper (Srivastava et al. 2014) or above: the largest
#: usual value for wide FC layers, five times a transformer's usual 0.1 (keep_prob 0.8-0.9 read
#: as p is above it); half the units dropped at every step of a run that ends far from learned
#: (the tiny GPT at 0.5 ends at 0.62 ln(vocab), at 0.0 under 0.5)
DROPOUT_LARGE = 0.5
#: still falling: the last KEEP losses fall at this share of the run's average pace or more,
#: after a total fall of at least DROP x the first loss (a flat, noisy curve has no pace)
FALLING, DROP = 0.5, 0.1


class UnderfitDetector:
    """An LR too low: no progress, no instability, a tiny LR."""

    ids: tuple[str, ...] = ("underfitting",)

    def __init__(self) -> None:
        self.n_loss = 0
        self.n_nonfinite = 0
        self.first_loss: list[float] = []
        # the last 2 x KEEP losses: the last KEEP, and the KEEP before them (the late pace)
        self.last_loss: deque[float] = deque(maxlen=2 * KEEP)
        self.first_grad: list[float] = []
        self.last_grad: deque[float] = deque(maxlen=KEEP)
        self.lrs: deque[float] = deque(maxlen=KEEP)
        self.acc: deque[float] = deque(maxlen=KEEP)
        self.eval_acc: deque[float] = deque(maxlen=5)
        # eval losses: how many, how many fell from the one before, the best and the last
        self.evals = [0, 0, math.inf, math.nan]
        self.last_step = 0

    def update(self, record: StepRecord) -> Finding | None:
        for value, store in ((record.accuracy, self.acc), (record.eval_accuracy, self.eval_acc)):
            if value is not None and math.isfinite(value):
                store.append(value)
        if record.eval_loss is not None and math.isfinite(record.eval_loss):
            self._eval_loss(record.eval_loss)
        if record.kind != "train":
            return None
        self.last_step = max(self.last_step, record.step)
        for value, first, last, counts in (
            (record.loss, self.first_loss, self.last_loss, True),
            (record.grad_norm, self.first_grad, self.last_grad, False),
        ):
            if value is None:
                continue
            if not math.isfinite(value):
                self.n_nonfinite += 1
                continue
            if counts:
                self.n_loss += 1
            if len(first) < KEEP:
                first.append(value)
            last.append(value)
        if record.lr is not None and math.isfinite(record.lr):
            self.lrs.append(record.lr)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        cols = {
            n: batch.floats(n)
            for n in ("loss", "grad_norm", "lr", "accuracy", "eval_accuracy", "eval_loss")
        }
        ev = cols["eval_loss"][np.isfinite(cols["eval_loss"])]
        if ev.size:
            n_ev, down, best, last_ev = self.evals
            prev = np.concatenate(([last_ev], ev[:-1])) if n_ev else ev[:-1]
            now = ev if n_ev else ev[1:]
            self.evals = [
                n_ev + int(ev.size),
                down + int((now < prev).sum()),
                min(best, float(ev.min())),
                float(ev[-1]),
            ]
        steps = batch.steps
        train = batch.train
        for name, store in (("accuracy", self.acc), ("eval_accuracy", self.eval_acc)):
            ok = np.flatnonzero(np.isfinite(cols[name]))
            if ok.size:
                store.extend(batch.take(name, ok[-(store.maxlen or KEEP) :]))
        t = np.flatnonzero(train)
        if t.size == 0:
            return
        self.last_step = max(self.last_step, int(steps[t].max()))
        for name, first, last, counts in (
            ("loss", self.first_loss, self.last_loss, True),
            ("grad_norm", self.first_grad, self.last_grad, False),
        ):
            v = cols[name][t]
            none = batch.none(name)
            present = t if none is None else t[~none[t]]
            fin = t[np.isfinite(v)]
            self.n_nonfinite += int(present.size - fin.size)
            if counts:
                self.n_loss += int(fin.size)
            if fin.size:
                need = KEEP - len(first)
                if need > 0:
                    first.extend(batch.take(name, fin[:need]))
                last.extend(batch.take(name, fin[-(last.maxlen or KEEP) :]))
        ok = t[np.isfinite(cols["lr"][t])]
        if ok.size:
            self.lrs.extend(batch.take("lr", ok[-KEEP:]))

    def _eval_loss(self, value: float) -> None:
        n, down, best, last = self.evals
        self.evals = [n + 1, down + (1 if n and value < last else 0), min(best, value), value]

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        if self.n_loss < MIN_RECORDS or self.n_nonfinite:
            return []
        family = _family(facts)
        lr = facts.number("lr", positive=True)
        lr_from = "configured"
        if lr is None and self.lrs:
            lr, lr_from = statistics.median(self.lrs), "logged"
        eps = _large_eps(facts, family)
        dropout = _large_dropout(facts)
        if lr is None or not lr > 0 or (lr >= USUAL[family] and eps is None and dropout is None):
            return []
        first, last = statistics.median(self.first_loss), statistics.median(self._last())
        if last > first:
            return []  # the loss rose: not a too-small step
        if self.first_grad and self.last_grad:
            g0, g1 = statistics.median(self.first_grad), statistics.median(self.last_grad)
            if g1 > 2.0 * g0:
                return []  # growing gradients: something unstable, not only slow
        if lr >= LOW[family]:
            suspect = self._setting(facts, eps, dropout, lr, lr_from)
            if suspect or lr >= USUAL[family]:
                return suspect
            found = self._still_learning(facts, lr, lr_from, family)
            return found or self._still_falling(facts, lr, lr_from, family)
        chance = self._no_better_than_chance(facts)
        if chance is None:
            return []
        usual = USUAL[family]
        factor = usual / lr
        fix = make_fix(
            facts,
            f"Raise the learning rate to a usual value for {family.upper()} "
            f"({fmt(lr)} → {fmt(nice(usual))}, {factor:.3g}x); then tune it down if the loss "
            "spikes.",
            lr=nice(usual),
        )
        fix.relative["lr"] = factor
        alt = Fix(
            f"Or raise it 10x ({fmt(lr)} → {fmt(nice(lr * 10))}) and re-check the progress.",
            relative={"lr": 10.0},
        )
        return self._underfitting(
            title=f"The learning rate {fmt(lr)} is too low: {chance} after {self.n_loss} steps",
            explanation=(
                f"The {lr_from} learning rate {fmt(lr)} is below the usual range of "
                f"{family.upper()}-family optimizers (from about {fmt(LOW[family])}). The "
                f"training loss went from {fmt(first)} to {fmt(last)} in {self.n_loss} "
                f"logged steps and the model is {chance}, while nothing was unstable: no "
                "NaN/inf, no growing gradient norm, no rising loss. The updates are simply "
                "too small to learn in this many steps. Raise the LR (never lower it: that "
                "would make it slower still); afterwards the loss should fall well below "
                "its start within the first epoch."
            ),
            evidence={
                "lr": lr,
                "lr_from": lr_from,
                "optimizer_family": family,
                "usual_low": LOW[family],
                "first_loss": round(first, 5),
                "last_loss": round(last, 5),
                "records": self.n_loss,
            },
            fixes=[fix, alt],
        )

    def _still_learning(
        self, facts: ConfigFacts, lr: float, lr_from: str, family: str
    ) -> list[Finding]:
        """An LR in the usual range but under its usual value, and a classifier whose eval loss
        fell at (nearly) every eval, ends at its best and is still ``STILL_LEARNING`` x ln(C) or
        more: the run stopped while learning steadily — too few or too small steps (seed 000:
        batch 1024 gives the digits CNN 60 AdamW steps at 2e-4, eval loss 2.9 → 1.40 = 0.61
        ln 10 falling at 29 of 30 evals, 70 % accuracy)."""
        c = facts.get("num_classes")
        n, down, best, last = self.evals
        if not isinstance(c, int) or isinstance(c, bool) or c < 2 or n < MIN_EVALS:
            return []  # (a language model's loss has an entropy floor: no ln C scale here)
        ln_c = math.log(c)
        if not (last >= STILL_LEARNING * ln_c and last <= 1.01 * best and down >= 0.8 * (n - 1)):
            return []
        fix = _raise_within_usual(facts, lr, family, last / ln_c)
        alt = Fix(
            "Or train for more steps (more epochs, or a smaller batch: more updates per epoch)."
        )
        return self._underfitting(
            title=(
                f"The run ended still learning: eval loss {fmt(last)} is "
                f"{last / ln_c:.0%} of ln({c}), falling at {down} of {n - 1} evals"
            ),
            explanation=(
                f"The eval loss fell at {down} of {n - 1} evals and ends at its best, "
                f"{fmt(last)}, still {last / ln_c:.0%} of a uniform guess's ln({c}) = "
                f"{fmt(ln_c)}, while nothing was unstable: no NaN/inf, no growing gradient "
                f"norm, no rising loss. The {lr_from} learning rate {fmt(lr)} is under "
                f"{family.upper()}'s usual {fmt(USUAL[family])}: the run stopped while "
                "learning steadily, with too few or too small steps. Raise the LR (or train "
                "longer); never lower it. Afterwards the eval loss should end well below "
                "half of ln(C)."
            ),
            evidence={
                "lr": lr,
                "lr_from": lr_from,
                "optimizer_family": family,
                "eval_loss": round(last, 5),
                "ln_num_classes": round(ln_c, 4),
                "evals_falling": down,
                "evals": n,
            },
            fixes=[fix, alt],
        )

    def _underfitting(
        self, title: str, explanation: str, evidence: dict[str, Any], fixes: list[Fix]
    ) -> list[Finding]:
        return [
            Finding(
                id="underfitting",
                severity="warning",
                title=title,
                explanation=explanation,
                steps=[self.last_step],
                evidence={**evidence, "direction": "progress"},
                fixes=fixes,
                source="log",
            )
        ]

    def _setting(
        self,
        facts: ConfigFacts,
        eps: float | None,
        dropout: float | None,
        lr: float,
        lr_from: str,
    ) -> list[Finding]:
        """A setting that shrinks what every step can learn — Adam's epsilon ``EPS_LARGE`` or
        more, dropout ``DROPOUT_LARGE`` or more — and a run that ends far from learned: the final
        loss (eval, else train) still ``STILL_LEARNING`` x ln(C) or more, nothing unstable. The
        setting is the cause, not the LR (the digits CNN at AdamW eps 1.0 ends at 0.93 ln 10;
        the tiny GPT at dropout 0.9 stalls at 0.74 ln(vocab), at 0.0 it ends under 0.5)."""
        c = _classes(facts)
        if c is None or (eps is None and dropout is None):
            return []
        n, _, _, last_eval = self.evals
        final = last_eval if n else statistics.median(self._last())
        ln_c = math.log(c)
        if not final >= STILL_LEARNING * ln_c:
            return []
        where = (
            f"the run ends at a loss of {fmt(final)}, {final / ln_c:.0%} of a uniform guess's "
            f"ln({c}) = {fmt(ln_c)}, with nothing unstable"
        )
        evidence = {
            "lr": lr,
            "lr_from": lr_from,
            "final_loss": round(final, 5),
            "ln_num_classes": round(ln_c, 4),
        }
        if eps is not None:
            fix = make_fix(
                facts,
                f"Set Adam's epsilon back to its usual value ({fmt(eps)} → 1e-08); keep the LR",
                eps=1e-8,
            )
            return self._underfitting(
                title=f"Adam's epsilon {fmt(eps)} shrinks every step: the run ends far from "
                f"learned ({final / ln_c:.0%} of ln({c}))",
                explanation=(
                    "Adam divides each step by sqrt(v) + eps, where sqrt(v) is the weight's "
                    "typical gradient size (1e-5 to 1e-2 in most networks). With eps = "
                    f"{fmt(eps)} (the usual value is 1e-8) the denominator is mostly eps, so the "
                    "update is lr x gradient / eps: momentum SGD at a tiny LR, whatever the "
                    f"configured LR says; {where}. Set epsilon back; never lower the LR."
                ),
                evidence={**evidence, "eps": eps},
                fixes=[fix, Fix("Or train for more steps.")],
            )
        assert dropout is not None
        fix = make_fix(
            facts,
            f"Lower the dropout to a usual value ({fmt(dropout)} → 0.1): dropout is the share "
            "of units dropped, not kept",
            dropout=0.1,
        )
        return self._underfitting(
            title=(
                f"Dropout {fmt(dropout)} drops {dropout:.0%} of the units at every step: the run ends at "
                f"{final / ln_c:.0%} of ln({c}), far from learned"
            ),
            explanation=(
                f"Dropout {fmt(dropout)} zeroes {dropout:.0%} of the units it applies to at every "
                "training step (PyTorch's p is the share dropped; TensorFlow's keep_prob is the "
                "share kept, so keep_prob 0.9 means p 0.1). Above the 0.5 of the original dropout "
                f"paper the network sees too little signal to fit: {where}. Lower the dropout; "
                "never lower the LR for this."
            ),
            evidence={**evidence, "dropout": dropout},
            fixes=[fix],
        )

    def _last(self) -> list[float]:
        return list(self.last_loss)[-KEEP:]

    def _still_falling(
        self, facts: ConfigFacts, lr: float, lr_from: str, family: str
    ) -> list[Finding]:
        """An LR in the usual range but under its usual value, too few evals to read a trend
        (a language model evaluated once at the end), and a train loss that is still falling at
        ``FALLING`` x its average pace over the run in its last ``KEEP`` records, from a level
        still ``STILL_LEARNING`` x ln(C) or more: the loss has not begun to bend, so the run
        stopped far from where this model goes — too few or too small steps (the tiny GPT at
        AdamW 3e-4, 10x under its stable LR: 4.28 → 3.04 in 100 steps, the last 20 falling at
        0.8x the average pace; at 3e-3 the last 20 fall at 0.2x). Needs C (``num_classes`` or
        ``vocab_size``): without a scale a slowly falling loss (a fine-tune) is not "far"."""
        c = _classes(facts)
        if c is None or self.evals[0] >= MIN_EVALS or self.n_loss < 3 * KEEP:
            return []
        tail = list(self.last_loss)
        if len(tail) < 2 * KEEP:
            return []
        first = statistics.median(self.first_loss)
        before, last = statistics.median(tail[:KEEP]), statistics.median(tail[KEEP:])
        ln_c = math.log(c)
        drop = first - last
        if not (drop >= DROP * first and last >= STILL_LEARNING * ln_c):
            return []
        pace = (before - last) / KEEP  # per record, over the last KEEP
        average = drop / (self.n_loss - KEEP)  # per record, first window to last
        if pace < FALLING * average:
            return []
        fix = _raise_within_usual(facts, lr, family, last / ln_c)
        alt = Fix("Or train for more steps: the loss was still falling at its full pace.")
        return self._underfitting(
            title=(
                f"The run ended still learning at full pace: the loss fell {fmt(drop)} "
                f"(to {fmt(last)}, {last / ln_c:.0%} of ln({c})) and its last {KEEP} steps "
                f"fell at {pace / average:.1f}x the run's average pace"
            ),
            explanation=(
                f"The training loss went from {fmt(first)} to {fmt(last)} and was still "
                f"falling at {pace / average:.1f}x its average pace over the last {KEEP} "
                "logged steps: it had not begun to level off, and it is still "
                f"{last / ln_c:.0%} of ln({c}) = {fmt(ln_c)}. Nothing was unstable: no "
                "NaN/inf, no growing gradient norm, no rising loss. The "
                f"{lr_from} learning rate {fmt(lr)} is under {family.upper()}'s usual "
                f"{fmt(USUAL[family])}: the steps are too small (or too few) for this run. "
                "Raise the LR (or train longer); never lower it. Afterwards the loss should "
                "level off well before the end."
            ),
            evidence={
                "lr": lr,
                "lr_from": lr_from,
                "optimizer_family": family,
                "first_loss": round(first, 5),
                "last_loss": round(last, 5),
                "late_pace_vs_average": round(pace / average, 3),
                "ln_num_classes": round(ln_c, 4),
                "records": self.n_loss,
            },
            fixes=[fix, alt],
        )

    def _no_better_than_chance(self, facts: ConfigFacts) -> str | None:
        """ "accuracy 13% vs chance 10%" / "loss 3.1 vs ln(10) = 2.3", or None."""
        c, lm = None, False
        for name in ("num_classes", "vocab_size"):
            v = facts.get(name)
            if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
                c, lm = v, name == "vocab_size"
                break
        accs = self.eval_acc if len(self.eval_acc) >= 2 else self.acc
        # a language model's token accuracy has no 1/C chance (predicting the most frequent
        # token scores far above it: 19% on the char corpus, 1/C = 1.1%): its loss is the scale
        if c is not None and len(accs) >= 2 and not lm:
            acc = statistics.median(accs)
            top = max(accs)
            scale = 100.0 if top > 1.0 else 1.0
            if acc / scale <= 2.0 / c:
                return f"at {acc / scale:.1%} accuracy vs {1 / c:.1%} chance"
            return None
        if c is not None and self.last_loss:
            last = statistics.median(self._last())
            if last >= 0.95 * math.log(c):
                return f"at a loss of {fmt(last)} vs ln({c}) = {fmt(math.log(c))} for a guess"
        return None

    def state_dict(self) -> dict[str, Any]:
        return {
            "n_loss": self.n_loss,
            "n_nonfinite": self.n_nonfinite,
            "first_loss": list(self.first_loss),
            "last_loss": list(self.last_loss),
            "first_grad": list(self.first_grad),
            "last_grad": list(self.last_grad),
            "lrs": list(self.lrs),
            "acc": list(self.acc),
            "eval_acc": list(self.eval_acc),
            "evals": list(self.evals),
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n_loss = int(state["n_loss"])
        self.n_nonfinite = int(state["n_nonfinite"])
        self.first_loss = list(state["first_loss"])
        self.last_loss = deque(state["last_loss"], maxlen=2 * KEEP)
        self.first_grad = list(state["first_grad"])
        self.last_grad = deque(state["last_grad"], maxlen=KEEP)
        self.lrs = deque(state["lrs"], maxlen=KEEP)
        self.acc = deque(state["acc"], maxlen=KEEP)
        self.eval_acc = deque(state["eval_acc"], maxlen=5)
        self.evals = list(state["evals"])
        self.last_step = int(state["last_step"])


def _classes(facts: ConfigFacts) -> int | None:
    """C for the ln(C) scale: ``num_classes``, else ``vocab_size``; None without either."""
    for v in (facts.get("num_classes"), facts.get("vocab_size")):
        if isinstance(v, int) and not isinstance(v, bool) and v >= 2:
            return v
    return None


def _large_dropout(facts: ConfigFacts) -> float | None:
    """The dropout when it is ``DROPOUT_LARGE`` or more (and under 1), else None."""
    p = facts.number("dropout")
    return p if p is not None and DROPOUT_LARGE <= p < 1.0 else None


def _large_eps(facts: ConfigFacts, family: str) -> float | None:
    """Adam's epsilon when it is ``EPS_LARGE`` or more, else None."""
    eps = facts.number("eps", positive=True)
    return eps if family == "adam" and eps is not None and eps >= EPS_LARGE else None


def _raise_within_usual(facts: ConfigFacts, lr: float, family: str, share: float) -> Fix:
    """Raise an LR in the usual range ``RAISE``x, never above the family's usual value; to the
    usual value when the run ended at ``BARELY`` x ln(C) or more (``share``: its final loss /
    ln(C)): it has barely left a uniform guess."""
    barely = share >= BARELY
    new = nice(USUAL[family] if barely else min(USUAL[family], RAISE * lr))
    factor = new / lr
    why = (
        f"the run ended at {share:.0%} of ln(C), barely past a uniform guess"
        if barely
        else "so the run learns more in the steps it has"
    )
    fix = make_fix(
        facts,
        f"Raise the learning rate {factor:.3g}x ({fmt(lr)} → {fmt(new)}, still within "
        f"{family.upper()}'s usual range): {why}.",
        lr=new,
    )
    fix.relative["lr"] = factor
    return fix


def _family(facts: ConfigFacts) -> str:
    """ "sgd" for SGD-like optimizers, else "adam" (the lower bound: unknown is judged as Adam)."""
    name = str(facts.get("optimizer", "")).lower()
    return "sgd" if "sgd" in name or "momentum" in name else "adam"
