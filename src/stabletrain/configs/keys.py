"""Find stability-relevant settings anywhere in a config tree, by key name, keeping the key path.

Seed configs put ``learning_rate`` at the top, ``scheduler_patience`` under ``training:``,
``gradient_clip_value`` under ``trainer:``; Hydra configs nest ``optimizer.lr`` deeper still. The
tree is walked breadth-first, so the shallowest match wins, and each Fact records its dotted path
(``training.scheduler_patience``) so a fix can name the user's own key.

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
    "adam_beta1": "beta1",
    "adam_beta2": "beta2",
    "beta1": "beta1",
    "beta2": "beta2",
    "eps": "eps",
    "adam_epsilon": "eps",
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
    "num_classes": "num_classes",
    "n_classes": "num_classes",
    "num_labels": "num_classes",
    "vocab_size": "vocab_size",
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


def extract(tree: Any, facts: ConfigFacts, file: str | None) -> None:
    """Fill ``facts`` (first match wins) from any key of the table found in ``tree``."""
    for path, key, value in walk(tree):
        k = key.lower()
        if k == "patience" and "early" in path.lower():
            _set(facts, "early_stop_patience", value, path, file)
        elif k == "min_delta" and "early" in path.lower():
            _set(facts, "early_stop_min_delta", value, path, file)
        elif k == "betas" and isinstance(value, (list, tuple)) and len(value) == 2:
            _set(facts, "beta1", value[0], path + "[0]", file)
            _set(facts, "beta2", value[1], path + "[1]", file)
        elif k in _PRECISION_KEYS:
            _set(facts, "precision", precision_of(k, value), path, file)
        elif k in KEY_FACTS:
            name = KEY_FACTS[k]
            if name in ("schedule", "optimizer"):
                value = _name_of(value)
            if name == "max_steps" and isinstance(value, (int, float)) and value <= 0:
                continue  # HF's -1 = "use epochs"
            _set(facts, name, value, path, file)


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
        for k in ("name", "type", "_target_", "class_path"):
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
