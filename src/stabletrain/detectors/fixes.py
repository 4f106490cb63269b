"""Build :class:`~stabletrain.records.Fix` objects in the user's own config keys.

A finding is only useful if it says what to change *in the file the user has*: ``training.
gradient_clip_value: 1.0 → 0.5``, not "lower the clip". :func:`make_fix` takes normalised fact
names (``lr``, ``max_grad_norm``, ``precision``...) and maps each to a key:

1. the key the user's config set it under (:meth:`ConfigFacts.key`), when the config has it;
2. else the key of the *vocabulary* the facts came from — the framework that wrote the config or
   the log (``ConfigFacts.format``, set by the config and log readers): HF ``TrainingArguments``
   (``max_grad_norm``, ``learning_rate``, ``bf16: true``), DeepSpeed ``ds_config`` keys
   (``gradient_clipping``, ``fp16.enabled``), Megatron-LM flags (``--clip-grad``, ``--bf16``),
   Lightning ``Trainer`` arguments (``gradient_clip_val``, ``precision: bf16-mixed``), mmengine /
   xtuner ``optim_wrapper`` keys, nanoGPT's config globals, ms-swift's arguments (HF's plus
   ``torch_dtype``); a generic YAML/JSON config gets the keys the config reader reads back
   (``stabletrain.configs.keys``); a log of no known framework (``"generic-log"``: a plain CSV,
   JSONL or ``SummaryWriter`` file) gets stabletrain's own keys; facts of unknown origin
   (``format`` None, e.g. a Guard given no config) keep the normalised fact names.

A fact a framework has no setting for (HF ``TrainingArguments`` has no GradScaler settings,
Lightning's ``Trainer`` no learning rate) is left out of ``changes`` and named in the description,
so no fix invents a key. Values follow the key: DeepSpeed's ``initial_scale_power`` is a power of
two, and a precision switch is as many keys as the framework needs (``fp16: false`` *and*
``bf16: true``). Keys starting with ``--`` are command-line flags (the report prints them so).

Also small number helpers shared by detectors and lint rules (``nice`` rounding, ``fmt``).
Key names were checked against each framework's documentation (TrainingArguments, DeepSpeed
config JSON, Megatron-LM ``arguments.py``, Lightning ``Trainer``, mmengine ``AmpOptimWrapper``,
xtuner configs, nanoGPT ``train.py``); limits: a framework's setting that is not one key (mmengine's
warmup is a ``param_scheduler`` entry) is described, not keyed.
"""

from __future__ import annotations

import math
from typing import Any

from stabletrain.detectors.vocabulary import (
    DEFAULTS,
    FORMATS,
    KEYS,
    LABELS,
    NO_CLIP,
    NO_DEFAULTS,
    PRECISION,
    Precision,
    Vocabulary,
    vocabulary,
)
from stabletrain.records import ConfigFacts, Fix


def setting(facts: ConfigFacts | None, name: str) -> tuple[Any, str | None]:
    """``(value, None)`` when the config set ``name``; else ``(the framework's default, its name)``
    when the facts name a framework that has one; else ``(None, None)``."""
    if facts is not None and name in facts:
        return facts.get(name), None
    if facts is None or facts.format in NO_DEFAULTS or facts.format not in FORMATS:
        return None, None  # no framework known: its defaults are unknown too
    vocab = vocabulary(facts)
    value = DEFAULTS.get(vocab, {}).get(name)
    return (value, LABELS[vocab]) if value is not None else (None, None)


def user_key(facts: ConfigFacts | None, name: str) -> str:
    """The user's key for fact ``name``; else the vocabulary's key; else ``name`` itself."""
    if facts is not None and name in facts:
        return facts.key(name)
    return KEYS[vocabulary(facts)].get(name, name)


def config_known(facts: ConfigFacts | None) -> bool:
    """Whether a training config was read (so "X is not set" means unset, not unknown)."""
    return facts is not None and bool({"lr", "optimizer", "max_grad_norm"} & facts.facts.keys())


