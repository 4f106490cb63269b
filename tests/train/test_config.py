from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.errors import ConfigError
from stabletrain.train.config import guard_config, load_config, parse_config
from stabletrain.train.default_configs import DIGITS_CNN, UNSTABLE_DIGITS

from .helpers import CONFIGS

SEED_CONFIGS = sorted(CONFIGS.glob("seed00*.yaml"))


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.learning_rate=1e-3", "unknown key 'optim.learning_rate'; allowed: name, lr,"),
        ("train.epochs=many", "train.epochs: Input should be a valid integer"),
        ("optim.lr=-1", "optim.lr: Input should be greater than 0"),
        ("train.precision=fp8", "train.precision: Input should be 'fp32', 'bf16' or 'fp16'"),
        ("data.val_fraction=1.5", "data.val_fraction: Input should be less than 1"),
        ("model.cnn.init_std=2", "init_std applies only to init: normal"),
        ("guard.no_such_knob=1", "unknown key 'guard.no_such_knob'; allowed: preset,"),
        ("guard.preset=wild", "unknown guard preset 'wild'"),
        ("optim.betas=[0.9,1.5]", "optim.betas: Value error, each beta"),
        ("model.name=gpt", "does not fit data.name 'digits'"),
    ],
)
def test_validation_errors_name_the_key(override: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(CONFIGS / "digits-cnn.yaml", [override])
    msg = str(e.value)
    assert "digits-cnn.yaml" in msg
    assert expected.replace("Value error, ", "") in msg


def test_bad_override_syntax() -> None:
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(CONFIGS / "digits-cnn.yaml", ["optim.lr"])
    with pytest.raises(ConfigError, match=r"optim\.lr is a value, not a section"):
        load_config(CONFIGS / "digits-cnn.yaml", ["optim.lr.x=1"])


def test_overrides_parse_yaml_values() -> None:
    cfg = load_config(
        CONFIGS / "digits-cnn.yaml",
        ["optim.lr=1e-4", "optim.betas=[0.8, 0.95]", "train.max_grad_norm=null", "run.name=x"],
    )
    assert cfg.optim.lr == 1e-4
    assert cfg.optim.betas == (0.8, 0.95)
    assert cfg.train.max_grad_norm is None
    assert cfg.run.name == "x"


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("run: [unclosed\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid YAML"):
        load_config(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(bad)


@pytest.mark.parametrize("path", SEED_CONFIGS, ids=lambda p: p.stem)
def test_seed_before_configs_load(path: Path) -> None:
    cfg = load_config(path)
    seed_file = f"{path.stem[4:7]}_"
    assert seed_file in path.read_text(), "each seed config names its postmortem file"
    assert guard_config(cfg).enabled is False  # they reproduce the unguarded "before" run


def test_seed_configs_carry_the_postmortem_values() -> None:
    c0, c1, c2, c3, c4 = (load_config(p) for p in SEED_CONFIGS)
    assert (c0.data.batch_size, c0.optim.lr, c0.schedule.warmup_ratio) == (1024, 2e-4, 0.05)
    assert (c0.train.max_grad_norm, c0.optim.betas[1]) == (4.0, 0.999)
    assert (c1.schedule.plateau_patience, c1.schedule.plateau_factor) == (10, 0.7)
    assert (c1.train.early_stopping_patience, c1.train.max_grad_norm, c1.optim.lr) == (
        10,
        1.0,
        5e-4,
    )
    assert (c2.train.precision, c2.train.max_grad_norm, c2.optim.name) == ("fp16", None, "adam")
    assert (c3.optim.lr, c3.train.max_grad_norm, c3.schedule.plateau_patience) == (2e-5, 2.0, 5)
    assert (c4.amp.init_scale, c4.amp.growth_factor, c4.amp.growth_interval) == (2.0**16, 2.0, 100)
    assert c4.train.max_grad_norm == 0.5


@pytest.mark.parametrize(
    ("name", "embedded"), [("digits-cnn", DIGITS_CNN), ("unstable-digits", UNSTABLE_DIGITS)]
)
def test_embedded_configs_match_files(name: str, embedded: dict) -> None:
    file_cfg = load_config(CONFIGS / f"{name}.yaml")
    assert parse_config(embedded) == file_cfg


def test_guard_preset_off_still_clips_at_max_grad_norm() -> None:
    off = guard_config(parse_config({"guard": {"preset": "off"}, "train": {"max_grad_norm": 0.5}}))
    assert (off.enabled, off.clip, off.max_norm) == (False, "norm", 0.5)
    on = guard_config(parse_config({"train": {"max_grad_norm": None}}))
    assert on.enabled and on.max_norm is None
    # YAML 1.1 reads an unquoted `off` as false
    assert guard_config(parse_config({"guard": {"preset": False}})).enabled is False


def test_resolved_config_round_trips() -> None:
    cfg = load_config(CONFIGS / "tiny-gpt.yaml")
    import yaml

    assert parse_config(yaml.safe_load(cfg.to_yaml())) == cfg


def test_guard_preset_adaptive_takes_max_grad_norm_as_its_warmup_clip() -> None:
    from stabletrain.train.config import guard_config, parse_config

    cfg = parse_config({"train": {"max_grad_norm": 2.0}, "guard": {"preset": "adaptive"}})
    g = guard_config(cfg)
    assert (g.clip, g.max_norm, g.warmup_max_norm) == ("zscore", None, 2.0)
