"""Config-only rules: what a config alone says about stability, before a GPU-hour is spent.

``lint_facts(facts)`` returns Findings (``source="config"``) with fixes in the user's own keys.
Rules and their heuristics (documented honestly — they are rules of thumb, not laws):

- ``no-grad-clipping`` (warning): no clip threshold, or 0. Seed 002's run exploded to inf without.
- ``fp16-without-loss-scaling`` (warning): fp16 with a static loss scale ≤ 1 (no scaling, so small
  gradients underflow to 0 in fp16).
- ``loss-scale-init-high`` (warning): initial loss scale ≥ 2**16 *and* growth every ≤ 100 steps
  (seed 004: GradScaler(init_scale=2**16, growth_interval=100) → 2**10, 1.5, 200). The PyTorch
  default (2**16, growth every 2000) is not flagged. A DeepSpeed ``initial_scale_power`` ≥ 16 with no
  ``loss_scale_window`` set is ``info`` (DeepSpeed's own default).
- ``lr-high-for-batch``: Adam-family bound 1e-3 × sqrt(effective_batch / 256) (square-root
  scaling for adaptive methods, Malladi et al. 2022), never below 1e-3; SGD bound 0.1 ×
  effective_batch / 256 (linear scaling, Goyal et al. 2017), never below 0.1. Above the bound:
  info; above 5× the bound: warning. Effective batch = batch × accumulation × world size (missing
  factors count as 1; an unknown batch uses the floor only). Seed 000 (AdamW 2e-4, batch 1024,
  bound 2e-3) is not flagged.
- ``plateau-patience-long``: plateau patience ≥ 5 evals (info) — warning at ≥ 10 or ≥ a quarter of
  the epochs (seed 001's 10 → 5; seed 003's 5 → 3). Skipped when the schedule is not a plateau one.
- ``patience-conflict`` (warning): plateau patience ≥ early-stopping patience (seed 001: 10, 10).
- ``warmup-short``: warning with no warmup (or ratio < 0.02) and Adam lr ≥ 1e-3, or a warm-up
  shorter than Adam's first-moment horizon 1/(1-beta1), at most 10 steps (beta1 0.9: it ends
  before the moment estimates mean anything, so it is no warm-up); that fix warms up over Adam's rule of
  thumb 2/(1-beta2) steps (Ma & Yarats 2019: 2000 at beta2 0.999); info with a warmup ratio < 0.1
  and an effective batch ≥ 512 (seed 000: 0.05 at batch 1024 → 0.1).
- a noam schedule (``decay_method: noam``: OpenNMT, NJUNMT, tensor2tensor) makes ``lr`` a factor:
  the peak LR is lr × d_model^-0.5 × warmup^-0.5, and the LR rules judge that peak (the LR fix
  scales the factor; with a too-short warm-up, the peak once warmed up); without d_model or a
  warm-up the factor is not judged at all.
- no-grad-clipping in fp16 is a warning at an LR of 1e-4 or more (or an unknown one): below it
  (fine-tuning LRs, 1e-5..5e-5) the fp16 risk alone is advice; a clip written as 0, an LR above
  its bound or no warm-up at Adam ≥ 1e-3 stay warnings at any LR.
- ``beta2-slow`` (info): Adam beta2 ≥ 0.999 with an effective batch ≥ 512 or fp16 (seed 000 → 0.99).
- ``fp16-prefer-bf16``: a warning for fp16 fine-tuning of a model trained in bf16 - a named bf16
  family, or a pretrained model whose name gives a size of 1B parameters or more (the LLMs
  released since 2023 are trained in bf16: Llama-2/3, Qwen, Baichuan2, GLM-4, Mistral...; the few
  fp16-trained ones, Pythia, OPT, GPT-J, GPT-NeoX, are excepted); info otherwise (bf16 has fp32's
  range and is usually available).
- the config sanity table (:mod:`stabletrain.detectors.sanity`, warnings): Adam betas with
  beta1² >= beta2, Adam beta1 < 0.5, AdamW decay above 0.3 and >= 1e-3 per step, coupled L2
  >= 100x its usual value, dropout > 0.5, Adam epsilon >= 1e-3, SGD momentum >= 0.98, an init
  std <= 1e-3, a language model's context under 32 tokens; each with its reason and a usual
  value. The doctor reports them only when the log shows the run was not clearly healthy.
- ``ds-scheduler-override`` (warning): a ds_config ``scheduler`` block sets the LR at every step,
  so it decides the schedule, not the Trainer or the optimizer block: DeepSpeed's ``WarmupLR`` with
  ``"auto"`` params (a file filled by the HF Trainer / accelerate) replaces the Trainer's
  ``lr_scheduler_type`` and holds the LR at its peak after the warm-up for the whole run (the HF
  docs: WarmupLR = constant_with_warmup; LLaVA#1433: "the loss hovers around 1", the fix deletes
  the block); a ``WarmupLR``/``WarmupDecayLR`` without ``warmup_max_lr`` warms up to DeepSpeed's
  default 1e-3 whatever the optimizer's ``lr`` says - a warning when that is 2x the optimizer's
  lr or more (DeepSpeed#7303: lr 5e-7 trained at 1e-3; a lower default peak is not flagged, its
  fix would raise the LR). An explicit ``warmup_max_lr`` is the user's choice and is not judged
  here (seed 002 warms 2e-4 -> 8e-4 on purpose); ``WarmupDecayLR`` with ``"auto"`` decays (the
  Trainer's own default, linear) and is not flagged.
- ``config-not-finite`` (error): a numeric setting is NaN or infinite (``lr: .inf``, a 400-digit
  integer): the run would train on it, so it is reported, never a crash; the other rules skip it.
"""

