"""Find stability-relevant settings anywhere in a config tree, by key name, keeping the key path.

Seed configs put ``learning_rate`` at the top, ``scheduler_patience`` under ``training:``,
``gradient_clip_value`` under ``trainer:``; Hydra configs nest ``optimizer.lr`` deeper still. The
tree is walked breadth-first, so the shallowest match wins, and each Fact records its dotted path
(``training.scheduler_patience``) so a fix can name the user's own key.

Keys are resolved in three steps (:func:`resolve`), the same for every format:

1. the exact name in :data:`KEY_FACTS` (``learning_rate``, fairseq's ``clip_norm``);
2. a known *suffix* after a prefix that names the phase or owner (``decay_warmup_steps``,
   ``optim_grad_clip``): only for the suffixes in :data:`_SUFFIXES` (warm-up and clip), and never
   when a prefix token says the value is for evaluation (``eval_``, ``valid_``);
3. a boolean switch whose name holds a precision token (``fp16_run: true``, ``use_fp16``): the
   run trains in that precision.

Values: a one-element list of a number (fairseq's ``lr: [0.00003]``) is that number; a two-item
list under ``betas``/``adam_betas`` is the pair (a ``"(0.9, 0.98)"`` string is not read: a fix
could not name one of its items); a schedule or optimizer given as a block is named by its
``name``, ``type``, ``_name`` (fairseq, Hydra), ``_target_`` or ``class_path``.

Limits: a key name used for something else (``patience`` of an unrelated callback) is taken at
face value; ``patience`` alone only counts under a key path containing ``early``.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from stabletrain.records import ConfigFacts

#: config key (lower-case) -> fact name
KEY_FACTS: dict[str, str] = {
    "learning_rate": "lr",
    "lr": "lr",
    "base_lr": "lr",
    "min_lr": "min_lr",
    "batch_size": "batch_size",
    "batch_size_per_gpu": "batch_size",
    "per_device_train_batch_size": "batch_size",
    "train_micro_batch_size_per_gpu": "batch_size",
    "micro_batch_size": "batch_size",
    "grad_accum": "grad_accum",
    "gradient_accumulation_steps": "grad_accum",
    "accumulate_grad_batches": "grad_accum",
    "warmup_ratio": "warmup_ratio",
    "warmup_steps": "warmup_steps",
    "warmup_num_steps": "warmup_steps",
    "warmup_iters": "warmup_steps",
    "warmup_updates": "warmup_steps",  # fairseq
    "num_warmup_steps": "warmup_steps",  # torchtune, HF get_*_schedule_with_warmup
    "lr_warmup_steps": "warmup_steps",  # LitGPT
    "max_grad_norm": "max_grad_norm",
    "grad_clip": "max_grad_norm",
    "clip_grad": "max_grad_norm",
    "clip_grad_norm": "max_grad_norm",
    "gradient_clip_value": "max_grad_norm",
    "gradient_clip_val": "max_grad_norm",
    "gradient_clipping": "max_grad_norm",
    "max_norm": "max_grad_norm",  # LitGPT train.max_norm
    "clip_norm": "max_grad_norm",  # fairseq --clip-norm (0 = off, its default)
    "adam_beta1": "beta1",
    "adam_beta2": "beta2",
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "adam_epsilon": "eps",
    "adam_eps": "eps",  # fairseq
    "weight_decay": "weight_decay",
    "momentum": "momentum",
    "dropout": "dropout",
    "dropout_rate": "dropout",
    "hidden_dropout_prob": "dropout",
    "resid_pdrop": "dropout",
    "seq_len": "seq_len",
    "seq_length": "seq_len",
    "block_size": "seq_len",
    "max_seq_length": "seq_len",
    "context_length": "seq_len",
    "init_std": "init_std",
    "initializer_range": "init_std",
    "scheduler": "schedule",
    "lr_scheduler": "schedule",
    "lr_scheduler_type": "schedule",
    "decay_method": "schedule",  # OpenNMT-py, NJUNMT: "noam"
    "scheduler_patience": "plateau_patience",
    "plateau_patience": "plateau_patience",
    "lr_patience": "plateau_patience",
    "scheduler_factor": "plateau_factor",
    "plateau_factor": "plateau_factor",
    "lr_factor": "plateau_factor",
    "early_stopping_patience": "early_stop_patience",
    "early_stop_patience": "early_stop_patience",
    "early_stopping_min_delta": "early_stop_min_delta",
    "init_scale": "loss_scale_init",
    "initial_scale": "loss_scale_init",
    "growth_factor": "loss_scale_growth_factor",
    "growth_interval": "loss_scale_growth_interval",
    "loss_scale_window": "loss_scale_growth_interval",
    "backoff_factor": "loss_scale_backoff",
    "min_loss_scale": "loss_scale_min",
    "epochs": "epochs",
    "num_epochs": "epochs",
    "num_train_epochs": "epochs",
    "max_epochs": "epochs",
    "max_steps": "max_steps",
    "train_iters": "max_steps",
    "total_steps": "max_steps",
    "max_update": "max_steps",  # fairseq
    "update_freq": "grad_accum",  # fairseq
    "num_classes": "num_classes",
    "n_classes": "num_classes",
    "num_labels": "num_classes",
    "vocab_size": "vocab_size",
    "d_model": "d_model",  # the width a noam schedule scales by
    "optimizer": "optimizer",
    "optim": "optimizer",
    "model_name_or_path": "model",  # HF, LlamaFactory: the pretrained model a run starts from
    "base_model": "model",  # axolotl
    "pretrained_model_name_or_path": "model",
    "finetuning_type": "finetuning",  # LlamaFactory: full | lora | freeze
    "adapter": "finetuning",  # axolotl: lora | qlora
    "lora_r": "lora_rank",
    "lora_rank": "lora_rank",
    "logging_steps": "logging_steps",
    "logging_nan_inf_filter": "logging_nan_inf_filter",
    "world_size": "world_size",
    "num_gpus": "world_size",
}
_PRECISION_KEYS = ("fp16", "bf16", "mixed_precision", "precision", "amp", "dtype")
#: suffixes resolved after any owner prefix (``decay_warmup_steps``): warm-up and clip only, whose
#: meaning does not change with the owner
_SUFFIXES = frozenset(
    {"warmup_steps", "warmup_ratio", "warmup_iters", "grad_clip", "clip_grad", "max_grad_norm"}
)
#: prefix tokens that put a setting on another phase than training (``eval_warmup_steps``)
_OTHER_PHASE = frozenset({"eval", "valid", "val", "validation", "test", "predict", "bleu"})
#: precision tokens a boolean switch may carry in its name (``fp16_run``, ``use_bf16``)
_PRECISION_TOKENS = ("fp16", "bf16")
#: sections that configure something other than the training run (torchtune's profiler has its
#: own ``warmup_steps``)
_NOT_TRAINING = frozenset({"profiler", "profiling"})


def walk(tree: Any) -> list[tuple[str, str, Any]]:
    """(dotted path, key, value) of every mapping entry, breadth-first."""
    out: list[tuple[str, str, Any]] = []
    queue: deque[tuple[str, Any]] = deque([("", tree)])
    while queue:
        prefix, node = queue.popleft()
        if isinstance(node, dict):
            for k, v in node.items():
                path = f"{prefix}.{k}" if prefix else str(k)
                out.append((path, str(k), v))
                if isinstance(v, (dict, list)) and str(k).lower() not in _NOT_TRAINING:
                    queue.append((path, v))
        elif isinstance(node, list):
            for i, v in enumerate(node):
                if isinstance(v, (dict, list)):
                    queue.append((f"{prefix}[{i}]", v))
    return out


def resolve(key: str) -> str | None:
    """The fact a config key names (module docstring, steps 1-2), or None."""
    k = key.lower().replace("-", "_")
    if k in KEY_FACTS:
        return KEY_FACTS[k]
    tokens = k.split("_")
    for i in range(1, len(tokens)):
        suffix = "_".join(tokens[i:])
        if suffix in _SUFFIXES:
            return None if _OTHER_PHASE & set(tokens[:i]) else KEY_FACTS[suffix]
    return None


def _precision_switch(key: str, value: Any) -> str | None:
    """``fp16_run: true`` -> "fp16" (module docstring, step 3); None for anything else."""
    if value is not True:
        return None
    tokens = key.lower().replace("-", "_").split("_")
    if _OTHER_PHASE & set(tokens) or "eval" in key.lower():
        return None
    found = [t for t in _PRECISION_TOKENS if t in tokens]
    return found[0] if len(found) == 1 else None


def extract(tree: Any, facts: ConfigFacts, file: str | None) -> None:
    """Fill ``facts`` (first match wins) from any key of the table found in ``tree``."""
    for path, key, value in walk(tree):
        k = key.lower()
        pair = _pair(value) if k in ("betas", "adam_betas") else None
        if k == "patience" and "early" in path.lower():
            _set(facts, "early_stop_patience", value, path, file)
        elif k == "min_delta" and "early" in path.lower():
            _set(facts, "early_stop_min_delta", value, path, file)
        elif pair is not None:
            _set(facts, "beta1", pair[0], path + "[0]", file)
            _set(facts, "beta2", pair[1], path + "[1]", file)
        elif k in _PRECISION_KEYS:
            _set(facts, "precision", precision_of(k, value), path, file)
        elif (name := resolve(k)) is not None:
            if name in ("schedule", "optimizer"):
                value = _name_of(value)
            value = _single(value)
            if name == "max_steps" and isinstance(value, (int, float)) and value <= 0:
                continue  # HF's -1 = "use epochs"
            _set(facts, name, value, path, file)
        elif (precision := _precision_switch(k, value)) is not None:
            _set(facts, "precision", precision, path, file)


def _pair(value: Any) -> tuple[Any, Any] | None:
    """Adam's betas as a two-item list. A ``"(0.9, 0.98)"`` string (fairseq) is not read: a fix
    could not name one of its items as a key of its own."""
    if isinstance(value, (list, tuple)) and len(value) == 2:
        return value[0], value[1]
    return None


def _single(value: Any) -> Any:
    """A one-element list of a number is that number (fairseq's ``lr: [0.00003]``)."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (int, float, str)):
        return value[0]
    return value


def _set(facts: ConfigFacts, name: str, value: Any, key: str, file: str | None) -> None:
    if value is None or name in facts or isinstance(value, (dict, list)):
        return
    if isinstance(value, str):
        num = _number(value)
        if num is not None and name not in ("schedule", "optimizer", "precision", "model"):
            value = num
        elif value.strip().lower() == "auto":
            return  # HF/DeepSpeed fill "auto" at run time
    facts.set(name, value, key=key, file=file)


def _number(s: str) -> float | int | None:
    try:
        f = float(s)
    except ValueError:
        return None
    return int(f) if f.is_integer() and "." not in s and "e" not in s.lower() else f


def _name_of(value: Any) -> Any:
    """A scheduler/optimizer name from a string or a {name|type|_target_: ...} block."""
    if isinstance(value, dict):
        for k in ("name", "type", "_name", "_target_", "class_path"):
            if isinstance(value.get(k), str):
                return value[k].rsplit(".", 1)[-1]
        return None
    return value


def precision_of(key: str, value: Any) -> str | None:
    """Normalise fp16/bf16 flags and precision strings to ``fp16``/``bf16``/``fp32``."""
    if isinstance(value, dict):
        value = value.get("enabled", value.get("dtype"))
    if key in ("fp16", "bf16"):
        if value is True or (isinstance(value, str) and value.lower() == "true"):
            return key
        return None
    s = str(value).lower()
    if "bf16" in s or "bfloat16" in s:
        return "bf16"
    if "16" in s or s in ("fp16", "float16", "half", "true"):
        return "fp16"
    if s in ("32", "fp32", "float32", "no", "false", "32-true"):
        return "fp32"
    return None
