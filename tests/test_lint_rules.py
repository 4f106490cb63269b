"""lint_facts on the seeds' "before" configs (hand-built ConfigFacts with the seeds' own keys)."""

from __future__ import annotations

from stabletrain.lint_rules import lint_facts
from stabletrain.records import ConfigFacts, Finding


def _facts(fmt: str | None = "yaml", **items: tuple[object, str]) -> ConfigFacts:
    f = ConfigFacts(source="cfg", format=fmt)
    for name, (value, key) in items.items():
        f.set(name, value, key=key)
    return f


def _by_id(findings: list[Finding]) -> dict[str, Finding]:
    assert all(f.source == "config" for f in findings)
    return {f.id: f for f in findings}


SEED000 = dict(
    batch_size=(1024, "batch_size_per_gpu"),
    grad_accum=(1, "grad_accum"),
    lr=(2e-4, "initial_lr"),
    warmup_ratio=(0.05, "warmup_ratio"),
    max_grad_norm=(4.0, "max_grad_norm"),
    beta2=(0.999, "adam_beta2"),
    optimizer=("adamw", "optimizer"),
)


def test_seed000_info_only_warmup_and_beta2_and_lr_not_high() -> None:
    found = _by_id(lint_facts(_facts(**SEED000)))
    assert set(found) == {"warmup-short", "beta2-slow"}
    assert all(f.severity == "info" for f in found.values())
    assert found["warmup-short"].fixes[0].changes == {"warmup_ratio": 0.1}
    assert found["beta2-slow"].fixes[0].changes == {"adam_beta2": 0.99}


def test_seed001_patience_long_and_conflict() -> None:
    found = _by_id(
        lint_facts(
            _facts(
                plateau_patience=(10, "training.scheduler_patience"),
                early_stop_patience=(10, "training.early_stopping_patience"),
                max_grad_norm=(1.0, "training.gradient_clip_value"),
                lr=(5e-4, "training.learning_rate"),
            )
        )
    )
    assert set(found) == {"plateau-patience-long", "patience-conflict"}
    assert found["plateau-patience-long"].severity == "warning"
    assert found["plateau-patience-long"].fixes[0].changes == {"training.scheduler_patience": 5}
    assert found["patience-conflict"].fixes[0].changes == {
        "training.scheduler_patience": 5,
        "training.early_stopping_patience": 7,
    }


def test_patience_near_misses() -> None:
    found = _by_id(
        lint_facts(
            _facts(plateau_patience=(3, "p"), early_stop_patience=(7, "es"), epochs=(50, "e"))
        )
    )
    assert found == {}
    # a long plateau patience is irrelevant under a cosine schedule
    assert (
        lint_facts(
            _facts(
                plateau_patience=(10, "schedule.plateau_patience"),
                schedule=("cosine", "schedule.name"),
                max_grad_norm=(1.0, "c"),
            )
        )
        == []
    )


def test_seed002_deepspeed_no_clipping_and_fp16() -> None:
    f = ConfigFacts(source="ds_config.json", format="deepspeed")
    f.set("precision", "fp16", key="fp16.enabled")
    f.set("lr", 1e-3, key="optimizer.params.lr")
    f.set("optimizer", "Adam", key="optimizer.type")
    f.set("batch_size", 32, key="train_micro_batch_size_per_gpu")
    found = _by_id(lint_facts(f))
    assert found["no-grad-clipping"].fixes[0].changes == {"gradient_clipping": 1.0}
    assert found["fp16-prefer-bf16"].fixes[0].changes == {
        "fp16.enabled": False,
        "bf16.enabled": True,
    }
    assert "lr-high-for-batch" not in found  # Adam 1e-3 at batch 32 is the floor, not high
    # no scheduler block: the schedule is the script's (seed 002's warmup_epochs = 5 lived in its
    # Python script), so the ds_config says nothing about a warm-up
    assert "warmup-short" not in found


def test_seed004_gradscaler_scale_high_and_fast_growth() -> None:
    found = _by_id(
        lint_facts(
            _facts(
                "python",
                precision=("fp16", "mixed_precision"),
                loss_scale_init=(2.0**16, "GradScaler.init_scale"),
                loss_scale_growth_factor=(2.0, "GradScaler.growth_factor"),
                loss_scale_growth_interval=(100, "GradScaler.growth_interval"),
                max_grad_norm=(1.0, "gradient_clip"),
            )
        )
    )
    f = found["loss-scale-init-high"]
    assert f.severity == "warning"
    # growth slows through the interval; the factor stays 2 (a power of two keeps scaling exact,
    # docs/guard.md), where this rule used to advise 1.5
    assert f.fixes[0].changes == {
        "GradScaler.init_scale": 1024.0,
        "GradScaler.growth_interval": 200,
    }


