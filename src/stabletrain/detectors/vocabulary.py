"""Each framework's names for the settings a fix changes, and its defaults.

The tables behind :mod:`stabletrain.detectors.fixes`: for each vocabulary (the framework that
wrote a config or log: HF ``TrainingArguments``, DeepSpeed ``ds_config``, Megatron-LM flags,
Lightning ``Trainer``, mmengine/xtuner, nanoGPT, ms-swift, stabletrain, a generic YAML/JSON
config, or the normalised fact names), the key of each normalised fact, the keys and values of a
precision switch, the settings a framework applies by default (HF and Megatron clip at 1.0), and
the label a fix uses to say a framework has no such setting. Checked against each framework's
documentation (TrainingArguments, DeepSpeed config JSON, Megatron-LM ``arguments.py``, Lightning
``Trainer``, mmengine ``AmpOptimWrapper``, xtuner configs, nanoGPT ``train.py``).
"""

from __future__ import annotations

from typing import Any, Literal

from stabletrain.records import ConfigFacts

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

HF = {
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
KEYS: dict[str, dict[str, str]] = {
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
    "hf": HF,
    "ms-swift": HF,
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
PRECISION: dict[str, dict[Precision, dict[str, Any]]] = {
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
DEFAULTS: dict[str, dict[str, float]] = {
    "hf": {"max_grad_norm": 1.0},
    "ms-swift": {"max_grad_norm": 1.0},
    "megatron": {"max_grad_norm": 1.0},
    "nanogpt": {"max_grad_norm": 1.0},
    "stabletrain": {"max_grad_norm": 1.0},
    "deepspeed": {"max_grad_norm": 0.0},
    "lightning": {"max_grad_norm": 0.0},
    "mmengine": {"max_grad_norm": 0.0},
}

#: the value that turns clipping off, per vocabulary, where it is not 0: the reference trainer's
#: ``train.max_grad_norm`` must be > 0 or null. HF (``max_grad_norm > 0``), DeepSpeed
#: (``gradient_clipping > 0``), Megatron (``--clip-grad > 0``), Lightning (a falsy
#: ``gradient_clip_val``) and nanoGPT (``grad_clip != 0.0``) clip only above 0, so 0 is their "off"
NO_CLIP: dict[str, Any] = {"stabletrain": None}

#: formats that name no framework, so no framework default applies
NO_DEFAULTS = frozenset({None, "generic-log", "yaml", "json"})

#: ConfigFacts.format (what a config or log reader found) -> vocabulary
FORMATS: dict[str, Vocabulary] = {
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

LABELS: dict[str, str] = {
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
    return FORMATS.get(fmt_name, "names")
