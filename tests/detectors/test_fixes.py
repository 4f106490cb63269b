"""fixes: changes in the user's own keys, else in the vocabulary of the framework the run came from.

The strongest check is a round trip: a fix applied to a config of that framework must be read
back by stabletrain's config reader as the value the fix meant (DeepSpeed stores scales as powers
of two; HF and DeepSpeed switch precision with two flags).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stabletrain.configs.read import read_config
from stabletrain.detectors.fixes import (
    changes_for,
    make_fix,
    nice,
    precision_changes,
    setting,
    user_key,
    vocabulary,
)
from stabletrain.records import ConfigFacts

SPIKE_FIX = dict(lr=1e-4, max_grad_norm=0.5, warmup_steps=500, weight_decay=0.01)


def _facts(fmt: str | None, **items: tuple[object, str]) -> ConfigFacts:
    f = ConfigFacts(source="cfg", format=fmt)
    for name, (value, key) in items.items():
        f.set(name, value, key=key)
    return f


def _nest(changes: dict[str, Any]) -> dict[str, Any]:
    """Apply dotted keys to an empty config tree, as a user editing their file would."""
    tree: dict[str, Any] = {}
    for key, value in changes.items():
        node = tree
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return tree


def test_hf_logs_speak_training_arguments() -> None:
    f = _facts("hf-trainer-state")
    assert vocabulary(f) == "hf"
    keyed, missing = changes_for(f, **SPIKE_FIX, precision="bf16")
    assert keyed == {
        "learning_rate": 1e-4,
        "max_grad_norm": 0.5,
        "warmup_steps": 500,
        "weight_decay": 0.01,
        "fp16": False,
        "bf16": True,
    }
    assert missing == []
    # TrainingArguments has no GradScaler settings: named in the description, never invented
    fix = make_fix(f, "Conservative scaler", loss_scale_init=1024.0)
    assert fix.changes == {} and "loss_scale_init 1024.0: not a HF TrainingArguments" in (
        fix.description
    )
    assert setting(f, "max_grad_norm") == (1.0, "HF TrainingArguments")  # HF clips by default


def test_hf_fix_round_trips_through_a_training_args_file(tmp_path: Path) -> None:
    keyed, _ = changes_for(_facts("hf-console"), **SPIKE_FIX, precision="bf16")
    args = {"per_device_train_batch_size": 8, "lr_scheduler_type": "linear", **keyed}
    path = tmp_path / "training_args.json"
    path.write_text(json.dumps(args))
    back = read_config(path)
    assert back.format == "hf-training-args"
    assert {n: back.get(n) for n in ("lr", "max_grad_norm", "warmup_steps", "precision")} == {
        "lr": 1e-4,
        "max_grad_norm": 0.5,
        "warmup_steps": 500,
        "precision": "bf16",
    }


def test_deepspeed_precision_switch_is_two_flags_not_fp16_enabled_bf16() -> None:
    # the bug this replaces: {"fp16.enabled": "bf16"}
    ds = _facts("deepspeed", precision=("fp16", "fp16.enabled"))
    fix = make_fix(ds, "Train in bf16", precision="bf16")
    assert fix.changes == {"fp16.enabled": False, "bf16.enabled": True}
    assert precision_changes(ds, "fp32") == {"fp16.enabled": False}
    # a DeepSpeed log without its config: the same keys from the vocabulary
    assert precision_changes(_facts("deepspeed"), "bf16") == {
        "fp16.enabled": False,
        "bf16.enabled": True,
    }


def test_deepspeed_fix_round_trips_through_a_ds_config(tmp_path: Path) -> None:
    f = _facts("deepspeed", precision=("fp16", "fp16.enabled"))
    keyed, missing = changes_for(
        f, max_grad_norm=1.0, loss_scale_init=1024.0, loss_scale_growth_interval=1000
    )
    assert keyed == {
        "gradient_clipping": 1.0,
        "fp16.initial_scale_power": 10,  # a power of two, not 1024
        "fp16.loss_scale_window": 1000,
    }
    assert missing == []
    cfg = _nest({"train_micro_batch_size_per_gpu": 4, "fp16.enabled": True, **keyed})
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(cfg))
    back = read_config(path)
    assert back.format == "deepspeed"
    assert back.get("max_grad_norm") == 1.0 and back.get("loss_scale_init") == 1024.0
    assert back.get("loss_scale_growth_interval") == 1000
    switched = _nest({"fp16.enabled": True, "train_micro_batch_size_per_gpu": 4})
    for key, value in precision_changes(f, "bf16").items():
        block, flag = key.split(".")
        switched.setdefault(block, {})[flag] = value
    path.write_text(json.dumps(switched))
    assert read_config(path).get("precision") == "bf16"


def test_megatron_logs_speak_its_command_line_flags() -> None:
    f = _facts("megatron")
    keyed, missing = changes_for(
        f,
        **SPIKE_FIX,
        precision="bf16",
        loss_scale_init=1024.0,
        loss_scale_growth_interval=1000,
        loss_scale_growth_factor=1.5,
    )
    assert keyed == {
        "--lr": 1e-4,
        "--clip-grad": 0.5,
        "--lr-warmup-iters": 500,
        "--weight-decay": 0.01,
        "--fp16": False,
        "--bf16": True,
        "--initial-loss-scale": 1024.0,  # Megatron takes the scale itself
        "--loss-scale-window": 1000,
    }
    assert missing == ["loss_scale_growth_factor 1.5"]  # Megatron's scaler always doubles
    assert setting(f, "max_grad_norm") == (1.0, "Megatron-LM")  # --clip-grad defaults to 1.0


def test_lightning_trainer_arguments_and_hparams_keys() -> None:
    f = _facts("lightning")
    keyed, missing = changes_for(f, max_grad_norm=1.0, precision="bf16", lr=1e-4)
    assert keyed == {"gradient_clip_val": 1.0, "precision": "bf16-mixed"}
    assert missing == ["lr 0.0001"]  # the LR lives in the LightningModule, not the Trainer
    assert setting(f, "max_grad_norm") == (0.0, "Lightning Trainer")  # no clipping by default
    # a Lightning hparams.yaml that spells its own keys: those win, values in Lightning's style
    own = _facts(
        "lightning",
        lr=(3e-4, "model.optimizer.lr"),
        precision=("fp16", "trainer.precision"),
    )
    keyed, _ = changes_for(own, lr=1e-4, precision="bf16")
    assert keyed == {"model.optimizer.lr": 1e-4, "trainer.precision": "bf16-mixed"}


def test_mmengine_optim_wrapper_keys() -> None:
    f = _facts("mmengine")
    keyed, missing = changes_for(f, max_grad_norm=1.0, lr=1e-4, precision="bf16", warmup_steps=500)
    assert keyed == {
        "optim_wrapper.clip_grad.max_norm": 1.0,
        "optim_wrapper.optimizer.lr": 1e-4,
        "optim_wrapper.dtype": "bfloat16",
    }
    assert missing == ["warmup_steps 500"]  # a param_scheduler entry, not one key
    assert vocabulary(_facts("xtuner")) == "mmengine"


def test_nanogpt_and_ms_swift_keys() -> None:
    keyed, _ = changes_for(_facts("nanogpt"), **SPIKE_FIX, precision="bf16")
    assert keyed == {
        "learning_rate": 1e-4,
        "grad_clip": 0.5,
        "warmup_iters": 500,
        "weight_decay": 0.01,
        "dtype": "bfloat16",
    }
    keyed, _ = changes_for(_facts("ms-swift"), max_grad_norm=0.5, precision="bf16")
    assert keyed == {"max_grad_norm": 0.5, "torch_dtype": "bfloat16"}


def test_generic_logs_get_stabletrain_keys_which_its_trainer_reads(tmp_path: Path) -> None:
    f = _facts("generic-log")
    keyed, _ = changes_for(f, **SPIKE_FIX, precision="bf16")
    assert keyed == {
        "optim.lr": 1e-4,
        "train.max_grad_norm": 0.5,
        "schedule.warmup_steps": 500,
        "optim.weight_decay": 0.01,
        "train.precision": "bf16",
    }
    assert setting(f, "max_grad_norm") == (None, None)  # a generic log's defaults are unknown
    cfg = _nest({"optim.name": "adamw", "schedule.name": "cosine", "amp.init_scale": 1.0, **keyed})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    back = read_config(path)
    assert back.format == "stabletrain"
    assert (back.get("lr"), back.get("max_grad_norm"), back.get("precision")) == (1e-4, 0.5, "bf16")


def test_generic_config_keys_are_read_back(tmp_path: Path) -> None:
    f = _facts("yaml", lr=(1e-3, "training.learning_rate"))
    keyed, _ = changes_for(
        f, lr=5e-4, max_grad_norm=1.0, loss_scale_init=1024.0, early_stop_patience=7
    )
    assert keyed == {
        "training.learning_rate": 5e-4,  # the user's own key
        "max_grad_norm": 1.0,
        "init_scale": 1024.0,
        "early_stopping_patience": 7,
    }
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump(_nest(keyed)))
    back = read_config(path)
    assert back.format == "yaml"
    assert [back.get(n) for n in ("lr", "max_grad_norm", "loss_scale_init")] == [5e-4, 1.0, 1024.0]
    assert back.get("early_stop_patience") == 7


def test_unknown_origin_keeps_fact_names() -> None:
    assert make_fix(None, "x", lr=5e-4, precision="bf16").changes == {
        "lr": 5e-4,
        "precision": "bf16",
    }
    assert user_key(ConfigFacts(), "max_grad_norm") == "max_grad_norm"
    assert setting(None, "max_grad_norm") == (None, None)


@pytest.mark.parametrize(
    ("key", "current", "bf16", "fp32"),
    [
        ("fp16", "fp16", {"fp16": False, "bf16": True}, {"fp16": False}),
        ("args.bf16", "bf16", {"args.fp16": False, "args.bf16": True}, {"args.bf16": False}),
        ("trainer.mixed_precision", "fp16", {"trainer.mixed_precision": "bf16"}, None),
        ("model.torch_dtype", "fp16", {"model.torch_dtype": "bfloat16"}, None),
        ("train.precision", "fp16", {"train.precision": "bf16"}, {"train.precision": "fp32"}),
    ],
)
def test_precision_switch_keeps_the_style_of_the_users_key(
    key: str, current: str, bf16: dict[str, Any], fp32: dict[str, Any] | None
) -> None:
    f = _facts("yaml", precision=(current, key))
    assert precision_changes(f, "bf16") == bf16
    if fp32 is not None:
        assert precision_changes(f, "fp32") == fp32
    if key.endswith("mixed_precision"):
        assert precision_changes(f, "fp32") == {key: "no"}  # accelerate's spelling


def test_nice_rounding() -> None:
    assert nice(3.47) == 3.5 and nice(2e-5 * 0.5) == 1e-5 and nice(5e-4 * 0.6) == 3e-4


def test_mmengine_clip_off_removes_clip_grad() -> None:
    # mmengine hands clip_grad's kwargs to torch.nn.utils.clip_grad_norm_: max_norm 0 would scale
    # every gradient to zero, so "clipping off" is clip_grad: None, never max_norm: 0
    for facts in (_facts("mmengine"), None):
        if facts is None:
            facts = _facts("mmengine")
            facts.set("max_grad_norm", 1.0, "optim_wrapper.clip_grad.max_norm")
        keyed, _ = changes_for(facts, max_grad_norm=None)
        assert keyed == {"optim_wrapper.clip_grad": None}
    keyed, _ = changes_for(_facts("hf"), max_grad_norm=None)
    assert keyed == {"max_grad_norm": 0.0}