def test_loss_scale_near_misses() -> None:
    # PyTorch's default (2**16, growth every 2000) is fine
    assert "loss-scale-init-high" not in _by_id(
        lint_facts(
            _facts(
                precision=("fp16", "amp"),
                loss_scale_init=(65536.0, "amp.init_scale"),
                loss_scale_growth_interval=(2000, "amp.growth_interval"),
                max_grad_norm=(1.0, "c"),
            )
        )
    )
    # DeepSpeed initial_scale_power 16 with no window set: info, in powers
    f = ConfigFacts(format="deepspeed")
    f.set("precision", "fp16", key="fp16.enabled")
    f.set("loss_scale_init", 2.0**16, key="fp16.initial_scale_power")
    f.set("max_grad_norm", 1.0, key="gradient_clipping")
    [s] = [x for x in lint_facts(f) if x.id == "loss-scale-init-high"]
    assert s.severity == "info" and s.fixes[0].changes == {"fp16.initial_scale_power": 10}


def test_fp16_static_scale_of_one() -> None:
    f = ConfigFacts(format="deepspeed")
    f.set("precision", "fp16", key="fp16.enabled")
    f.set("loss_scale_init", 1.0, key="fp16.loss_scale")
    f.set("max_grad_norm", 1.0, key="gradient_clipping")
    found = _by_id(lint_facts(f))
    assert found["fp16-without-loss-scaling"].fixes[0].changes == {"fp16.loss_scale": 0}
    f.set("loss_scale_init", 128.0, key="fp16.loss_scale")
    assert "fp16-without-loss-scaling" not in _by_id(lint_facts(f))


def test_lr_high_for_batch_bounds() -> None:
    adam = _facts(
        lr=(1e-2, "optim.lr"),
        batch_size=(64, "data.batch_size"),
        optimizer=("adamw", "optim.name"),
        max_grad_norm=(1.0, "c"),
        warmup_steps=(100, "w"),
        seq_len=(256, "data.seq_len"),  # a sequence model: the Adam bound warns (session 6)
    )
    [f] = lint_facts(adam)
    assert f.id == "lr-high-for-batch" and f.severity == "warning"  # 10× the 1e-3 floor
    assert f.fixes[0].changes == {"optim.lr": 1e-3}
    sgd = _facts(
        lr=(0.4, "lr"), batch_size=(256, "bs"), optimizer=("sgd", "opt"), max_grad_norm=(1.0, "c")
    )
    [g] = lint_facts(sgd)
    assert g.severity == "info" and abs(g.evidence["bound"] - 0.1) < 1e-12
    sgd_big = _facts(
        lr=(0.4, "lr"), batch_size=(1024, "bs"), optimizer=("sgd", "opt"), max_grad_norm=(1.0, "c")
    )
    assert lint_facts(sgd_big) == []  # linear scaling: 0.1 × 1024/256 = 0.4


def test_no_clipping_near_miss_and_empty_config() -> None:
    assert lint_facts(ConfigFacts()) == []
    assert "no-grad-clipping" not in _by_id(
        lint_facts(_facts(lr=(1e-4, "lr"), max_grad_norm=(0.5, "clip")))
    )
    [f] = [
        x
        for x in lint_facts(_facts(lr=(1e-4, "lr"), max_grad_norm=(0, "clip")))
        if x.id == "no-grad-clipping"
    ]
    assert f.fixes[0].changes == {"clip": 1.0}


def test_clean_stabletrain_config_is_quiet() -> None:
    f = _facts(
        "stabletrain",
        lr=(1e-3, "optim.lr"),
        optimizer=("adamw", "optim.name"),
        batch_size=(64, "data.batch_size"),
        schedule=("cosine", "schedule.name"),
        warmup_steps=(100, "schedule.warmup_steps"),
        max_grad_norm=(1.0, "train.max_grad_norm"),
        precision=("bf16", "train.precision"),
        beta2=(0.999, "optim.betas[1]"),
        plateau_patience=(10, "schedule.plateau_patience"),
    )
    assert lint_facts(f) == []


def test_non_positive_batch_or_accumulation_is_unknown_not_a_crash() -> None:
    """Fuzz: batch_size -1 took math.sqrt of a negative effective batch (ValueError)."""
    for bad in (-1, 0):
        facts = _facts(lr=(0.1, "lr"), batch_size=(bad, "bs"), grad_accum=(bad, "ga"))
        ids = _by_id(lint_facts(facts))
        assert "lr-high-for-batch" in ids  # judged against the floor bound, as with no batch
