"""``bad-init``: the run started from weights scaled far beyond what trains well.

Two marks a bad initialisation leaves in a log (seed 002's CNN with ``normal(std=1.0)``; the
reference trainer's ``model.cnn.init: normal, init_std: 1.0`` starts at a loss of 50,504). Both
are read only *before any update* — the init is the model before training, so its evidence must
not depend on the LR. A too-high LR leaves the opposite mark: the first loss is about ln(C) and
the updates blow it up (digits CNN, SGD at lr 3: 3.3, then 1.6e4, 1.4e5, with grad norms 16, 1.2e4,
7e4); calling that a bad init re-initialises a model that was fine and leaves the LR alone.

- **the first loss far above ln(C)** for a C-class cross-entropy (C from the config:
  ``num_classes``, or a language model's ``vocab_size``). A well-initialised classifier's logits
  are small, so its first loss is about ln(C), the loss of a uniform guess. Logits of std ``s``
  give about ln(C) + s²/2; at ``s`` = 4 the softmax is saturated (the top class takes nearly all
  the mass and most gradients vanish), so a first loss above ln(C) + 8 (``SATURATED``) means
  logits far larger than any sane init gives. Only when the log starts at the run's first step
  (step 0, or step 1 of a log that counts from 1: ``FIRST_STEP``); a log that starts later has
  had updates, and a high LR makes the same loss;
- **the first gradient norms orders of magnitude above later ones**: the median of the head's
  gradient norms ≥ 1000x (three orders, ``ORDERS``) the median of the later ones. The head is
  the first record (the run's first step, as above) and the records after it while the loss has
  not risen above the first loss (at most ``EARLY``): once updates have made the loss rise, the
  gradient norms are the LR's doing. Healthy runs' gradient norms fall as the loss does, by one
  or two orders (the digits CNN: 15 → 0.3); three orders is weights that started far too large.

A third mark is the opposite mistake, weights far too **small** (the transformer/GAN std 0.02 in a
deep ReLU CNN, 2.5-6x under Kaiming per layer: the logits start ~1e-3 of their size): the first
losses sit at ln(C) to within ``AT_CHANCE`` (a uniform guess: logits near zero), the gradient
norms of those first steps are ``WAKE`` x (an order of magnitude) *below* their later level, and
the loss then fell below where it started (the model woke up; a rise would be the LR's doing).
A healthy run's gradient norms fall as the loss does (the digits CNN 8.6 → 0.9, the tiny GPT
3.2 → 0.65; over rounds 1-5 of the fix loop's 60-odd runs none rose even 1.5x except an SGD run at
LR 30 whose loss rose); the digits CNN at std 0.02 sits at 2.3026 for 15 steps with norms 0.07-0.1,
then 2-5. Its direction is neutral: the init is the fix, not the step size.

The fix is the initialisation (He/Kaiming for ReLU nets, Xavier for tanh, a small std such as
GPT-2's 0.02 for transformers) and a warm-up, so the first updates do not amplify the bad start.

Limits: C must come from the config (the first loss cannot reveal it when it is the symptom);
a loss that is not a cross-entropy (MSE, a sum over tokens) has no ln(C) scale; excerpts that
start mid-run have no first loss.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import fmt, make_fix, sentence
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: logit std 4 saturates a softmax: its cross-entropy is about ln(C) + 4²/2
SATURATED = 8.0
#: the last step number that can be the run's first (0-based logs start at 0, 1-based at 1)
FIRST_STEP = 1
#: a head loss counts as "not risen" up to this factor of the first loss
RISE = 1.1
#: "orders of magnitude": early gradient norms this many times the late ones
ORDERS = 1000.0
#: late gradient norms kept (their median is the run's settled level)
LATE = 200
#: early gradient norms compared
EARLY = 3
#: the first losses count as "a uniform guess" within this share of ln(C)
AT_CHANCE = 0.01
#: a too-small init: the later gradient norms at least this many times the first ones
WAKE = 10.0
#: last train losses kept (the too-small mark needs the loss to have fallen)
TAIL = 20


class InitDetector:
    """The first loss vs ln(C), and the first gradient norms vs later ones, before updates."""

    ids: tuple[str, ...] = ("bad-init",)

    def __init__(self) -> None:
        self.head: list[list[Any]] = []  # [step, loss, grad norm] of the first EARLY train records
        self.late: deque[float] = deque(maxlen=LATE)
        self.n_grad = 0
        self.tail: deque[float] = deque(maxlen=TAIL)  # the last finite train losses

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        if len(self.head) < EARLY:
            self.head.append([record.step, _finite(record.loss), _finite(record.grad_norm)])
        grad = record.grad_norm
        if grad is not None and math.isfinite(grad):
            self.n_grad += 1
            self.late.append(grad)
        if record.loss is not None and math.isfinite(record.loss):
            self.tail.append(record.loss)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        grad = batch.floats("grad_norm")
        batch.steps  # noqa: B018 (raises Unsupported before any state changes)
        train = batch.train
        need = EARLY - len(self.head)
        if need > 0:
            idx = np.flatnonzero(train)[:need]
            steps = batch.take("step", idx)
            losses = batch.take("loss", idx)
            grads = batch.take("grad_norm", idx)
            self.head.extend(
                [s, _finite(x), _finite(g)] for s, x, g in zip(steps, losses, grads, strict=True)
            )
        loss = np.flatnonzero(train & np.isfinite(batch.floats("loss")))
        if loss.size:
            self.tail.extend(batch.take("loss", loss[-TAIL:]))
        g = np.flatnonzero(train & np.isfinite(grad))
        if g.size == 0:
            return
        self.n_grad += int(g.size)
        self.late.extend(batch.take("grad_norm", g[-LATE:]))

    def _before_updates(self) -> list[list[Any]]:
        """The head records that show the init, not the LR: the run's first step and those after
        it while the loss has not risen above the first loss (empty when the log starts later)."""
        if not self.head or self.head[0][0] is None or self.head[0][0] > FIRST_STEP:
            return []
        out = [self.head[0]]
        l0 = self.head[0][1]
        for row in self.head[1:]:
            if l0 is None or row[1] is None or row[1] > RISE * l0:
                break
            out.append(row)
        return out

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        reasons: list[str] = []
        evidence: dict[str, Any] = {}
        steps: list[int] = []
        n_classes = _classes(facts)
        head = self._before_updates()
        l0, s0 = (head[0][1], head[0][0]) if head else (None, None)
        if n_classes is not None and l0 is not None and s0 is not None:
            ln_c = math.log(n_classes)
            evidence.update(first_loss=l0, first_loss_step=s0, num_classes=n_classes)
            evidence["ln_num_classes"] = round(ln_c, 4)
            if l0 > ln_c + SATURATED:
                reasons.append(
                    f"the first loss {fmt(l0)} (step {s0}) is far above ln({n_classes}) = "
                    f"{fmt(ln_c)}, the loss of a uniform guess that a well-initialised "
                    f"classifier starts at (above ln(C) + {SATURATED:g}: logits so large the "
                    "softmax is saturated)"
                )
                steps.append(s0)
        # "later" must be later: the late window may not reach back into the early values
        early_rows = [r for r in head if r[2] is not None]
        if early_rows and self.n_grad >= EARLY + 2 * EARLY:
            early = statistics.median(r[2] for r in early_rows)
            late_vals = list(self.late)[-max(1, (self.n_grad - EARLY) // 2) :]
            late = statistics.median(late_vals)
            evidence.update(early_grad_norm=early, late_grad_norm=late)
            if late > 0 and early >= ORDERS * late:
                reasons.append(
                    f"the first gradient norms (median {fmt(early)}) are {early / late:.3g}x the "
                    f"later ones (median {fmt(late)}): more than three orders of magnitude"
                )
                steps.extend(int(r[0]) for r in early_rows)
        if not reasons:
            return self._too_small(facts, head, n_classes, evidence)
        evidence["direction"] = "instability"
        if "first_loss" in evidence and steps and steps[0] == s0:
            title = (
                f"Bad initialisation: first loss {fmt(l0)} vs ln({n_classes}) = "
                f"{fmt(evidence['ln_num_classes'])} for a uniform guess"
            )
        else:
            title = (
                f"Bad initialisation: first gradient norms {evidence['early_grad_norm'] / evidence['late_grad_norm']:.3g}x "
                "the later ones"
            )
        return [
            Finding(
                id="bad-init",
                severity="warning",
                title=title,
                explanation=(
                    sentence("; and ".join(reasons))
                    + ". Weights initialised far larger than He/Kaiming's sqrt(2/fan_in) multiply "
                    "activations layer after layer: the first losses and gradients are huge, the "
                    "first updates are spent shrinking the weights, units saturate or die, and "
                    "the run ends well below what the same model reaches from a good start. "
                    "After the fix the first loss should be near ln(C) and the gradient norms "
                    "within an order of magnitude of their later level."
                ),
                steps=sorted(set(steps)),
                evidence=evidence,
                fixes=init_fixes(facts),
                source="log",
            )
        ]

    def _too_small(
        self,
        facts: ConfigFacts,
        head: list[list[Any]],
        n_classes: int | None,
        evidence: dict[str, Any],
    ) -> list[Finding]:
        """The third mark (module docstring): first losses at ln(C), first gradient norms an order
        of magnitude below the later ones, and a loss that then fell."""
        losses = [r[1] for r in head]
        if n_classes is None or len(head) < EARLY or None in losses or not self.tail:
            return []
        ln_c = math.log(n_classes)
        early, late = evidence.get("early_grad_norm"), evidence.get("late_grad_norm")
        if early is None or late is None or not late >= WAKE * early > 0:
            return []
        if not all(abs(x - ln_c) <= AT_CHANCE * ln_c for x in losses):
            return []
        final = statistics.median(self.tail)
        if not final < losses[0]:
            return []
        return [
            Finding(
                id="bad-init",
                severity="warning",
                title=(
                    f"Initialisation too small: the first losses sit at ln({n_classes}) = "
                    f"{fmt(ln_c)} and the first gradient norms are {late / early:.3g}x below "
                    "their later level"
                ),
                explanation=(
                    f"The first {len(head)} losses are within {AT_CHANCE:.0%} of ln({n_classes}), "
                    "the loss of a uniform guess, which a network gives when its logits are near "
                    f"zero; the first gradient norms (median {fmt(early)}) are {late / early:.3g}x "
                    f"below the later ones (median {fmt(late)}), while a healthy run's norms fall "
                    "as its loss does; and the loss then fell (to "
                    f"{fmt(final)}). Weights initialised far below He/Kaiming's sqrt(2/fan_in) "
                    "shrink the signal at every layer: the first updates are spent waking the "
                    "network up and it ends below what the same model reaches from a good start. "
                    "Fix the initialisation, not the step size; afterwards the first loss should "
                    "be a little above ln(C) and the gradient norms fall from the start."
                ),
                steps=[int(r[0]) for r in head],
                evidence={
                    **evidence,
                    "first_losses": losses,
                    "final_loss": round(final, 5),
                    "too_small": True,
                    "direction": "neutral",
                },
                fixes=init_fixes(facts)[:1],
                source="log",
            )
        ]

    def state_dict(self) -> dict[str, Any]:
        return {
            "head": [list(e) for e in self.head],
            "late": list(self.late),
            "n_grad": self.n_grad,
            "tail": list(self.tail),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.head = [list(e) for e in state["head"]]
        self.late = deque(state["late"], maxlen=LATE)
        self.n_grad = int(state["n_grad"])
        self.tail = deque(state.get("tail", []), maxlen=TAIL)


def _finite(x: Any) -> float | None:
    return float(x) if isinstance(x, (int, float)) and math.isfinite(x) else None


def _classes(facts: ConfigFacts) -> int | None:
    for name in ("num_classes", "vocab_size"):
        c = facts.get(name)
        if isinstance(c, int) and not isinstance(c, bool) and c >= 2:
            return c
    return None


def init_fixes(facts: ConfigFacts) -> list[Fix]:
    """The initialisation (the reference trainer's ``model.cnn.init``; else code), and a warm-up
    when the run has none."""
    fixes: list[Fix] = []
    if facts.format == "stabletrain" and facts.get("model") == "cnn":
        fixes.append(
            Fix(
                "Initialise with Kaiming (He) normal, the scale ReLU nets keep stable.",
                {"model.cnn.init": "kaiming", "model.cnn.init_std": None},
            )
        )
    else:
        fixes.append(
            Fix(
                "Initialise linear/conv weights with Kaiming (ReLU) or Xavier (tanh) scale, or a "
                "small std (0.02) for transformers; zero-init the last layer of a classifier.",
                code="nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')",
            )
        )
    warm, ratio = facts.get("warmup_steps"), facts.get("warmup_ratio")
    if warm in (None, 0) and ratio in (None, 0, 0.0):
        fixes.append(
            make_fix(
                facts,
                "Add a short learning-rate warm-up so the first updates do not amplify the start.",
                warmup_ratio=0.05,
            )
        )
    return fixes
