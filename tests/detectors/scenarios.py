"""Scripted metric sequences for detector tests: a clean run and the five seed postmortems.

Each builder returns (records, raw, facts) with the numbers the seed documents quote, so a test
can assert the seed's finding with its steps/epochs. Deterministic (seeded ``random.Random``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import Any

from stabletrain.records import ConfigFacts, StepRecord


def facts_of(**items: tuple[object, str]) -> ConfigFacts:
    """``facts_of(lr=(2e-4, "initial_lr"))`` → ConfigFacts with the user's keys."""
    f = ConfigFacts(source="config.yaml", format="yaml")
    for name, (value, key) in items.items():
        f.set(name, value, key=key)
    return f


def clean_run(
    epochs: int = 20, steps: int = 50, seed: int = 0
) -> tuple[list[StepRecord], ConfigFacts]:
    """Smoothly decreasing noisy loss, grad norms ~0.45 under a 1.0 clip, cosine LR with warmup."""
    rng = random.Random(seed)
    total, warm = epochs * steps, int(0.05 * epochs * steps)
    recs: list[StepRecord] = []
    for t in range(total):
        lr = (
            1e-3 * (t + 1) / warm
            if t < warm
            else 1e-3 * 0.5 * (1 + math.cos(math.pi * (t - warm) / (total - warm)))
        )
        loss = 2.0 * math.exp(-t / 300) + 0.1
        recs.append(
            StepRecord(
                step=t,
                epoch=t / steps,
                loss=loss * (1 + 0.03 * rng.gauss(0, 1)),
                grad_norm=0.45 * (1 + 0.1 * rng.gauss(0, 1)),
                clip_coef=1.0,
                lr=lr,
                accuracy=min(0.95, 0.1 + t / total),
                step_time=0.1 * (1 + 0.05 * rng.random()),
            )
        )
        if (t + 1) % steps == 0:
            recs.append(
                StepRecord(
                    step=t,
                    kind="eval",
                    epoch=t / steps,
                    eval_loss=loss * 1.1 + 0.01 * rng.random(),
                    eval_accuracy=min(0.9, t / total),
                )
            )
    facts = facts_of(
        lr=(1e-3, "optim.lr"),
        max_grad_norm=(1.0, "train.max_grad_norm"),
        schedule=("cosine", "schedule.name"),
        warmup_ratio=(0.05, "schedule.warmup_ratio"),
        optimizer=("adamw", "optim.name"),
        batch_size=(64, "data.batch_size"),
    )
    return recs, facts


def seed000() -> tuple[list[StepRecord], ConfigFacts]:
    """CNN, batch 1024, AdamW 2e-4, warmup 0.05, max_grad_norm=4: grad norms hovering ~3.5."""
    rng = random.Random(0)
    recs = [
        StepRecord(
            step=t,
            epoch=t / 100,
            loss=1.5 * math.exp(-t / 400) + 0.3 + 0.02 * rng.random(),
            grad_norm=3.5 * (1 + 0.05 * rng.gauss(0, 1)),
            lr=2e-4,
            clip_coef=1.0,
        )
        for t in range(1000)
    ]
    facts = facts_of(
        batch_size=(1024, "batch_size_per_gpu"),
        grad_accum=(1, "grad_accum"),
        lr=(2e-4, "initial_lr"),
        warmup_ratio=(0.05, "warmup_ratio"),
        max_grad_norm=(4.0, "max_grad_norm"),
        beta2=(0.999, "adam_beta2"),
        optimizer=("adamw", "optimizer"),
        weight_decay=(0.05, "weight_decay"),
        schedule=("cosine", "lr_scheduler_type"),
    )
    return recs, facts


SEED001_LOSS = [
    0.6,
    0.4,
    0.3,
    0.22,
    0.16,
    0.12,
    0.09,
    0.07,
    0.06,
    0.055,
    0.05,
    0.052,
    0.054,
    0.5,
    0.52,
    0.5,
    0.49,
    0.5,
    0.51,
    0.5,
    0.49,
    0.5,
    0.5,
    0.49,
    0.48,
    0.47,
    0.46,
]


def seed001() -> tuple[list[StepRecord], ConfigFacts]:
    """Per-epoch logs: best ~0.05 at epoch 10, spike at 13, ReduceLROnPlateau cut at epoch 24."""
    recs: list[StepRecord] = []
    for e, loss in enumerate(SEED001_LOSS):
        lr = 5e-4 if e < 24 else 3.5e-4
        recs.append(StepRecord(step=(e + 1) * 100, epoch=e, loss=loss, lr=lr, grad_norm=0.3))
        recs.append(StepRecord(step=(e + 1) * 100, kind="eval", epoch=e, eval_loss=loss * 1.1))
    facts = facts_of(
        plateau_patience=(10, "training.scheduler_patience"),
        plateau_factor=(0.7, "training.scheduler_factor"),
        early_stop_patience=(10, "training.early_stopping_patience"),
        max_grad_norm=(1.0, "training.gradient_clip_value"),
        lr=(5e-4, "training.learning_rate"),
        schedule=("ReduceLROnPlateau", "training.scheduler"),
    )
    return recs, facts


