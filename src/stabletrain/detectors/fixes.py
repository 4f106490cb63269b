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
from typing import Any, Literal

from stabletrain.records import ConfigFacts, Fix

Vocabulary = Literal[
    "names",
    "stabletrain",
    "generic",
    "hf",
    "ms-swift",
    "deepspeed",
    "megatron",
    "lightning",
    "mmengine",
    "nanogpt",
]
Precision = Literal["bf16", "fp32"]

_HF = {
    "lr": "learning_rate",
    "max_grad_norm": "max_grad_norm",
    "warmup_steps": "warmup_steps",
    "warmup_ratio": "warmup_ratio",
    "weight_decay": "weight_decay",
    "schedule": "lr_scheduler_type",
    "beta1": "adam_beta1",
    "beta2": "adam_beta2",
    "eps": "adam_epsilon",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "epochs": "num_train_epochs",
    "max_steps": "max_steps",
    "logging_steps": "logging_steps",
    "logging_nan_inf_filter": "logging_nan_inf_filter",
    "plateau_patience": "lr_scheduler_kwargs.patience",
    "early_stop_patience": "early_stopping_patience",  # EarlyStoppingCallback's argument
}

#: fact name -> key, per vocabulary, when the user's config does not set the fact
_KEYS: dict[str, dict[str, str]] = {
    "names": {},  # unknown origin: the normalised fact names themselves
    "stabletrain": {
        "lr": "optim.lr",
        "min_lr": "schedule.min_lr",
        "batch_size": "data.batch_size",
        "grad_accum": "train.grad_accum",
        "epochs": "train.epochs",
        "max_steps": "train.max_steps",
        "max_grad_norm": "train.max_grad_norm",
        "warmup_steps": "schedule.warmup_steps",
        "warmup_ratio": "schedule.warmup_ratio",
        "schedule": "schedule.name",
        "optimizer": "optim.name",
        "beta1": "optim.betas[0]",
        "beta2": "optim.betas[1]",
        "eps": "optim.eps",
        "weight_decay": "optim.weight_decay",
        "plateau_patience": "schedule.plateau_patience",
        "plateau_factor": "schedule.plateau_factor",
        "early_stop_patience": "train.early_stopping_patience",
        "early_stop_min_delta": "train.early_stopping_min_delta",
        "loss_scale_init": "amp.init_scale",
        "loss_scale_growth_interval": "amp.growth_interval",
        "loss_scale_growth_factor": "amp.growth_factor",
        "loss_scale_backoff": "amp.backoff_factor",
    },
    "generic": {  # keys configs.keys reads back from any YAML/JSON
        "lr": "lr",
        "min_lr": "min_lr",
        "batch_size": "batch_size",
        "grad_accum": "gradient_accumulation_steps",
        "epochs": "epochs",
        "max_steps": "max_steps",
        "max_grad_norm": "max_grad_norm",
        "warmup_steps": "warmup_steps",
        "warmup_ratio": "warmup_ratio",
        "schedule": "lr_scheduler",
        "beta1": "beta1",
        "beta2": "beta2",
        "eps": "eps",
        "weight_decay": "weight_decay",
        "plateau_patience": "plateau_patience",
        "plateau_factor": "plateau_factor",
        "early_stop_patience": "early_stopping_patience",
        "loss_scale_init": "init_scale",
        "loss_scale_growth_interval": "growth_interval",
        "loss_scale_growth_factor": "growth_factor",
        "loss_scale_backoff": "backoff_factor",
    },
    "hf": _HF,
    "ms-swift": _HF,
    "deepspeed": {
        "lr": "optimizer.params.lr",
        "max_grad_norm": "gradient_clipping",
        "weight_decay": "optimizer.params.weight_decay",
        "eps": "optimizer.params.eps",
        "warmup_steps": "scheduler.params.warmup_num_steps",
        "batch_size": "train_micro_batch_size_per_gpu",
        "grad_accum": "gradient_accumulation_steps",
        "loss_scale_init": "fp16.initial_scale_power",
        "loss_scale_growth_interval": "fp16.loss_scale_window",
        "loss_scale_min": "fp16.min_loss_scale",
    },
    "megatron": {
        "lr": "--lr",
        "min_lr": "--min-lr",
        "max_grad_norm": "--clip-grad",
        "weight_decay": "--weight-decay",
        "warmup_steps": "--lr-warmup-iters",
        "warmup_ratio": "--lr-warmup-fraction",
        "schedule": "--lr-decay-style",
        "beta1": "--adam-beta1",
        "beta2": "--adam-beta2",
        "eps": "--adam-eps",
        "batch_size": "--micro-batch-size",
        "max_steps": "--train-iters",
        "loss_scale_init": "--initial-loss-scale",
        "loss_scale_growth_interval": "--loss-scale-window",
        "loss_scale_min": "--min-loss-scale",
    },
    "lightning": {  # Trainer arguments; LR, warmup and decay live in the LightningModule
        "max_grad_norm": "gradient_clip_val",
        "grad_accum": "accumulate_grad_batches",
        "epochs": "max_epochs",
        "max_steps": "max_steps",
    },
    "mmengine": {
        "lr": "optim_wrapper.optimizer.lr",
        "weight_decay": "optim_wrapper.optimizer.weight_decay",
        "eps": "optim_wrapper.optimizer.eps",
        "max_grad_norm": "optim_wrapper.clip_grad.max_norm",
        "grad_accum": "optim_wrapper.accumulative_counts",
        "epochs": "train_cfg.max_epochs",
        "loss_scale_init": "optim_wrapper.loss_scale.init_scale",
        "loss_scale_growth_interval": "optim_wrapper.loss_scale.growth_interval",
        "loss_scale_growth_factor": "optim_wrapper.loss_scale.growth_factor",
        "loss_scale_backoff": "optim_wrapper.loss_scale.backoff_factor",
    },
    "nanogpt": {
        "lr": "learning_rate",
        "min_lr": "min_lr",
        "max_grad_norm": "grad_clip",
        "warmup_steps": "warmup_iters",
        "weight_decay": "weight_decay",
        "beta1": "beta1",
        "beta2": "beta2",
        "batch_size": "batch_size",
        "grad_accum": "gradient_accumulation_steps",
        "max_steps": "max_iters",
    },
}