from __future__ import annotations

import math
import re
from typing import Any

from stabletrain.detectors.fixes import fmt, make_fix, nice, setting, user_key, warmup_steps_for
from stabletrain.detectors.plateau import conflict_fix
from stabletrain.detectors.sanity import sanity_findings
from stabletrain.records import ConfigFacts, Finding, Fix

__all__ = ["lint_facts"]

_ADAM = ("adam", "adamw", "fusedadam", "adamw_torch", "adamw_hf", "lamb", "adafactor")

#: keys naming the pretrained model a run fine-tunes (configs/keys.py maps them to ``model``)
_PRETRAINED_KEYS = ("model_name_or_path", "base_model", "pretrained_model_name_or_path")
#: fine-tuning LR bounds for Adam-family optimizers: full fine-tuning of a pretrained transformer
#: tops out at 5e-5 (BERT's grid, Devlin et al. 2019: 5e-5..2e-5; LLM SFT recipes use 1e-5..2e-5);
#: LoRA adapters at 5e-4 (Hu et al. 2021 use up to 5e-4; QLoRA, Dettmers et al. 2023: 2e-4 for
#: 7B-13B, 1e-4 above)
_FINETUNE_BOUND = {"full": 5e-5, "lora": 5e-4}
#: model families released in bf16 (T5/mT5 were pretrained in bfloat16 on TPUs - "all of our
#: experiments use bfloat16 activations", google-research/text-to-text-transfer-transformer#539 -
#: and overflow in fp16: huggingface/transformers#4586, #10830, #14189; the others ship bf16
#: weights): their activations exceed fp16's 65504 and fp16 fine-tuning goes to NaN
_BF16_FAMILIES = re.compile(
    r"(?:^|[/_\-. ])(?:flan-t5|byt5|umt5|mt5|mt0|t5|llama[-_ ]?3|qwen|qwq|gemma|glm-?4|mistral"
    r"|mixtral|tinyllama|deepseek)",
    re.I,
)


#: a parameter count in a model's name ("Baichuan2-13B-Chat", "Qwen2-1.5B", "llama-30b-hf")
_SIZE = re.compile(r"(?:^|[/_\-. ])(\d+(?:\.\d+)?)[bB](?=$|[/_\-. ])")
#: billion-parameter families trained in fp16, not bf16 (EleutherAI, Meta's OPT)
_FP16_FAMILIES = re.compile(r"pythia|(?:^|[/_\-. ])opt-|gpt-?j|gpt-?neox", re.I)


def bf16_trained(model: str) -> str | None:
    """Why ``model`` is taken to be trained in bf16 (a family or a size), or None."""
    family = _BF16_FAMILIES.search(model)
    if family is not None:
        return f"a {family.group(0).strip('/_-. ')} model"
    size = _SIZE.search(model.rstrip("/"))
    if size is not None and float(size.group(1)) >= 1 and not _FP16_FAMILIES.search(model):
        return f"a {size.group(1)}B-parameter model (LLMs of that size are trained in bf16)"
    return None