def seed002() -> tuple[list[StepRecord], ConfigFacts]:
    """DeepSpeed CIFAR-10, fp16, no clipping: loss 2.30 → 17-20, accuracy ~10 %, grad norm inf."""
    recs: list[StepRecord] = []
    for e in range(26):
        loss = 2.30 if e == 0 else 17.0 + (e % 4) * 0.9
        recs.append(
            StepRecord(
                step=e * 1563,
                epoch=e,
                loss=loss,
                accuracy=10.07 if e else 10.0,
                grad_norm=0.45 if e == 0 else math.inf,
                lr=5.868247e-4,
            )
        )
    facts = ConfigFacts(source="ds_config.json", format="deepspeed")
    facts.set("precision", "fp16", key="fp16.enabled")
    facts.set("lr", 1e-3, key="optimizer.params.lr")
    facts.set("optimizer", "Adam", key="optimizer.type")
    facts.set("batch_size", 32, key="train_micro_batch_size_per_gpu")
    facts.set("num_classes", 10, key="data.name")
    return recs, facts


SEED003_EVAL = [0.8294, 0.5869, 0.6093, 0.6127, 0.6011, 0.5884]
#: per-epoch (low, high) of the grad norm: "epoch 0 mostly < 2, 1-2 reaching 5-7, 3-4 12-16, 5-6 12-18"
SEED003_NORMS = [
    (0.8, 2.0),
    (2.5, 5.5),
    (3.0, 7.0),
    (5.0, 12.5),
    (6.0, 16.0),
    (6.0, 15.0),
    (6.5, 18.0),
]


def seed003() -> tuple[list[StepRecord], ConfigFacts]:
    """LR 2e-5 constant, clip 2.0 firing on most batches, norms growing, eval loss fluctuating."""
    rng = random.Random(3)
    recs: list[StepRecord] = []
    step = 0
    for e, (lo, hi) in enumerate(SEED003_NORMS):
        for _ in range(60):
            g = lo + (hi - lo) * rng.random()
            recs.append(
                StepRecord(
                    step=step,
                    epoch=e + _ / 60,
                    loss=0.7 - 0.01 * e + 0.05 * rng.random(),
                    grad_norm=g,
                    clip_coef=min(1.0, 2.0 / g),
                    lr=2e-5,
                )
            )
            step += 1
        if e < len(SEED003_EVAL):
            recs.append(StepRecord(step=step - 1, kind="eval", epoch=e, eval_loss=SEED003_EVAL[e]))
    facts = facts_of(
        lr=(2e-5, "learning_rate"),
        max_grad_norm=(2.0, "grad_clip"),
        plateau_patience=(5, "scheduler_patience"),
        schedule=("plateau", "scheduler"),
    )
    return recs, facts


def seed004() -> tuple[list[StepRecord], list[StepRecord], ConfigFacts]:
    """4 processes print each epoch summary; GradScaler(init_scale=2**16, growth 2.0 every 100)."""
    clean = [
        StepRecord(step=(e + 1) * 1000, epoch=e, loss=12.06 - 0.001 * e, grad_norm=math.inf)
        for e in range(6)
    ]
    raw = [
        StepRecord(step=r.step, epoch=r.epoch, loss=r.loss, grad_norm=r.grad_norm, rank=k)
        for r in clean
        for k in range(4)
    ]
    facts = ConfigFacts(source="src/core/main.py", format="python")
    facts.set("precision", "fp16", key="mixed_precision")
    facts.set("loss_scale_init", 2.0**16, key="GradScaler.init_scale")
    facts.set("loss_scale_growth_factor", 2.0, key="GradScaler.growth_factor")
    facts.set("loss_scale_backoff", 0.5, key="GradScaler.backoff_factor")
    facts.set("loss_scale_growth_interval", 100, key="GradScaler.growth_interval")
    return clean, raw, facts


def assert_bulk_and_state_agree(
    make: Callable[[], Any], records: list[StepRecord], facts: ConfigFacts | None = None
) -> None:
    """A detector fed ``records`` in bulk (``feed``) holds the same state as one updated record by
    record, and one restored from that state finishes with the same findings."""
    from stabletrain.detectors.base import feed

    one, bulk = make(), make()
    for r in records:
        one.update(r)
    feed(bulk, records)
    assert bulk.state_dict() == one.state_dict()
    again = make()
    again.load_state_dict(one.state_dict())
    extra = () if facts is None else (facts,)
    assert [f.to_json() for f in again.finish(*extra)] == [f.to_json() for f in one.finish(*extra)]
