"""Build :class:`~stabletrain.records.Fix` objects in the user's own config keys.

A finding is only useful if it says what to change *in the file the user has*: ``training.
gradient_clip_value: 1.0 → 0.5``, not "lower the clip". :func:`make_fix` takes normalised fact
names (``lr``, ``max_grad_norm``...) and maps them to the user's dotted key through
:meth:`ConfigFacts.key`; when the config never set the fact, a per-format default key is used
(``gradient_clipping`` for DeepSpeed, ``train.max_grad_norm`` for stabletrain YAML...).

Also small number helpers shared by detectors and lint rules (``nice`` rounding, ``fmt``).
Limits: the default-key table covers the formats the config readers produce; an unknown format
falls back to the normalised fact name.
"""

from __future__ import annotations

import math
from typing import Any

from stabletrain.records import ConfigFacts, Fix

#: Where a fact lives when the user's config never set it, per config format.
_DEFAULT_KEYS: dict[str, dict[str, str]] = {
    "stabletrain": {
        "lr": "optim.lr",
        "max_grad_norm": "train.max_grad_norm",
        "precision": "train.precision",
        "warmup_steps": "schedule.warmup_steps",
        "warmup_ratio": "schedule.warmup_ratio",
        "weight_decay": "optim.weight_decay",
        "plateau_patience": "schedule.plateau_patience",
        "early_stop_patience": "train.early_stopping_patience",
        "loss_scale_init": "amp.init_scale",
        "loss_scale_growth_interval": "amp.growth_interval",
        "loss_scale_growth_factor": "amp.growth_factor",
        "schedule": "schedule.name",
    },
    "deepspeed": {
        "max_grad_norm": "gradient_clipping",
        "precision": "fp16.enabled",
        "lr": "optimizer.params.lr",
        "weight_decay": "optimizer.params.weight_decay",
        "warmup_steps": "scheduler.params.warmup_num_steps",
        "loss_scale_init": "fp16.initial_scale_power",
        "loss_scale_growth_interval": "fp16.loss_scale_window",
    },
    "hf": {
        "lr": "learning_rate",
        "max_grad_norm": "max_grad_norm",
        "precision": "fp16",
        "warmup_steps": "warmup_steps",
        "warmup_ratio": "warmup_ratio",
        "weight_decay": "weight_decay",
        "schedule": "lr_scheduler_type",
    },
}
_FORMAT_ALIASES = {
    "stabletrain-yaml": "stabletrain",
    "ds_config": "deepspeed",
    "deepspeed-json": "deepspeed",
    "hf-training-args": "hf",
    "hf_training_args": "hf",
    "training_args": "hf",
    "huggingface": "hf",
}


def user_key(facts: ConfigFacts | None, name: str) -> str:
    """The user's key for fact ``name``; a per-format default when the config lacks it."""
    if facts is not None and name in facts:
        return facts.key(name)
    fmt_name = (facts.format or "") if facts is not None else ""
    fmt_name = _FORMAT_ALIASES.get(fmt_name, fmt_name)
    return _DEFAULT_KEYS.get(fmt_name, {}).get(name, name)


def config_known(facts: ConfigFacts | None) -> bool:
    """Whether a training config was read (so "X is not set" means unset, not unknown)."""
    return facts is not None and bool({"lr", "optimizer", "max_grad_norm"} & facts.facts.keys())


def make_fix(
    facts: ConfigFacts | None, description: str, code: str | None = None, **changes: Any
) -> Fix:
    """A Fix whose ``changes`` are keyed by the user's keys (given here by fact name)."""
    return Fix(
        description=description,
        changes={user_key(facts, name): value for name, value in changes.items()},
        code=code,
    )


def precision_value(facts: ConfigFacts | None, target: str) -> Any:
    """The value to write into the precision key to switch to ``target`` ("bf16" or "fp32").

    Boolean-style keys (HF ``fp16``, DeepSpeed ``fp16.enabled``) take ``False``; string-style keys
    (stabletrain ``train.precision``, Lightning ``precision``) take the name.
    """
    key = user_key(facts, "precision")
    current = facts.get("precision") if facts is not None else None
    if (
        key.endswith("enabled")
        or key.split(".")[-1] in ("fp16", "half")
        or isinstance(current, bool)
    ):
        return False
    return target


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