def _optimizer(facts: ConfigFacts) -> str:
    """'adam' | 'sgd' | '' — Adam family is the assumption when the optimizer is unnamed."""
    name = str(facts.get("optimizer", "")).lower()
    if "sgd" in name or "momentum" in name:
        return "sgd"
    if not name or any(a in name for a in _ADAM):
        return "adam"
    return ""


def _eff_batch(facts: ConfigFacts) -> float | None:
    b = facts.number("batch_size", positive=True)  # 0 or -1 (fuzzed, or "auto" -1): unknown
    if b is None:
        return None
    accum = facts.number("grad_accum", positive=True) or 1.0
    return b * accum * (facts.number("world_size", positive=True) or 1.0)


def _finding(id: str, severity: Any, title: str, explanation: str, **kw: Any) -> Finding:
    return Finding(
        id=id, severity=severity, title=title, explanation=explanation, source="config", **kw
    )


def lint_facts(facts: ConfigFacts) -> list[Finding]:
    """All config-only findings for ``facts``; an empty or unrelated config gives none."""
    if not facts.facts:
        return []
    out: list[Finding] = []
    for rule in (
        _not_finite,
        _clipping,
        _fp16_scaling,
        _scale_high,
        _lr_high,
        _patience,
        _warmup,
        _beta2,
        _bf16,
        _ds_scheduler,
        sanity_findings,
    ):
        out.extend(rule(facts))
    return out


def _not_finite(facts: ConfigFacts) -> list[Finding]:
    bad = {
        f.key or f.name: f.value
        for f in facts.facts.values()
        if isinstance(f.value, float) and not math.isfinite(f.value)
    }
    if not bad:
        return []
    shown = ", ".join(f"{k} = {v}" for k, v in bad.items())
    return [
        _finding(
            "config-not-finite",
            "error",
            f"{len(bad)} setting{'s are' if len(bad) > 1 else ' is'} not a finite number",
            f"{shown}: a NaN or infinite setting (or an integer too long for a float) makes the "
            "first update non-finite or the schedule meaningless. Set a finite value; the other "
            "rules ignore these settings until then.",
            evidence=bad,
        )
    ]


def _clipping(facts: ConfigFacts) -> list[Finding]:
    if not ({"lr", "optimizer"} & facts.facts.keys()):
        return []  # not a training config we understand
    clip = facts.number("max_grad_norm")
    if clip is not None and clip > 0:
        return []
    if clip is None and (_default_clip(facts) or 0) > 0:
        return []  # not set, and the framework clips by default (HF Trainer: 1.0)
    risk = _clip_risk(facts)
    return [
        _finding(
            "no-grad-clipping",
            "warning" if risk else "info",
            f"No gradient clipping configured{f' {risk}' if risk else ''}",
            f"{user_key(facts, 'max_grad_norm')} is {'0' if clip == 0 else 'not set'}: nothing bounds "
            "the update when a bad batch or an fp16 overflow produces a huge gradient, and one such "
            "step can wreck the weights (seed 002 ran to grad norm inf and 10% accuracy). "
            + (
                f"That is likely here: no clipping {risk}. "
                if risk
                else "Many published recipes train without it (torchtune, LitGPT fine-tuning, "
                "MMDetection's 1x schedule); it matters when the run shows spikes. "
            )
            + "Clip the global norm at 1.0; afterwards watch the logged grad norm: clipping should "
            "engage only on occasional outliers.",
            fixes=[make_fix(facts, "Clip the global gradient norm", max_grad_norm=1.0)],
        )
    ]


def _clip_risk(facts: ConfigFacts) -> str:
    """What makes an unclipped huge step likely in this config ('' when nothing does): fp16
    overflow (seed 002), clipping switched off explicitly (a 0 written in the config, as in seed
    002's ds_config), an LR above the usual bound, or Adam at lr >= 1e-3 without warm-up. A clip
    merely absent, in a recipe with none of these, is advice: many published recipes train
    without one."""
    lr = _peak_lr(facts)
    bound = _lr_bound(facts)
    if _fp16(facts) and (lr is None or lr >= FP16_CLIP_LR):
        return "in fp16"
    if facts.number("max_grad_norm") == 0:
        return f"({user_key(facts, 'max_grad_norm')}: 0 turns it off on purpose)"
    over = 1.0 if _lr_warn_over_bound(facts) == _WARN_OVER_BOUND else _WARN_OVER_BOUND_NO_EVIDENCE
    if lr is not None and bound is not None and lr > bound[0] * over:
        return f"at a learning rate ({fmt(lr)}) above the usual bound ({fmt(bound[0])})"
    if _no_warmup_at_high_lr(facts) and _lr_rules_apply(facts, lr):
        return f"with no warm-up at learning rate {fmt(lr or 0)}"
    return ""