#: the keys (and values) that switch a framework to bf16 / to fp32
_PRECISION: dict[str, dict[Precision, dict[str, Any]]] = {
    "names": {"bf16": {"precision": "bf16"}, "fp32": {"precision": "fp32"}},
    "stabletrain": {"bf16": {"train.precision": "bf16"}, "fp32": {"train.precision": "fp32"}},
    "generic": {"bf16": {"precision": "bf16"}, "fp32": {"precision": "fp32"}},
    "hf": {"bf16": {"fp16": False, "bf16": True}, "fp32": {"fp16": False}},
    "ms-swift": {"bf16": {"torch_dtype": "bfloat16"}, "fp32": {"torch_dtype": "float32"}},
    "deepspeed": {
        "bf16": {"fp16.enabled": False, "bf16.enabled": True},
        "fp32": {"fp16.enabled": False},
    },
    "megatron": {"bf16": {"--fp16": False, "--bf16": True}, "fp32": {"--fp16": False}},
    "lightning": {"bf16": {"precision": "bf16-mixed"}, "fp32": {"precision": "32-true"}},
    "mmengine": {
        "bf16": {"optim_wrapper.dtype": "bfloat16"},
        "fp32": {"optim_wrapper.type": "OptimWrapper"},
    },
    "nanogpt": {"bf16": {"dtype": "bfloat16"}, "fp32": {"dtype": "float32"}},
}

#: a framework's value for a fact the user did not set (only where the docs state one that
#: matters for a fix: HF, Megatron and nanoGPT clip at 1.0 out of the box, DeepSpeed and Lightning
#: do not clip unless told to)
_DEFAULTS: dict[str, dict[str, float]] = {
    "hf": {"max_grad_norm": 1.0},
    "ms-swift": {"max_grad_norm": 1.0},
    "megatron": {"max_grad_norm": 1.0},
    "nanogpt": {"max_grad_norm": 1.0},
    "stabletrain": {"max_grad_norm": 1.0},
    "deepspeed": {"max_grad_norm": 0.0},
    "lightning": {"max_grad_norm": 0.0},
    "mmengine": {"max_grad_norm": 0.0},
}

