"""Config readers: stabletrain YAML, seed-style generic YAML, HF TrainingArguments, DeepSpeed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.configs.read import read_config
from stabletrain.errors import ConfigError


def test_stabletrain_yaml(tmp_path: Path) -> None:
    f = tmp_path / "run.yaml"
    f.write_text(
        "run: {name: x}\ndata: {name: digits, batch_size: 64}\nmodel: {name: cnn}\n"
        "optim: {name: adamw, lr: 0.003, betas: [0.9, 0.95], weight_decay: 0.01}\n"
        "schedule: {name: plateau, plateau_patience: 10, warmup_steps: 0}\n"
        "train: {epochs: 30, precision: fp16, max_grad_norm: null, early_stopping_patience: 10}\n"
        "amp: {init_scale: 65536.0, growth_interval: 2000}\nguard: {max_norm: 5.0}\n"
    )
    facts = read_config(f)
    assert facts.format == "stabletrain"
    assert facts.get("lr") == 0.003 and facts.key("lr") == "optim.lr"
    assert facts.get("beta2") == 0.95 and facts.get("schedule") == "plateau"
    assert facts.get("plateau_patience") == 10 and facts.get("early_stop_patience") == 10
    assert facts.get("max_grad_norm") == 0.0  # null = clipping off
    assert facts.get("precision") == "fp16" and facts.get("loss_scale_init") == 65536.0
    assert facts.get("num_classes") == 10 and facts.get("batch_size") == 64


def test_generic_nested_yaml_seed_style(tmp_path: Path) -> None:
    f = tmp_path / "cfg.yml"
    f.write_text(
        "model: {num_classes: 100}\n"
        "training:\n  learning_rate: 1.0e-3\n  batch_size_per_gpu: 32\n  scheduler: ReduceLROnPlateau\n"
        "  scheduler_patience: 10\n  scheduler_factor: 0.5\n  early_stopping_patience: 10\n"
        "  gradient_clip_value: 4.0\n  mixed_precision: fp16\n"
    )
    facts = read_config(f)
    assert facts.format == "yaml"
    assert (
        facts.get("max_grad_norm") == 4.0
        and facts.key("max_grad_norm") == "training.gradient_clip_value"
    )
    assert facts.get("plateau_patience") == 10 and facts.get("plateau_factor") == 0.5
    assert facts.get("precision") == "fp16" and facts.get("num_classes") == 100
    assert facts.facts["lr"].file == str(f)


def test_hf_training_args_json(tmp_path: Path) -> None:
    args = {
        "output_dir": "out",
        "learning_rate": 5e-05,
        "per_device_train_batch_size": 8,
        "gradient_accumulation_steps": 4,
        "warmup_ratio": 0.0,
        "warmup_steps": 0,
        "lr_scheduler_type": "linear",
        "max_grad_norm": 1.0,
        "fp16": True,
        "bf16": False,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "weight_decay": 0.0,
        "logging_steps": 500,
        "logging_nan_inf_filter": True,
        "num_train_epochs": 3.0,
        "max_steps": -1,
    }
    f = tmp_path / "training_args.json"
    f.write_text(json.dumps(args, indent=2))
    facts = read_config(f)
    assert facts.format == "hf-training-args"
    assert facts.get("batch_size") == 8 and facts.key("batch_size") == "per_device_train_batch_size"
    assert facts.get("precision") == "fp16" and facts.get("schedule") == "linear"
    assert facts.get("logging_nan_inf_filter") is True and "max_steps" not in facts


def test_deepspeed_json_with_comments(tmp_path: Path) -> None:
    f = tmp_path / "ds_config.json"
    f.write_text(
        '{\n  // pasted from the issue\n  "train_micro_batch_size_per_gpu": "auto",\n'
        '  "gradient_accumulation_steps": 8,\n  "gradient_clipping": 1.0,\n'
        '  "fp16": {"enabled": true, "loss_scale": 0, "initial_scale_power": 16,\n'
        '           "loss_scale_window": 100, "hysteresis": 2, "min_loss_scale": 1},\n'
        '  "optimizer": {"type": "AdamW", "params": {"lr": 2e-5, "betas": [0.9, 0.95]}},\n'
        '  "scheduler": {"type": "WarmupLR", "params": {"warmup_num_steps": 100, "warmup_max_lr": 3e-5}},\n}\n'
    )
    facts = read_config(f)
    assert facts.format == "deepspeed"
    assert (
        facts.get("loss_scale_init") == 65536.0
        and facts.key("loss_scale_init") == "fp16.initial_scale_power"
    )
    assert facts.get("loss_scale_growth_interval") == 100 and facts.get("loss_scale_min") == 1
    assert facts.get("lr") == 2e-5 and facts.key("lr") == "optimizer.params.lr"
    assert facts.get("warmup_steps") == 100 and facts.get("max_grad_norm") == 1.0
    assert "batch_size" not in facts  # "auto"
    assert facts.get("optimizer") == "AdamW" and facts.get("schedule") == "WarmupLR"


def test_unreadable_configs(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        read_config(bad)
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        read_config(tmp_path / "missing.yaml")
    lst = tmp_path / "list.yaml"
    lst.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        read_config(lst)


def test_a_reference_trainer_config_is_read_for_the_model_it_builds(tmp_path: Path) -> None:
    """The trainer writes every model section (model.cnn and model.gpt) into a run's
    config.yaml; only the built one's settings are the run's (a GPT at dropout 0.9 beside the
    unused cnn section's 0.0). SGD's momentum is a fact too."""
    from stabletrain.configs.read import read_config
    from stabletrain.train.config import load_config

    cfg = load_config(
        Path(__file__).resolve().parents[2] / "configs" / "tiny-gpt.yaml",
        ["model.gpt.dropout=0.9", "optim.name=sgd", "optim.momentum=0.99"],
    )
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    facts = read_config(path)
    assert facts.get("dropout") == 0.9 and facts.key("dropout") == "model.gpt.dropout"
    assert facts.get("momentum") == 0.99


@pytest.mark.parametrize("train", ["999999999999", "[1, 2]", "'text'"])
def test_a_train_section_that_is_not_a_mapping_is_data_not_a_crash(
    tmp_path: Path, train: str
) -> None:
    """A mangled stabletrain YAML (``train: 999...``) crashed the reader (TypeError: int is not
    iterable; found by bench/fuzz.py --seed 1). The other sections are still read."""
    f = tmp_path / "run.yaml"
    f.write_text(
        "run: {name: x}\ndata: {name: digits, batch_size: 64}\nmodel: {name: cnn}\n"
        f"optim: {{name: adam, lr: 0.0005}}\nschedule: {{name: plateau}}\ntrain: {train}\n"
    )
    facts = read_config(f)
    assert facts.get("lr") == 0.0005 and "max_grad_norm" not in facts