def changes_for(facts: ConfigFacts | None, **changes: Any) -> tuple[dict[str, Any], list[str]]:
    """``({key: value} in the user's vocabulary, [facts it has no key for])``.

    ``precision`` takes a target (``"bf16"``/``"fp32"``) and becomes every key the switch needs;
    a loss scale given for DeepSpeed's ``initial_scale_power`` becomes its power of two.
    """
    out: dict[str, Any] = {}
    missing: list[str] = []
    for name, value in changes.items():
        if name == "precision":
            out.update(precision_changes(facts, value))
            continue
        if facts is not None and name in facts:
            key = facts.key(name)
        else:
            vocab = vocabulary(facts)
            key = KEYS[vocab].get(name, name if vocab == "names" else "")
        if not key:
            missing.append(f"{name} {value}")
            continue
        if _clip_off(name, value):
            key, value = _clip_off_setting(facts, key)
        out[key] = value_for(key, value)
    return out, missing


def _clip_off_setting(facts: ConfigFacts | None, key: str) -> tuple[str, Any]:
    """The key and value that turn clipping off. mmengine passes ``clip_grad``'s keywords to
    ``torch.nn.utils.clip_grad_norm_``, so ``max_norm: 0`` would scale every gradient to zero:
    there clipping is off only without ``clip_grad`` (``optim_wrapper.clip_grad: None``)."""
    if vocabulary(facts) == "mmengine" and key.endswith(".max_norm"):
        return key.removesuffix(".max_norm"), None
    return key, no_clip(facts)


def _clip_off(name: str, value: Any) -> bool:
    return name == "max_grad_norm" and (
        value is None
        or (isinstance(value, (int, float)) and not isinstance(value, bool) and value <= 0)
    )


def no_clip(facts: ConfigFacts | None) -> Any:
    """The value that turns clipping off in this run's framework (``null`` for the reference
    trainer, which refuses 0; 0 for HF, DeepSpeed, Megatron, Lightning, nanoGPT)."""
    return NO_CLIP.get(vocabulary(facts), 0.0)


def make_fix(
    facts: ConfigFacts | None, description: str, code: str | None = None, **changes: Any
) -> Fix:
    """A Fix whose ``changes`` are keyed by the user's keys (given here by fact name)."""
    keyed, missing = changes_for(facts, **changes)
    if missing:
        where = LABELS[vocabulary(facts)]
        description = f"{description} ({', '.join(missing)}: not a {where} setting; set in code)"
    return Fix(description=description, changes=keyed, code=code)


def precision_changes(facts: ConfigFacts | None, target: Precision) -> dict[str, Any]:
    """The keys and values that switch this run to ``target`` ("bf16" or "fp32").

    With the user's own precision key: a boolean flag pair keeps its style (HF ``fp16: false`` +
    ``bf16: true``, DeepSpeed ``fp16.enabled: false`` + ``bf16.enabled: true``); a string key
    gets the value its framework spells (``bf16-mixed``, ``bfloat16``, ``bf16``). Without one:
    the vocabulary's switch.
    """
    vocab = vocabulary(facts)
    if facts is None or "precision" not in facts or not facts.key("precision"):
        return dict(PRECISION[vocab][target])
    key = facts.key("precision")
    current = facts.get("precision")
    parts = key.split(".")
    last = parts[-1].lstrip("-").lower()
    if last == "enabled" and len(parts) >= 2 and parts[-2].lower() in ("fp16", "bf16"):
        base = ".".join(parts[:-2])
        pre = f"{base}." if base else ""
        return _flag_pair(f"{pre}fp16.enabled", f"{pre}bf16.enabled", current, target)
    if last in ("fp16", "half", "bf16"):
        prefix = key[: len(key) - len(parts[-1].lstrip("-"))]
        fp16_key = key if last != "bf16" else f"{prefix}fp16"
        bf16_key = key if last == "bf16" else f"{prefix}bf16"
        return _flag_pair(fp16_key, bf16_key, current, target)
    return {key: _precision_string(last, target, vocab)}


def _flag_pair(fp16_key: str, bf16_key: str, current: Any, target: Precision) -> dict[str, Any]:
    if target == "bf16":
        return {fp16_key: False, bf16_key: True}
    return {bf16_key: False} if current == "bf16" else {fp16_key: False}


