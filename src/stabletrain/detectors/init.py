"""``bad-init``: the run started from weights scaled far beyond what trains well.

Two marks a bad initialisation leaves in a log (seed 002's CNN with ``normal(std=1.0)``; the
reference trainer's ``model.cnn.init: normal, init_std: 1.0`` starts at a loss of 50,504):

- **the first loss far above ln(C)** for a C-class cross-entropy (C from the config:
  ``num_classes``, or a language model's ``vocab_size``). A well-initialised classifier's logits
  are small, so its first loss is about ln(C), the loss of a uniform guess. Logits of std ``s``
  give about ln(C) + s²/2; at ``s`` = 4 the softmax is saturated (the top class takes nearly all
  the mass and most gradients vanish), so a first loss above ln(C) + 8 (``SATURATED``) means
  logits far larger than any sane init gives. Only when the log starts at the run's start (first
  loss logged within ``FIRST_STEPS`` updates: later the optimiser has moved the weights);
- **early gradient norms orders of magnitude above later ones**: the median of the first 3
  logged gradient norms ≥ 1000x (three orders, ``ORDERS``) the median of the last ``LATE``
  ones. Healthy runs' gradient norms fall as the loss does, by one or two orders (the digits CNN:
  15 → 0.3); three orders is weights that started far too large and were shrunk by training.

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
from stabletrain.detectors.fixes import fmt, make_fix
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: logit std 4 saturates a softmax: its cross-entropy is about ln(C) + 4²/2
SATURATED = 8.0
#: the first loss tells about the init only within this many updates of the start
FIRST_STEPS = 10
#: "orders of magnitude": early gradient norms this many times the late ones
ORDERS = 1000.0
#: late gradient norms kept (their median is the run's settled level)
LATE = 200
#: early gradient norms compared
EARLY = 3


class InitDetector:
    """The first loss vs ln(C), and early vs late gradient norms."""

    ids: tuple[str, ...] = ("bad-init",)

    def __init__(self) -> None:
        self.first_loss: float | None = None
        self.first_loss_step: int | None = None
        self.early: list[list[float]] = []  # [step, grad norm], the first EARLY finite ones
        self.late: deque[float] = deque(maxlen=LATE)
        self.n_grad = 0

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        loss, grad = record.loss, record.grad_norm
        if self.first_loss is None and loss is not None and math.isfinite(loss):
            self.first_loss, self.first_loss_step = loss, record.step
        if grad is not None and math.isfinite(grad):
            self.n_grad += 1
            if len(self.early) < EARLY:
                self.early.append([record.step, grad])
            self.late.append(grad)
        return None

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record (see ``detectors.base``)."""
        loss, grad = batch.floats("loss"), batch.floats("grad_norm")
        batch.steps  # noqa: B018 (raises Unsupported before any state changes)
        train = batch.train
        if self.first_loss is None:
            ok = np.flatnonzero(train & np.isfinite(loss))
            if ok.size:
                i = int(ok[0])
                self.first_loss = batch.objects("loss")[i]
                self.first_loss_step = batch.objects("step")[i]
        g = np.flatnonzero(train & np.isfinite(grad))
        if g.size == 0:
            return
        self.n_grad += int(g.size)
        need = EARLY - len(self.early)
        if need > 0:
            steps = batch.take("step", g[:need])
            values = batch.take("grad_norm", g[:need])
            self.early.extend([s, v] for s, v in zip(steps, values, strict=True))
        self.late.extend(batch.take("grad_norm", g[-LATE:]))

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        reasons: list[str] = []
        evidence: dict[str, Any] = {}
        steps: list[int] = []
        n_classes = _classes(facts)
        l0, s0 = self.first_loss, self.first_loss_step
        if n_classes is not None and l0 is not None and s0 is not None and s0 <= FIRST_STEPS:
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
        if len(self.early) == EARLY and self.n_grad >= EARLY + 2 * EARLY:
            early = statistics.median(v for _, v in self.early)
            late_vals = list(self.late)[-max(1, (self.n_grad - EARLY) // 2) :]
            late = statistics.median(late_vals)
            evidence.update(early_grad_norm=early, late_grad_norm=late)
            if late > 0 and early >= ORDERS * late:
                reasons.append(
                    f"the first gradient norms (median {fmt(early)}) are {early / late:.3g}x the "
                    f"later ones (median {fmt(late)}): more than three orders of magnitude"
                )
                steps.extend(int(s) for s, _ in self.early)
        if not reasons:
            return []
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
                    _sentence("; and ".join(reasons))
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

    def state_dict(self) -> dict[str, Any]:
        return {
            "first_loss": self.first_loss,
            "first_loss_step": self.first_loss_step,
            "early": [list(e) for e in self.early],
            "late": list(self.late),
            "n_grad": self.n_grad,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.first_loss = state["first_loss"]
        self.first_loss_step = state["first_loss_step"]
        self.early = [list(e) for e in state["early"]]
        self.late = deque(state["late"], maxlen=LATE)
        self.n_grad = int(state["n_grad"])


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


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
