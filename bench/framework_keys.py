"""The config vocabulary of each framework the real logs come from, and which framework wrote which
log — the bench's yardstick for "a fix in the log's own key names".

Written from each framework's own documentation, independently of ``stabletrain.detectors.fixes``
(the bench must not grade stabletrain with stabletrain's table): HF ``TrainingArguments`` fields
(plus ``EarlyStoppingCallback``'s ``early_stopping_patience``), DeepSpeed's config JSON, Megatron-LM
``arguments.py`` flags (compared without their leading dashes), Lightning ``Trainer`` arguments,
mmengine's ``optim_wrapper``/``AmpOptimWrapper``, xtuner's config globals, ms-swift's arguments
(HF's plus ``torch_dtype``). Keys are full dotted paths; a fix key matches only exactly.

Which framework wrote a log is read from its ``SOURCE.txt`` (format line) in shared/real-logs.
A log whose settings live in code (build-nanogpt, Coqui's trainer) has no vocabulary: only keys
spelled in its own files count there.
"""

from __future__ import annotations

HF = frozenset(
    {
        "learning_rate",
        "max_grad_norm",
        "warmup_steps",
        "warmup_ratio",
        "weight_decay",
        "fp16",
        "bf16",
        "lr_scheduler_type",
        "lr_scheduler_kwargs",
        "adam_beta1",
        "adam_beta2",
        "adam_epsilon",
        "optim",
        "per_device_train_batch_size",
        "gradient_accumulation_steps",
        "num_train_epochs",
        "max_steps",
        "logging_steps",
        "logging_nan_inf_filter",
        "eval_steps",
        "load_best_model_at_end",
        "early_stopping_patience",
    }
)
DEEPSPEED = frozenset(
    {
        "gradient_clipping",
        "fp16.enabled",
        "bf16.enabled",
        "fp16.loss_scale",
        "fp16.initial_scale_power",
        "fp16.loss_scale_window",
        "fp16.hysteresis",
        "fp16.min_loss_scale",
        "optimizer.params.lr",
        "optimizer.params.weight_decay",
        "optimizer.params.betas",
        "optimizer.params.eps",
        "scheduler.params.warmup_num_steps",
        "scheduler.params.warmup_max_lr",
        "scheduler.params.warmup_min_lr",
        "scheduler.params.total_num_steps",
        "train_micro_batch_size_per_gpu",
        "train_batch_size",
        "gradient_accumulation_steps",
    }
)
MEGATRON = frozenset(
    {
        "lr",
        "min-lr",
        "clip-grad",
        "weight-decay",
        "lr-warmup-iters",
        "lr-warmup-fraction",
        "lr-warmup-samples",
        "lr-decay-style",
        "lr-decay-iters",
        "adam-beta1",
        "adam-beta2",
        "adam-eps",
        "fp16",
        "bf16",
        "loss-scale",
        "initial-loss-scale",
        "min-loss-scale",
        "loss-scale-window",
        "hysteresis",
        "micro-batch-size",
        "global-batch-size",
        "train-iters",
    }
)
LIGHTNING = frozenset(
    {
        "gradient_clip_val",
        "gradient_clip_algorithm",
        "precision",
        "accumulate_grad_batches",
        "max_epochs",
        "max_steps",
        "val_check_interval",
        "detect_anomaly",
    }
)
MMENGINE = frozenset(
    {
        "optim_wrapper.type",
        "optim_wrapper.dtype",
        "optim_wrapper.loss_scale",
        "optim_wrapper.loss_scale.init_scale",
        "optim_wrapper.loss_scale.growth_interval",
        "optim_wrapper.loss_scale.growth_factor",
        "optim_wrapper.loss_scale.backoff_factor",
        "optim_wrapper.clip_grad.max_norm",
        "optim_wrapper.optimizer.lr",
        "optim_wrapper.optimizer.weight_decay",
        "optim_wrapper.optimizer.betas",
        "optim_wrapper.optimizer.eps",
        "optim_wrapper.accumulative_counts",
        "train_cfg.max_epochs",
        "train_cfg.max_iters",
        "param_scheduler",
    }
)
XTUNER = frozenset(
    {"lr", "max_norm", "warmup_ratio", "weight_decay", "betas", "accumulative_counts", "batch_size"}
)
MS_SWIFT = HF | {"torch_dtype"}

VOCABULARY: dict[str, frozenset[str]] = {
    "hf": HF,
    "deepspeed": DEEPSPEED,
    "megatron": MEGATRON,
    "lightning": LIGHTNING,
    "mmengine": MMENGINE,
    "xtuner": XTUNER,
    "ms-swift": MS_SWIFT,
}

_MEGATRON_DS = ("megatron", "deepspeed")  # Megatron-DeepSpeed: CLI flags plus a ds_config
#: case name (bench/ground_truth.yaml) -> the frameworks whose settings its run had
CASE_FRAMEWORKS: dict[str, tuple[str, ...]] = {
    "bigscience_tr1_13B": _MEGATRON_DS,
    "bigscience_tr8_104B_wide": _MEGATRON_DS,
    "bigscience_tr8b_104B": _MEGATRON_DS,
    "issue_megatron_ds_396_bf16_gradnorm_nan": _MEGATRON_DS,
    "hf_gemma3_1b_clean_eval": ("hf",),
    "hf_grpo_zero_loss": ("hf",),
    "hf_mistral_translator_clean": ("hf",),
    "hf_quality_lrqa_plateau": ("hf",),
    "hf_serial_lain_tfevents": ("hf",),
    "issue_gemma_pytorch_24_fp16_nan": ("hf",),
    "issue_glm4_174_gradnorm_rise_nan": ("hf",),
    "issue_timemoe_71_intermittent_nan": ("hf",),
    "issue_chinese_llama_alpaca_534_lossscale": ("deepspeed", "hf"),  # HF Trainer + DeepSpeed
    "issue_ms_swift_2436_nan_jsonl": ("ms-swift",),
    "issue_xtuner_187_mmengine_nan": ("mmengine", "xtuner"),
    "trainproof_fish_lightning_tfevents": ("lightning",),
    "trainproof_gallery_bad_labels": ("hf",),
    "trainproof_gallery_fp16_nan": ("hf",),
    "trainproof_gallery_healthy": ("hf",),
    "trainproof_gallery_lr_hot": ("hf",),
    "trainproof_gallery_lr_zero": ("hf",),
    "trainproof_gallery_overfit": ("hf",),
    "nanogpt_s21_gpt2_stdout": (),  # build-nanogpt: hyper-parameters are code
    "trainproof_xtts_coqui_diverged": (),  # Coqui trainer: no fix expected (slow steps)
}

ALL_KEYS = frozenset().union(*VOCABULARY.values())


def case_vocabulary(case_name: str) -> frozenset[str]:
    """Every key of the frameworks that wrote this log (empty when unknown)."""
    return frozenset().union(*(VOCABULARY[f] for f in CASE_FRAMEWORKS.get(case_name, ())))


def normalise(key: str) -> str:
    """A fix key as the vocabularies spell it: no backticks, no leading dashes of a CLI flag."""
    return key.strip("`").lstrip("-")