#: Adam at this many times its bound (lr >= 0.1) is out of range for any network
_ADAM_EXTREME = 100
#: how far above its bound an LR must be for a warning: 5x with evidence of a transformer; 20x for
#: an Adam config without it (a published GNN recipe trains at 10x, digits CNNs diverge at 25-50x)
_WARN_OVER_BOUND = 5
_WARN_OVER_BOUND_NO_EVIDENCE = 20


def _lr_rules_apply(facts: ConfigFacts, lr: float | None) -> bool:
    """Whether the Adam warm-up rules - rules from training transformers - apply as warnings:
    SGD, or :func:`_transformer_evidence`, or an LR 100x the bound. Without that evidence (an
    interatomic-potential GNN at Adam 1e-2, an MNIST MLP at 1e-3 without warm-up: both published
    and training fine) they are advice."""
    if _optimizer(facts) != "adam" or _transformer_evidence(facts):
        return True
    return lr is not None and lr >= _ADAM_EXTREME * 1e-3


def _lr_warn_over_bound(facts: ConfigFacts) -> float:
    """How many times its bound an LR must be for lr-high-for-batch to warn (see the constants)."""
    if _optimizer(facts) != "adam" or _transformer_evidence(facts):
        return _WARN_OVER_BOUND
    return _WARN_OVER_BOUND_NO_EVIDENCE


def _transformer_evidence(facts: ConfigFacts) -> bool:
    """The config shows a sequence or pretrained model: a sequence length, d_model, a vocabulary,
    a pretrained model, LoRA, a noam schedule, the reference trainer's gpt, or a transformer
    trainer's format (HF TrainingArguments, a ds_config, nanoGPT)."""
    if _pretrained(facts) or _finetune(facts) is not None or _noam(facts):
        return True
    if any(n in facts for n in ("seq_len", "d_model", "vocab_size")):
        return True
    if facts.format in ("hf-training-args", "deepspeed", "nanogpt"):
        return True
    return str(facts.get("model", "")).strip().lower() == "gpt"


#: below this LR an unclipped fp16 run is not warned about for fp16 alone (module docstring)
FP16_CLIP_LR = 1e-4


def _peak_lr(facts: ConfigFacts) -> float | None:
    """The peak learning rate: ``lr`` itself, or under a noam schedule the peak its factor gives
    (lr × d_model^-0.5 × warmup^-0.5); None when a noam factor cannot be turned into a peak."""
    lr = facts.number("lr")
    if lr is None or not _noam(facts):
        return lr
    d, w = facts.number("d_model", positive=True), facts.number("warmup_steps", positive=True)
    if d is None or w is None:
        return None
    return lr * d**-0.5 * w**-0.5


def _noam(facts: ConfigFacts) -> bool:
    return "noam" in str(facts.get("schedule", "")).lower()


def _default_clip(facts: ConfigFacts) -> float | None:
    """The clip threshold the config's framework applies when the config sets none."""
    value, _ = setting(facts, "max_grad_norm")
    if value is None and facts.key("model") == "base_model":
        return 1.0  # axolotl (its base_model key) trains with HF Trainer: max_grad_norm 1.0
    return value if isinstance(value, (int, float)) else None


def _pretrained(facts: ConfigFacts) -> str:
    """The pretrained model a run fine-tunes, as the config names it ('' when none is named)."""
    if facts.key("model").rsplit(".", 1)[-1] not in _PRETRAINED_KEYS:
        return ""  # e.g. the reference trainer's model.name (cnn/gpt) is an architecture
    return str(facts.get("model", ""))


def _finetune(facts: ConfigFacts) -> str | None:
    """'lora' | 'full' for a run that fine-tunes a pretrained model, else None."""
    kind = str(facts.get("finetuning", "")).strip().lower()
    if kind in ("lora", "qlora") or (not kind and "lora_rank" in facts):
        return "lora"
    if kind in ("full", "freeze") or (not kind and _pretrained(facts)):
        return "full"
    return None


def _fp16(facts: ConfigFacts) -> bool:
    return str(facts.get("precision", "")).lower() == "fp16"