#: formats that name no framework, so no framework default applies
_NO_DEFAULTS = frozenset({None, "generic-log", "yaml", "json"})

#: ConfigFacts.format (what a config or log reader found) -> vocabulary
_FORMATS: dict[str, Vocabulary] = {
    "generic-log": "stabletrain",
    "stabletrain": "stabletrain",
    "stabletrain-yaml": "stabletrain",
    "yaml": "generic",
    "json": "generic",
    "deepspeed": "deepspeed",
    "ds_config": "deepspeed",
    "deepspeed-json": "deepspeed",
    "hf": "hf",
    "hf-training-args": "hf",
    "hf_training_args": "hf",
    "training_args": "hf",
    "huggingface": "hf",
    "hf-trainer-state": "hf",
    "hf-console": "hf",
    "hf-tensorboard": "hf",
    "ms-swift": "ms-swift",
    "ms-swift-jsonl": "ms-swift",
    "megatron": "megatron",
    "lightning": "lightning",
    "lightning-csv": "lightning",
    "lightning-tensorboard": "lightning",
    "mmengine": "mmengine",
    "xtuner": "mmengine",
    "nanogpt": "nanogpt",
}

_LABELS: dict[str, str] = {
    "names": "config",
    "stabletrain": "stabletrain",
    "generic": "config",
    "hf": "HF TrainingArguments",
    "ms-swift": "ms-swift",
    "deepspeed": "DeepSpeed config",
    "megatron": "Megatron-LM",
    "lightning": "Lightning Trainer",
    "mmengine": "mmengine",
    "nanogpt": "nanoGPT",
}


def vocabulary(facts: ConfigFacts | None) -> Vocabulary:
    """The framework whose key names a fix uses for facts the config did not set."""
    fmt_name = (facts.format or "") if facts is not None else ""
    return _FORMATS.get(fmt_name, "names")


def setting(facts: ConfigFacts | None, name: str) -> tuple[Any, str | None]:
    """``(value, None)`` when the config set ``name``; else ``(the framework's default, its name)``
    when the facts name a framework that has one; else ``(None, None)``."""
    if facts is not None and name in facts:
        return facts.get(name), None
    if facts is None or facts.format in _NO_DEFAULTS or facts.format not in _FORMATS:
        return None, None  # no framework known: its defaults are unknown too
    vocab = vocabulary(facts)
    value = _DEFAULTS.get(vocab, {}).get(name)
    return (value, _LABELS[vocab]) if value is not None else (None, None)


def user_key(facts: ConfigFacts | None, name: str) -> str:
    """The user's key for fact ``name``; else the vocabulary's key; else ``name`` itself."""
    if facts is not None and name in facts:
        return facts.key(name)
    return _KEYS[vocabulary(facts)].get(name, name)


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
            key = _KEYS[vocab].get(name, name if vocab == "names" else "")
        if not key:
            missing.append(f"{name} {value}")
            continue
        out[key] = _value_for(key, value)
    return out, missing


def make_fix(
    facts: ConfigFacts | None, description: str, code: str | None = None, **changes: Any
) -> Fix:
    """A Fix whose ``changes`` are keyed by the user's keys (given here by fact name)."""
    keyed, missing = changes_for(facts, **changes)
    if missing:
        where = _LABELS[vocabulary(facts)]
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
        return dict(_PRECISION[vocab][target])
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


def _value_for(key: str, value: Any) -> Any:
    """A normalised value in the unit its key takes (DeepSpeed stores scales as powers of 2)."""
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


def fmt(x: float | None) -> str:
    """Compact number for explanations: 0.0005 → 5e-04, 3.5 → 3.5, 65536 → 65536."""
    if x is None:
        return "?"
    if not math.isfinite(x):
        return str(x)
    if x != 0 and (abs(x) < 1e-3 or abs(x) >= 1e6):
        return f"{x:.2g}"
    return f"{x:.4g}"