def _precision_string(last: str, target: Precision, vocab: Vocabulary) -> str:
    if last in ("dtype", "torch_dtype", "amp_dtype"):
        return "bfloat16" if target == "bf16" else "float32"
    if last == "mixed_precision":  # accelerate: "no" | "fp16" | "bf16"
        return "bf16" if target == "bf16" else "no"
    if vocab == "lightning":
        return "bf16-mixed" if target == "bf16" else "32-true"
    return target


def value_for(key: str, value: Any) -> Any:
    """A normalised value in the unit its key takes (DeepSpeed stores scales as powers of 2):
    what a fix writes, and what the report shows as the key's current value."""
    if (
        key.endswith("initial_scale_power")
        and isinstance(value, (int, float))
        and not isinstance(value, bool)
        and value > 0
    ):
        return round(math.log2(value))
    return value


def lower_lr(lr: float | None, factor: float = 0.5) -> float | None:
    """A lower learning rate rounded to a readable value (2e-5 → 1e-5, 5e-4 → 2.5e-4)."""
    if lr is None or not math.isfinite(lr) or lr <= 0:
        return None
    return nice(lr * factor)


def nice(x: float) -> float:
    """Round to a readable 2-significant-digit value (3.47 → 3.5, 0.000173 → 0.00017)."""
    if x == 0 or not math.isfinite(x):
        return x
    return float(f"{x:.2g}")


def sentence(text: str) -> str:
    """``text`` with its first letter capitalised (a reason list read as a sentence)."""
    return text[:1].upper() + text[1:]


def fmt(x: float | None) -> str:
    """Compact number for explanations: 0.0005 → 5e-04, 3.5 → 3.5, 65536 → 65536."""
    if x is None:
        return "?"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2g}"
    return f"{x:.4g}"


def spike_fixes(
    facts: ConfigFacts, logged_lr: float | None = None, run_steps: float | None = None
) -> list[Fix]:
    """Concrete changes for spikes, in the user's key names: lower LR, tighter clip, warmup.

    The LR fix is relative (``lower_lr_fix``; ``logged_lr`` is not used as its base). A clip
    the framework applies by default (HF, Megatron: 1.0) counts as set: the fix tightens it.
    """
    fixes: list[Fix] = [lower_lr_fix(facts, 2.0, logged_lr)]
    clip, _ = setting(facts, "max_grad_norm")
    set_ = isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0
    clip_fix = tighter_clip_fix(facts, 0.5 if set_ else 1.0, "to bound the spikes")
    if clip_fix is not None:
        fixes.append(clip_fix)
    warm = facts.get("warmup_steps")
    ratio = facts.get("warmup_ratio")
    if (warm in (None, 0)) and (ratio in (None, 0, 0.0)):
        fixes.append(
            make_fix(
                facts,
                "Add a learning-rate warmup (a few hundred steps, at most a fifth of the run).",
                warmup_steps=warmup_steps_for(facts, 500, run_steps),
            )
        )
    fixes.append(
        Fix(
            "Let the stabletrain guard skip or roll back spiking steps.",
            code="guard = stabletrain.Guard(model, optimizer, config=GuardConfig.preset('default'))",
        )
    )
    return fixes


def plain_sgd(facts: ConfigFacts | None) -> bool:
    """Whether the config names an SGD-family optimizer (momentum SGD, Nesterov); an unnamed
    optimizer is not assumed to be SGD."""
    name = str(facts.get("optimizer", "") if facts is not None else "").lower()
    return "sgd" in name or "momentum" in name or "nesterov" in name


#: SGD's usual LR bound: 0.1 × effective batch / 256, at least 0.1 (linear scaling, Goyal et al.
#: 2017), for momentum 0.9 — the recipe (lr 0.1, momentum 0.9, batch 256) the bound comes from
SGD_BOUND, SGD_MOMENTUM = 0.1, 0.9
#: a clipped SGD step (lr × clip) under this share of the bound's step at clip 1 is a stall
TIGHT_STEP = 0.1