def _fp16_scaling(facts: ConfigFacts) -> list[Finding]:
    init = facts.number("loss_scale_init")
    if (
        not _fp16(facts)
        or init is None
        or init > 1
        or "initial_scale_power" in user_key(facts, "loss_scale_init")
    ):
        return []
    key = user_key(facts, "loss_scale_init")
    value: Any = 0 if key.endswith("loss_scale") else 2.0**12
    return [
        _finding(
            "fp16-without-loss-scaling",
            "warning",
            f"fp16 with a static loss scale of {fmt(init)}",
            "fp16 cannot represent gradients below ~6e-8; without loss scaling many small "
            "gradients underflow to zero and training silently stalls. Use dynamic loss scaling "
            "(DeepSpeed loss_scale 0, or torch.amp.GradScaler); afterwards the logged loss scale "
            "should settle in the thousands with rare overflow skips.",
            fixes=[make_fix(facts, "Use dynamic loss scaling", loss_scale_init=value)],
        )
    ]


def _scale_high(facts: ConfigFacts) -> list[Finding]:
    init = facts.number("loss_scale_init")
    if init is None or init < 2.0**16 or facts.get("precision") in ("bf16", "fp32"):
        return []
    interval = facts.number("loss_scale_growth_interval")
    key = user_key(facts, "loss_scale_init")
    power_key = key.endswith("initial_scale_power")
    if interval is not None and interval <= 100:
        severity = "warning"
    elif power_key and interval is None:
        severity = "info"
    else:
        return []
    changes: dict[str, Any] = {"loss_scale_init": 2.0**10}  # make_fix writes powers as powers
    # slower growth comes from the interval, never a growth factor of 1.5: a power-of-two scale
    # keeps scaling and unscaling exact (docs/guard.md, "AMP")
    if interval is not None:
        changes["loss_scale_growth_interval"] = int(max(200, 2 * interval))
    every = f", growing every {interval:g} steps" if interval is not None else ""
    start = f"2**{math.log2(init):.0f}" if math.log2(init).is_integer() else f"{init:g}"
    return [
        _finding(
            "loss-scale-init-high",
            severity,
            f"Loss scale starts at {start}{every}",
            f"The fp16 loss scale starts at {start}{every}. Every overflow costs a skipped step "
            "and a halving; a high start followed by frequent growth keeps the scale at the edge of "
            "overflow, so the run alternates inf gradients and skips (seed 004: init_scale=2**16, "
            "growth_interval=100, grad_norm=inf). Start at 2**10 and grow slowly; afterwards the "
            "scale should settle and overflow skips become rare.",
            fixes=[make_fix(facts, "Start the loss scale lower and grow it less often", **changes)],
            related=["loss-scale-collapse", "fp16-overflow"],
        )
    ]


def _lr_bound(facts: ConfigFacts) -> tuple[float, str] | None:
    """The usual upper bound on the learning rate for this optimizer, batch and kind of run."""
    kind, eff = _optimizer(facts), _eff_batch(facts)
    if not kind:
        return None
    if kind == "adam":
        bound = max(1e-3, 1e-3 * math.sqrt((eff or 256) / 256))
        rule = "1e-3 × sqrt(batch/256), at least 1e-3 (Adam family)"
        tuning = _finetune(facts)
        if tuning is not None and _FINETUNE_BOUND[tuning] < bound:
            bound = _FINETUNE_BOUND[tuning]
            rule = (
                f"{fmt(bound)} for {'LoRA' if tuning == 'lora' else 'full'} fine-tuning of a "
                "pretrained model (Adam family)"
            )
    else:
        bound = max(0.1, 0.1 * (eff or 256) / 256)
        rule = "0.1 × batch/256, at least 0.1 (SGD, linear scaling)"
    return bound, rule


