"""The config sanity table: hyperparameters outside the range where they work, with the reason and
a safe value — promoted to a warning only when the log shows the run was not clearly healthy.

One mechanism, one table (:data:`RULES`). Each rule reads normalised config facts
(:class:`~stabletrain.records.ConfigFacts`) and, when the setting is out of its working range,
returns the changes that put it back at a usual value. The LR is never one of them: a setting that
is wrong is fixed where it is wrong. Each rule states the effect the setting has on a run
(``instability``: steps too large or erratic; ``progress``: every step shrunk or wasted;
``neutral``) so the change set's direction rules (report/changeset.py) treat it like any other
finding. The ranges come from the mechanism, not from any one run:

==========================  ==================================================  ===============
rule (finding id)           out of range when (reason)                          safe value
==========================  ==================================================  ===============
``adam-betas-unbounded``    Adam with beta1² >= beta2: m / sqrt(v) is bounded   (0.9, 0.999)
                            (Cauchy-Schwarz) only when beta1² < beta2; betas
                            written in the wrong order do this
``adam-beta1-low``          Adam with beta1 < 0.5: little or no momentum, so    beta1 0.9
                            each step follows one batch's noisy gradient
                            (RMSprop); usual 0.9 (GAN recipes use 0-0.5 on
                            purpose)
``weight-decay-large``      decoupled decay (AdamW) above its usual 0.01-0.3    wd 0.01
                            with lr x wd >= 1e-3 per step: the decay alone
                            halves every weight in under 700 steps (usual
                            recipes: 3e-3 x 0.1 = 3e-4; a usual decay at a
                            huge LR is the LR's problem, not the decay's)
``weight-decay-coupled``    L2 decay in the gradient (Adam, SGD) >= 100x its    SGD 5e-4,
                            usual value (SGD 5e-4, Adam 1e-4): under Adam it    Adam 1e-4
                            swamps the normalised gradient
``dropout-large``           dropout p > 0.5, the largest usual value            0.1
                            (Srivastava et al. 2014); keep_prob read as p
``adam-eps-large``          Adam epsilon >= 1e-3, above the typical per-weight  1e-8
                            gradient size: the step becomes lr x g / eps
``sgd-momentum-high``       SGD momentum >= 0.98: the step is lr / (1 - m)      0.9
                            per unit gradient, 5x-10x (and more) the usual 0.9
``init-std-tiny``           a normal init std <= 1e-3: under 1/sqrt(fan_in)     He/Kaiming
                            for any layer narrower than a million inputs, so    (trainer), else
                            the signal shrinks at every layer                   0.02
``context-short``           a language model's context < 32 tokens (a block     128
                            size cut for a smoke test and kept)
==========================  ==================================================  ===============

Other ranges of the same kind live where their evidence is read: a warm-up over a large share of
the run (``warmup-too-long``), a clip that caps every step (``clip-saturated``), the LR against
the batch size (``lr-high-for-batch``).

Config-only (``stabletrain lint``): :func:`sanity_findings` returns the table's findings as
warnings. In the doctor, the :class:`SanityDetector` replays the log and reports a rule only when
the run was **not clearly healthy**: the loss went non-finite or ended above its start, or a
classifier's final loss (eval, else train) is above ``HEALTHY`` x ln(C), or a language model
(whose entropy floor is unknown, so health cannot be read from its loss). A classifier ending
near zero loss, or a run with no scale to judge it (no class count, no vocabulary) that did not
get worse, gets no finding: a clean run gets no warning from a setting that did it no harm.

Limits: the thresholds are rules of thumb from the optimizers' mechanisms and common recipes;
a deliberate unusual setting (beta1 = 0 in a GAN is not flagged; beta2 < beta1² is) that trains
well is not flagged on a classifier and is on a language model.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from stabletrain.detectors.fixes import fmt
from stabletrain.detectors.lossends import KEEP, LossEndsDetector, classes
from stabletrain.records import ConfigFacts, Finding, Fix

__all__ = ["HEALTHY", "RULES", "Rule", "SanityDetector", "sanity_findings"]

Effect = Literal["instability", "progress", "neutral"]

#: a classifier whose final loss is at most this share of ln(C) is clearly healthy
HEALTHY = 0.05


@dataclass(frozen=True, slots=True)
class Violation:
    """A setting out of range: what it is, why it fails, and the changes back to a usual value."""

    setting: str
    reason: str
    changes: dict[str, Any]
    fix: str
    alternatives: tuple[Fix, ...] = ()


@dataclass(frozen=True, slots=True)
class Rule:
    """One row of the table: a finding id, the effect of the bad setting, and its check."""

    id: str
    effect: Effect
    title: str
    check: Callable[[ConfigFacts], Violation | None]


def _family(facts: ConfigFacts) -> str:
    """ "sgd", "adamw" (decoupled decay), "adam" (coupled L2) or "" (unnamed/other)."""
    name = str(facts.get("optimizer", "")).lower()
    if "sgd" in name or "momentum" in name or "nesterov" in name:
        return "sgd"
    if "adamw" in name or name.startswith("adamw") or "fusedadam" in name:
        return "adamw"
    if "adam" in name:
        return "adam"
    return ""


def _betas(facts: ConfigFacts) -> Violation | None:
    b1, b2 = facts.number("beta1"), facts.number("beta2")
    if _family(facts) == "sgd" or b1 is None or b2 is None or not 0 <= b1 < 1 or not 0 <= b2 < 1:
        return None
    if b1 * b1 < b2:
        return None
    return Violation(
        f"betas ({fmt(b1)}, {fmt(b2)})",
        f"beta1² = {fmt(b1 * b1)} >= beta2 = {fmt(b2)}: Adam's step m / sqrt(v) is bounded only "
        "when beta1² < beta2 (the first moment must forget faster than the second); here it can "
        "reach many times the LR after a quiet stretch. Betas written in the wrong order "
        "(beta1 is the momentum, about 0.9; beta2 the slow second moment, 0.95-0.999) do this",
        _betas_changes(facts, 0.9, 0.999),
        "Set Adam's betas to (0.9, 0.999): beta1 the momentum, beta2 the slower second moment",
    )


#: Adam's beta1 under this has (almost) no momentum
BETA1_LOW = 0.5


def _beta1(facts: ConfigFacts) -> Violation | None:
    b1, b2 = facts.number("beta1"), facts.number("beta2")
    if _family(facts) not in ("adam", "adamw") or b1 is None or not 0 <= b1 < BETA1_LOW:
        return None
    if b2 is not None and 0 <= b2 < 1 and b1 * b1 >= b2:
        return None  # unbounded betas: their own rule
    keep = b2 if b2 is not None and 0 <= b2 < 1 else 0.999
    return Violation(
        f"beta1 {fmt(b1)}",
        f"beta1 is Adam's momentum: at {fmt(b1)} each step follows the last batch's gradient "
        "almost alone (RMSprop), so the steps are as noisy as single batches; the usual value "
        "is 0.9 (GAN recipes use 0 to 0.5 on purpose)",
        _betas_changes(facts, 0.9, keep),
        f"Set Adam's beta1 to the usual 0.9 ({fmt(b1)} → 0.9)",
    )


def _betas_changes(facts: ConfigFacts, b1: float, b2: float) -> dict[str, Any]:
    k1, k2 = facts.key("beta1"), facts.key("beta2")
    if k1.endswith("[0]") and k2.endswith("[1]") and k1[:-3] == k2[:-3]:
        return {k1[:-3]: [b1, b2]}  # one list key (``optim.betas``)
    return {k1: b1, k2: b2}


#: lr x decoupled weight decay per step at or above this: the decay halves a weight in < 700 steps
DECAY_PER_STEP = 1e-3
#: the largest usual AdamW weight decay (BERT 0.01, GPT 0.1, ViT/DeiT 0.05-0.3)
DECAY_MAX = 0.3
#: the usual coupled (L2) weight decay of SGD and Adam; L2_LARGE x that is far above it
L2_USUAL = {"sgd": 5e-4, "adam": 1e-4}
L2_LARGE = 100.0


def _decoupled(facts: ConfigFacts) -> Violation | None:
    wd, lr = facts.number("weight_decay"), facts.number("lr", positive=True)
    if _family(facts) != "adamw" or wd is None or lr is None:
        return None
    if wd <= DECAY_MAX or lr * wd < DECAY_PER_STEP:
        return None
    half = math.log(2) / (lr * wd)
    return Violation(
        f"weight decay {fmt(wd)} at lr {fmt(lr)}",
        f"AdamW shrinks every weight by lr x weight_decay = {fmt(lr * wd)} per step, so the decay "
        f"alone halves it every {half:.0f} steps; usual recipes decay about 3e-4 per step or less "
        "(lr 3e-3 x 0.1). The gradient spends the run fighting the decay. A normalised or L2 "
        "coefficient given as the decoupled decay does this",
        {facts.key("weight_decay"): 0.01},
        f"Set the weight decay to a usual AdamW value ({fmt(wd)} → 0.01); keep the LR",
    )


def _coupled(facts: ConfigFacts) -> Violation | None:
    family, wd = _family(facts), facts.number("weight_decay")
    if family not in L2_USUAL or wd is None or wd < L2_LARGE * L2_USUAL[family]:
        return None
    usual = L2_USUAL[family]
    how = (
        "Adam divides the gradient by its own scale, so an L2 term wd x w larger than the "
        "loss's gradient takes over the step and pulls the weights to zero"
        if family == "adam"
        else f"momentum SGD shrinks every weight by lr x wd / (1 - momentum) per step, "
        f"{wd / usual:.0f}x the usual"
    )
    alts = (
        (Fix("Or switch to AdamW (decoupled decay) and keep its weight decay at 0.01-0.1."),)
        if family == "adam"
        else ()
    )
    return Violation(
        f"{family.upper()} weight decay {fmt(wd)} (an L2 term in the gradient)",
        f"{family.upper()}'s weight_decay adds wd x w to the gradient (coupled L2); {fmt(wd)} is "
        f"far above its usual {fmt(usual)}: {how}. AdamW's decoupled value (0.01-0.1) given to "
        f"{family.upper()} does this",
        {facts.key("weight_decay"): usual},
        f"Set the weight decay to a usual L2 value for {family.upper()} ({fmt(wd)} → {fmt(usual)})",
        alts,
    )


#: dropout above this (the original paper's largest usual value) drops most of the signal
DROPOUT_MAX = 0.5


def _dropout(facts: ConfigFacts) -> Violation | None:
    p = facts.number("dropout")
    if p is None or not DROPOUT_MAX < p < 1.0:
        return None
    return Violation(
        f"dropout {fmt(p)}",
        f"dropout p is the share of units dropped at each training step: {p:.0%} here, above the "
        "0.5 of the dropout paper (Srivastava et al. 2014), so the network trains on too little "
        "signal. TensorFlow's keep_prob (the share kept) read as PyTorch's p does this",
        {facts.key("dropout"): 0.1},
        f"Lower the dropout to a usual value ({fmt(p)} → 0.1)",
    )


#: Adam's epsilon at or above this dominates sqrt(v) (typical per-weight gradients 1e-5..1e-2)
EPS_LARGE = 1e-3


def _eps(facts: ConfigFacts) -> Violation | None:
    eps = facts.number("eps", positive=True)
    if _family(facts) == "sgd" or eps is None or eps < EPS_LARGE:
        return None
    return Violation(
        f"Adam epsilon {fmt(eps)}",
        f"Adam divides each step by sqrt(v) + eps, and sqrt(v) (a weight's gradient size) is "
        f"1e-5 to 1e-2 in most networks: with eps = {fmt(eps)} the step is lr x g / eps, "
        "momentum SGD at a tiny LR",
        {facts.key("eps"): 1e-8},
        f"Set Adam's epsilon back to its usual value ({fmt(eps)} → 1e-08); keep the LR",
    )


#: SGD momentum at or above this multiplies the step 5x or more over the usual 0.9
MOMENTUM_HIGH = 0.98


def _momentum(facts: ConfigFacts) -> Violation | None:
    m = facts.number("momentum")
    if _family(facts) != "sgd" or m is None or not MOMENTUM_HIGH <= m < 1.0:
        return None
    return Violation(
        f"SGD momentum {fmt(m)}",
        f"momentum SGD steps lr / (1 - momentum) per unit gradient: {1 / (1 - m):.0f}x the LR "
        f"at {fmt(m)}, {(1 - 0.9) / (1 - m):.0f}x what the same LR steps at the usual 0.9, and "
        "the momentum buffer keeps pushing long after the gradient turned",
        {facts.key("momentum"): 0.9},
        f"Set the momentum to the usual 0.9 ({fmt(m)} → 0.9)",
    )


#: a normal init std at or under this is below 1/sqrt(fan_in) for any layer under 1e6 inputs
INIT_TINY = 1e-3


def _init(facts: ConfigFacts) -> Violation | None:
    std = facts.number("init_std", positive=True)
    if std is None or std > INIT_TINY:
        return None
    key = facts.key("init_std")
    if facts.format == "stabletrain" and key.endswith(".init_std"):
        changes: dict[str, Any] = {key.removesuffix("_std"): "kaiming", key: None}
        fix = f"Initialise with He/Kaiming (std sqrt(2 / fan_in) per layer) instead of {fmt(std)}"
    else:
        changes = {key: 0.02}
        fix = f"Raise the init std ({fmt(std)} → 0.02, the transformer default; He/Kaiming for ReLU nets)"
    return Violation(
        f"init std {fmt(std)}",
        f"weights drawn with std {fmt(std)} are below 1/sqrt(fan_in) for any layer with fewer "
        "than a million inputs: each layer without a normalisation shrinks the signal (and the "
        "gradient flowing back) by that factor, so a deep net starts with outputs ~0 and "
        "vanishing gradients — the loss sits at a uniform guess",
        changes,
        fix,
    )


#: a language model's context shorter than this sees little more than a word
CONTEXT_SHORT = 32


def _context(facts: ConfigFacts) -> Violation | None:
    n = facts.number("seq_len", positive=True)
    if n is None or n >= CONTEXT_SHORT or facts.get("vocab_size") is None:
        return None
    return Violation(
        f"context {n:g} tokens",
        f"a language model predicts each token from at most {n:g} before it, and a step sees "
        f"{n:g} tokens per sample: too little context to learn from and few tokens per step "
        "(a block size cut for a smoke test and kept)",
        {facts.key("seq_len"): 128},
        f"Train on a longer context ({n:g} → 128 tokens)",
    )


RULES: tuple[Rule, ...] = (
    Rule("adam-betas-unbounded", "instability", "Adam's betas allow unbounded steps", _betas),
    Rule("adam-beta1-low", "instability", "Adam with little or no momentum", _beta1),
    Rule(
        "weight-decay-large",
        "progress",
        "AdamW's weight decay shrinks weights faster than they learn",
        _decoupled,
    ),
    Rule("weight-decay-coupled", "progress", "An L2 weight decay far above the usual", _coupled),
    Rule("dropout-large", "progress", "Dropout drops most units", _dropout),
    Rule("adam-eps-large", "progress", "Adam's epsilon shrinks every step", _eps),
    Rule("sgd-momentum-high", "instability", "SGD momentum multiplies every step", _momentum),
    Rule("init-std-tiny", "neutral", "An init std that starves the signal", _init),
    Rule("context-short", "progress", "A language model trained on a very short context", _context),
)


def violations(facts: ConfigFacts) -> list[tuple[Rule, Violation]]:
    """Every rule of the table that ``facts`` break, in table order."""
    out = []
    for rule in RULES:
        v = rule.check(facts)
        if v is not None:
            out.append((rule, v))
    return out


def _finding(rule: Rule, v: Violation, source: Any, seen: str | None) -> Finding:
    said = f" In this run: {seen}." if seen else ""
    return Finding(
        id=rule.id,
        severity="warning",
        title=f"{rule.title}: {v.setting}",
        explanation=f"{v.reason[:1].upper()}{v.reason[1:]}.{said} Put the setting back in its "
        "usual range; the LR is not the problem here.",
        evidence={"setting": v.setting, "direction": rule.effect, "sanity": True},
        fixes=[Fix(f"{v.fix}.", dict(v.changes)), *v.alternatives],
        source=source,
    )


def sanity_findings(facts: ConfigFacts) -> list[Finding]:
    """The table's findings for a config alone (``stabletrain lint``): warnings."""
    return [_finding(r, v, "config", None) for r, v in violations(facts)]


