"""DeepSpeed ``ds_config.json``: batch, clipping, fp16 loss-scale settings, optimizer, scheduler.

DeepSpeed's fp16 block stores the initial scale as a power of two (``initial_scale_power: 16`` =
65536, the "GradScaler starting at 2**16" of the seeds) and ``loss_scale: 0`` meaning dynamic.
``"auto"`` values (filled by the HF integration at run time) are skipped. A ``scheduler`` block is
also described as facts (``ds_scheduler*``, see :func:`_scheduler`): DeepSpeed's scheduler sets
the LR at every step, so it replaces the HF Trainer's schedule and the optimizer's ``lr``. DeepSpeed's optimizer
``"type": "Adam"`` decouples its weight decay unless ``"adam_w_mode": false`` (DeepSpeed's
default, also GPT-NeoX's, whose configs are ds_configs): it is read as AdamW, so its decay is
judged as AdamW's, not as an L2 term.
"""

from __future__ import annotations

import math
from typing import Any

from stabletrain.configs.keys import extract
from stabletrain.records import ConfigFacts

_MARKERS = ("train_micro_batch_size_per_gpu", "zero_optimization", "gradient_clipping")


def is_deepspeed(obj: Any) -> bool:
    if not isinstance(obj, dict):
        return False
    if any(k in obj for k in _MARKERS):
        return True
    fp16 = obj.get("fp16")
    return isinstance(fp16, dict) and "initial_scale_power" in fp16


def read(obj: dict[str, Any], facts: ConfigFacts, file: str) -> None:
    fp16: dict[str, Any] = obj["fp16"] if isinstance(obj.get("fp16"), dict) else {}
    bf16: dict[str, Any] = obj["bf16"] if isinstance(obj.get("bf16"), dict) else {}
    if _enabled(fp16):
        facts.set("precision", "fp16", key="fp16.enabled", file=file)
        power = fp16.get("initial_scale_power")
        if isinstance(power, (int, float)) and not isinstance(power, bool):
            scale = 2.0**power if power < 1024 else math.inf  # 2.0**1024 overflows: inf is data
            facts.set("loss_scale_init", scale, key="fp16.initial_scale_power", file=file)
        static = fp16.get("loss_scale")
        if isinstance(static, (int, float)) and static > 0:
            facts.set("loss_scale_init", float(static), key="fp16.loss_scale", file=file)
    elif _enabled(bf16):
        facts.set("precision", "bf16", key="bf16.enabled", file=file)
    elif (fp16 or bf16) and not any(_auto(b.get("enabled")) for b in (fp16, bf16)):
        # "auto" is filled from the HF TrainingArguments at run time: not fp32, unknown here
        facts.set("precision", "fp32", key="fp16.enabled", file=file)
    sched = obj.get("scheduler")
    if isinstance(sched, dict):
        _scheduler(sched, facts, file)
    if isinstance(sched, dict) and isinstance(sched.get("params"), dict):
        p = sched["params"]
        if isinstance(p.get("warmup_max_lr"), (int, float)):
            facts.set("lr", p["warmup_max_lr"], key="scheduler.params.warmup_max_lr", file=file)
        if isinstance(p.get("warmup_min_lr"), (int, float)):
            facts.set("min_lr", p["warmup_min_lr"], key="scheduler.params.warmup_min_lr", file=file)
    # explicit optimizer lr wins over the scheduler's peak: search the optimizer block first
    opt = obj.get("optimizer")
    if isinstance(opt, dict):
        tmp = ConfigFacts()
        extract({"optimizer": opt}, tmp, file)
        for name, fact in tmp.facts.items():
            facts.facts[name] = fact
        if _decoupled_adam(opt):
            facts.set("optimizer", "AdamW", key="optimizer.type", file=file)
    extract(obj, facts, file)


#: DeepSpeed's warm-up schedulers and the peak they warm up to when ``warmup_max_lr`` is not
#: given (deepspeed/runtime/lr_schedules.py: WarmupLR(warmup_max_lr=0.001), WarmupDecayLR too)
_WARMUP_SCHEDULERS = ("WarmupLR", "WarmupDecayLR")
WARMUP_MAX_LR_DEFAULT = 1e-3


def _scheduler(sched: dict[str, Any], facts: ConfigFacts, file: str) -> None:
    """What a ``scheduler`` block does to the LR, as facts the lint rules read:
    ``ds_scheduler`` (its type), ``ds_scheduler_auto`` (a param is ``"auto"``: the file is filled
    by the HF Trainer / accelerate, whose own ``lr_scheduler_type`` this block then replaces) and,
    for a warm-up scheduler without ``warmup_max_lr``, ``ds_scheduler_default_peak`` (the 1e-3
    it warms up to whatever the optimizer's ``lr`` says)."""
    kind = sched.get("type")
    if not isinstance(kind, str):
        return
    facts.set("ds_scheduler", kind, key="scheduler.type", file=file)
    params = sched.get("params")
    params = params if isinstance(params, dict) else {}
    if any(_auto(v) for v in params.values()):
        facts.set("ds_scheduler_auto", True, key="scheduler.params", file=file)
    if kind in _WARMUP_SCHEDULERS and "warmup_max_lr" not in params:
        facts.set(
            "ds_scheduler_default_peak",
            WARMUP_MAX_LR_DEFAULT,
            key="scheduler.params.warmup_max_lr",
            file=file,
        )


def _decoupled_adam(opt: dict[str, Any]) -> bool:
    """DeepSpeed's "Adam" with ``adam_w_mode`` left at its default (true): AdamW's update."""
    kind = opt.get("type")
    params = opt.get("params")
    mode = (params if isinstance(params, dict) else opt).get("adam_w_mode", True)
    return isinstance(kind, str) and kind.strip().lower() in ("adam", "fusedadam") and mode is True


def _auto(v: Any) -> bool:
    return isinstance(v, str) and v.strip().lower() == "auto"


def _enabled(block: dict[str, Any]) -> bool:
    v = block.get("enabled")
    return v is True or (isinstance(v, str) and v.lower() == "true")