def _lr_high(facts: ConfigFacts) -> list[Finding]:
    lr, eff, known = _peak_lr(facts), _eff_batch(facts), _lr_bound(facts)
    warmed = ""
    if lr is not None and _noam(facts) and _warmup_too_few_steps(facts):
        # the noam peak comes from the short warm-up: judge the peak once it is warmed up as
        # warmup-short's fix says (that finding names the peak it gives now)
        lr *= ((facts.number("warmup_steps") or 1) / _adam_warmup_rule(facts)) ** 0.5
        warmed = f" once warmed up over {_adam_warmup_rule(facts):.0f} steps"
    if lr is None or lr <= 0 or known is None:
        return []
    bound, rule = known
    if lr <= bound:
        return []
    severity = "warning" if lr > _lr_warn_over_bound(facts) * bound else "info"
    batch = f"effective batch {eff:g}" if eff else "unknown batch size"
    factor = facts.number("lr") or lr
    noam = _noam(facts)
    peak = (
        f"The noam schedule's peak learning rate{warmed} ({fmt(factor)} × d_model^-0.5 × "
        f"warmup^-0.5 = {fmt(lr)})"
        if noam
        else f"Learning rate {fmt(lr)}"
    )
    fix = (
        make_fix(facts, "Scale the noam factor down to the bound", lr=nice(factor * bound / lr))
        if noam
        else make_fix(facts, "Lower the learning rate to the bound", lr=nice(bound))
    )
    return [
        _finding(
            "lr-high-for-batch",
            severity,
            f"{peak} is {lr / bound:.1f}× the usual bound for this batch",
            f"With {batch}, a common upper bound for the learning rate is {fmt(bound)} "
            f"(heuristic: {rule}). Above it, updates overshoot: expect loss spikes, growing "
            "gradient norms and clipping on most steps. Lower it; afterwards the gradient norm "
            "should stay flat and the loss decrease without spikes.",
            fixes=[fix],
            evidence={"lr": lr, "bound": bound, "effective_batch": eff},
        )
    ]


def _plateau_relevant(facts: ConfigFacts) -> bool:
    sched = str(facts.get("schedule", "")).lower()
    return not sched or "plateau" in sched


def _patience(facts: ConfigFacts) -> list[Finding]:
    p, stop, epochs = (
        facts.number(n) for n in ("plateau_patience", "early_stop_patience", "epochs")
    )
    if p is None or not _plateau_relevant(facts):
        return []
    out: list[Finding] = []
    new_p = max(1, math.ceil(p / 2))
    if p >= 5 or (epochs and p >= epochs / 4):
        severe = p >= 10 or bool(epochs and p >= epochs / 4)
        out.append(
            _finding(
                "plateau-patience-long",
                "warning" if severe else "info",
                f"Plateau patience {p:g} is long",
                f"{user_key(facts, 'plateau_patience')}={p:g}: the LR is cut only after {p:g} "
                "evaluations without improvement, so a run that has stopped improving keeps "
                "training at the high LR that long — enough for a spike to set in (seed 001: best "
                "at epoch 10, LR cut at 24). A shorter patience (or a cosine schedule) reacts in "
                "time; afterwards the first LR reduction should come a few evaluations after the "
                "loss stops improving.",
                fixes=[make_fix(facts, "Halve the plateau patience", plateau_patience=new_p)],
                related=["scheduler-late"],
            )
        )
    if stop is not None and p >= stop:
        out.append(
            _finding(
                "patience-conflict",
                "warning",
                f"Plateau patience {p:g} ≥ early-stopping patience {stop:g}",
                f"The scheduler waits {p:g} evaluations before cutting the LR, but early stopping "
                f"ends the run after {stop:g}: the LR can never drop before the run stops. Keep "
                "early-stopping patience a few evaluations longer than the scheduler's; afterwards "
                "an LR reduction should appear before any early stop.",
                fixes=[conflict_fix(facts, p)],
                related=["scheduler-late"],
            )
        )
    return out