class SanityDetector(LossEndsDetector):
    """The table's rules, reported when the log shows the run was not clearly healthy."""

    ids: tuple[str, ...] = tuple(r.id for r in RULES)

    def unhealthy(self, facts: ConfigFacts) -> str | None:
        """What in the log says the run was not clearly healthy, or None (see module docstring)."""
        ends = self.ends
        if ends.n_nonfinite:
            return f"the loss went non-finite on {ends.n_nonfinite} step(s)"
        both = ends.medians()
        if both is None:
            return None
        first, last = both
        if len(ends.first) >= KEEP and last > first:
            return f"the training loss ended above its start ({fmt(first)} → {fmt(last)})"
        scale = classes(facts)
        if scale is None:
            return None
        c, lm = scale
        if lm:
            return (
                f"a language model ending at a loss of {fmt(last)} (its entropy floor is unknown, "
                "so its loss cannot show it healthy)"
            )
        final, what = (ends.eval_loss, "eval") if math.isfinite(ends.eval_loss) else (last, "train")
        ln_c = math.log(c)
        if final > HEALTHY * ln_c:
            return (
                f"the final {what} loss {fmt(final)} is {final / ln_c:.0%} of ln({c}), "
                "not near a learned classifier's"
            )
        return None

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if facts is None or not facts.facts:
            return []
        found = violations(facts)
        if not found:
            return []
        seen = self.unhealthy(facts)
        if seen is None:
            return []
        return [_finding(r, v, "log", seen) for r, v in found]