def sgd_lr_over_bound(facts: ConfigFacts | None) -> tuple[float, float] | None:
    """``(the configured LR, the LR at SGD's usual bound for this run)`` when plain SGD's LR is
    above that bound, else None (not SGD, no LR, or at or under it). The bound is scaled by the
    momentum, since SGD's step is ``lr / (1 - momentum)`` per unit gradient: momentum 0.99 at
    lr 0.3 steps as far as lr 3 at momentum 0.9 (an unknown momentum counts as 0.9). A clip so
    tight that the clipped step ``lr × clip`` is under a tenth of the bound's at clip 1 caps the
    steps below usual whatever the LR: None (lr 0.5 at clip 0.005 stalls)."""
    if facts is None or not plain_sgd(facts):
        return None
    lr = facts.number("lr", positive=True)
    if lr is None:
        return None
    batch = facts.number("batch_size", positive=True) or 256.0
    batch *= facts.number("grad_accum", positive=True) or 1.0
    batch *= facts.number("world_size", positive=True) or 1.0
    m = facts.number("momentum")
    m = SGD_MOMENTUM if m is None or not 0.0 <= m < 1.0 else m
    bound = max(SGD_BOUND, SGD_BOUND * batch / 256) * (1.0 - m) / (1.0 - SGD_MOMENTUM)
    clip = facts.number("max_grad_norm", positive=True)
    if clip is not None and lr * clip < TIGHT_STEP * bound:
        return None
    return (lr, bound) if lr > bound else None


def tighter_clip_fix(facts: ConfigFacts, target: float, why: str) -> Fix | None:
    """Clip at ``target`` when nothing clips tighter yet: "enable" only when no clip is set (the
    config's, or the framework's default: HF and Megatron clip at 1.0), "tighten" when a looser
    one is, None when the clip is already at or under ``target``."""
    clip, default_of = setting(facts, "max_grad_norm")
    if isinstance(clip, (int, float)) and not isinstance(clip, bool) and clip > 0:
        if clip <= target:
            return None
        note = f"; {clip:g} is the {default_of} default" if default_of else ""
        return make_fix(
            facts,
            f"Clip gradients harder ({clip:g} → {target:g}{note}) {why}.",
            max_grad_norm=target,
        )
    return make_fix(
        facts, f"Enable gradient clipping at norm {target:g} {why}.", max_grad_norm=target
    )


#: a warm-up longer than this share of the run keeps the LR low for most of it
WARMUP_SHARE = 0.2


def warmup_steps_for(facts: ConfigFacts, want: float, run_steps: float | None = None) -> int:
    """``want`` warm-up steps, at most ``WARMUP_SHARE`` of the run (its ``max_steps``, else
    ``run_steps`` seen in the log): 500 steps of warm-up in a 100-step run never reach the LR."""
    total = facts.number("max_steps", positive=True) or run_steps
    if total is not None and total > 0:
        want = min(want, WARMUP_SHARE * total)
    return max(1, int(want))


def lower_lr_fix(facts: ConfigFacts, factor: float, logged_lr: float | None = None) -> Fix:
    """ "Divide the LR by ``factor``": relative to the configured LR (with its value when the
    config gives one). ``logged_lr`` is accepted for old callers and not used: the log's peak
    LR is the wrong base (after a 100× schedule jump the peak is the bug); the report's change
    set computes the value from the LR the run had before the problem (report/changeset.py)."""
    del logged_lr
    return scale_lr_fix(facts, 1.0 / factor, f"Lower the learning rate {factor:g}x")


def scale_lr_fix(facts: ConfigFacts, factor: float, description: str) -> Fix:
    """A fix multiplying the LR by ``factor`` (``Fix.relative``), with the new value when the
    config gives the LR; without one, the change set fills in the value from the log."""
    lr = facts.number("lr", positive=True)
    if lr is not None:
        new = nice(lr * factor)
        fix = make_fix(facts, f"{description} ({fmt(lr)} → {fmt(new)}).", lr=new)
    else:
        fix = Fix(f"{description} (from the LR the run had before the problem).")
    fix.relative["lr"] = factor
    return fix