def _warmup(facts: ConfigFacts) -> list[Finding]:
    lr, ratio, steps = (
        _peak_lr(facts),
        facts.number("warmup_ratio"),
        facts.number("warmup_steps"),
    )
    eff = _eff_batch(facts)
    if lr is None:
        return []
    no_warmup = (ratio is None or ratio == 0) and (steps is None or steps == 0)
    rule = _adam_warmup_rule(facts)
    applies = "warning" if _lr_rules_apply(facts, lr) else "info"
    if _no_warmup_at_high_lr(facts):
        severity, what = applies, "no warmup" if no_warmup else f"a warmup ratio of {ratio:g}"
    elif _warmup_too_few_steps(facts):
        severity = applies
        what = (
            f"a warm-up of {steps:g} steps, shorter than Adam's first-moment horizon "
            f"1/(1-beta1) = {_adam_horizon(facts):.0f} steps, so no warm-up at all (Adam's rule "
            f"of thumb: 2/(1-beta2) = {rule:.0f} steps, Ma & Yarats 2019)"
        )
    elif ratio is not None and 0 < ratio < 0.1 and eff is not None and eff >= 512:
        severity, what = "info", f"a warmup ratio of {ratio:g} at effective batch {eff:g}"
    else:
        return []
    if ratio is not None and ratio > 0:
        fix = make_fix(facts, "Warm up longer", warmup_ratio=max(0.1, 2 * ratio))
    elif steps:
        want = max(2 * steps, 500, round(rule) if _warmup_too_few_steps(facts) else 0)
        fix = make_fix(facts, "Warm up longer", warmup_steps=warmup_steps_for(facts, want))
    else:
        fix = make_fix(facts, "Add a linear warmup", warmup_steps=warmup_steps_for(facts, 500))
    return [
        _finding(
            "warmup-short",
            severity,
            f"Learning rate {fmt(lr)} with {what}",
            f"The run reaches its peak learning rate {fmt(lr)} with {what}. In the first steps "
            "Adam's moment estimates are poor and large batches are fragile (Goyal et al. 2017); "
            "too short a warmup shows up as spikes and clipping right at the start. Warm up "
            "longer; afterwards the first steps should be as calm as the rest of the run.",
            fixes=[fix],
        )
    ]


def _adam_warmup_rule(facts: ConfigFacts) -> float:
    """Adam's warm-up rule of thumb in steps, 2/(1-beta2) (beta2 0.999 when not given)."""
    b2 = facts.number("beta2")
    b2 = b2 if b2 is not None and 0 < b2 < 1 else 0.999
    return 2 / (1 - b2)


def _adam_horizon(facts: ConfigFacts) -> float:
    """Adam's first-moment horizon in steps, 1/(1-beta1), at most 10 (beta1 0.9, also when not
    given): a beta1 above 0.9 is a fault of its own (a slow momentum), not a reason to ask for a
    longer warm-up (fix loop round 4's beta1 0.99 GPT would be told to warm up instead)."""
    b1 = facts.number("beta1")
    b1 = min(b1, 0.9) if b1 is not None and 0 < b1 < 1 else 0.9
    return round(1 / (1 - b1), 6)  # 1/(1-0.9) is 10.000000000000002 in floating point


def _warmup_too_few_steps(facts: ConfigFacts) -> bool:
    """Adam at a peak LR >= 1e-3 warmed up over fewer steps than its first-moment horizon."""
    lr, steps = _peak_lr(facts), facts.number("warmup_steps", positive=True)
    return (
        _optimizer(facts) == "adam"
        and lr is not None
        and lr >= 1e-3
        and steps is not None
        and facts.number("warmup_ratio", positive=True) is None
        and steps < _adam_horizon(facts)
    )


def _no_warmup_at_high_lr(facts: ConfigFacts) -> bool:
    """Adam at lr >= 1e-3 with no warm-up (or a ratio under 2%): the warmup-short warning."""
    lr, ratio, steps = (_peak_lr(facts), facts.number("warmup_ratio"), facts.number("warmup_steps"))
    no_warmup = (ratio is None or ratio == 0) and (steps is None or steps == 0)
    if no_warmup and ratio is None and steps is None and _schedule_elsewhere(facts):
        return False  # the warm-up is set where the schedule is: unknown here, not absent
    return (
        _optimizer(facts) == "adam"
        and lr is not None
        and lr >= 1e-3
        and (no_warmup or (ratio is not None and 0 < ratio < 0.02))
    )


def _schedule_elsewhere(facts: ConfigFacts) -> bool:
    """A ds_config without a ``scheduler`` block leaves the LR schedule (and its warm-up) to the
    training script's own scheduler: nothing in the file says there is none."""
    return facts.format == "deepspeed" and "schedule" not in facts


def _beta2(facts: ConfigFacts) -> list[Finding]:
    b2, eff = facts.number("beta2"), _eff_batch(facts)
    if b2 is None or b2 < 0.999 or not ((eff is not None and eff >= 512) or _fp16(facts)):
        return []
    return [
        _finding(
            "beta2-slow",
            "info",
            f"Adam beta2={b2:g} adapts slowly",
            f"With beta2={b2:g} the second-moment estimate averages over ~{1 / (1 - b2):.0f} "
            "steps, so after a gradient spike the denominator stays stale and the effective step "
            "stays large for a long time. 0.99 (or 0.95 for large transformers) recovers faster "
            "from instability events; only worth it if the run shows spikes.",
            fixes=[make_fix(facts, "Faster second-moment adaptation", beta2=0.99)],
        )
    ]


def _bf16(facts: ConfigFacts) -> list[Finding]:
    if not _fp16(facts):
        return []
    fix = make_fix(facts, "Use bf16 mixed precision", precision="bf16")
    model = _pretrained(facts)
    why = bf16_trained(model) if model else None
    if why is not None:
        return [
            _finding(
                "fp16-prefer-bf16",
                "warning",
                f"fp16 fine-tuning of {model}, a model trained in bf16",
                f"{model} is {why}, trained and released in "
                "bf16: its activations exceed fp16's range (65504), so fp16 fine-tuning overflows "
                "to inf/NaN losses or a loss scale collapsing to 1 (T5/mT5: huggingface/"
                "transformers#10830, #14189). Train in bf16; on a GPU without bf16 (V100, T4) use "
                "fp32. Afterwards the loss and grad norm should stay finite from the first steps.",
                fixes=[fix, make_fix(facts, "Train in fp32", precision="fp32")],
            )
        ]
    return [
        _finding(
            "fp16-prefer-bf16",
            "info",
            "fp16 where bf16 may be available",
            "fp16 overflows above 65504 and needs loss scaling; bf16 has fp32's range, needs no "
            "scaler and avoids overflow skips. On Ampere or newer GPUs (and TPUs) prefer bf16.",
            fixes=[fix],
        )
    ]


#: a DeepSpeed default peak this many times the optimizer's lr is warned about
_DEFAULT_PEAK_OVER_LR = 2.0


def _ds_scheduler(facts: ConfigFacts) -> list[Finding]:
    """``ds-scheduler-override``: what a ds_config's scheduler block does to the LR (docstring)."""
    kind = str(facts.get("ds_scheduler", ""))
    if facts.format != "deepspeed" or not kind:
        return []
    key = facts.key("ds_scheduler").rsplit(".", 1)[0]  # "scheduler"
    if kind == "WarmupLR" and facts.get("ds_scheduler_auto") is True:
        return [
            _finding(
                "ds-scheduler-override",
                "warning",
                "DeepSpeed's WarmupLR replaces the Trainer's schedule: the LR never decays",
                f'{key}.type is WarmupLR with "auto" params, so this file is filled by the HF '
                "Trainer (or accelerate) - and a ds_config scheduler wins over its "
                "lr_scheduler_type: WarmupLR warms up and then holds the peak LR for the whole "
                "run (constant_with_warmup), whatever cosine or linear schedule the command line "
                "asks for (LLaVA#1433: the loss hovers instead of converging; Qwen#672, "
                "transformers#15508: the LR stays constant). Delete the scheduler block: the "
                "Trainer then builds its own schedule with the same warm-up. Afterwards the "
                "logged learning rate should decay after the warm-up.",
                fixes=[
                    Fix(
                        description=f"Delete the {key} block (the Trainer's lr_scheduler_type and "
                        "warm-up then apply)"
                    )
                ],
                evidence={"scheduler": kind},
            )
        ]
    peak, lr = facts.number("ds_scheduler_default_peak"), facts.number("lr", positive=True)
    lr_key = facts.key("lr") if "lr" in facts else ""
    if peak is None or lr is None or not lr_key.startswith("optimizer"):
        return []
    if peak < _DEFAULT_PEAK_OVER_LR * lr:
        return []
    where = facts.key("ds_scheduler_default_peak")
    return [
        _finding(
            "ds-scheduler-override",
            "warning",
            f"{kind} warms up to DeepSpeed's default {fmt(peak)}, {peak / lr:.0f}x {lr_key}",
            f"{key}.type is {kind} without warmup_max_lr, so it warms up to DeepSpeed's default "
            f"{fmt(peak)} and holds or decays from there: the scheduler sets the LR at every "
            f"step, so {lr_key} = {fmt(lr)} is never used and the run trains at "
            f"{peak / lr:.0f}x the intended LR (DeepSpeed#7303). Set {where} to the intended "
            "peak; afterwards the logged learning rate should peak at it.",
            fixes=[
                Fix(
                    description=f"Warm up to the optimizer's lr ({fmt(lr)})",
                    changes={where: lr},
                )
            ],
            evidence={"scheduler_peak": peak, "lr": lr},
        )
    ]
