"""``lint``: findings from the seeds' "before" configs alone, and none from a careful config."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.errors import ConfigError
from stabletrain.lint import lint


def _fixtures() -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "seeds" / "__init__.py"
    spec = importlib.util.spec_from_file_location("stabletrain_seed_fixtures_lint", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SEEDS = _fixtures()


def _config(name: str, tmp_path: Path) -> Path:
    return SEEDS.generate(name, tmp_path)[1]  # type: ignore[no-any-return]


def test_seed001_config_predicts_the_patience_conflict(tmp_path: Path) -> None:
    r = lint(_config("seed001", tmp_path))
    ids = [f.id for f in r.findings]
    assert "patience-conflict" in ids and "plateau-patience-long" in ids
    assert all(f.source == "config" and not f.steps for f in r.findings)
    assert r.kind == "lint" and r.worst_severity == "warning"


def test_seed002_ds_config_has_no_clipping(tmp_path: Path) -> None:
    r = lint(_config("seed002", tmp_path))
    f = {x.id: x for x in r.findings}
    assert f["no-grad-clipping"].severity == "warning"
    assert any("gradient_clipping" in fx.changes for fx in f["no-grad-clipping"].fixes)


def test_seed004_scaler_settings(tmp_path: Path) -> None:
    f = {x.id: x for x in lint(_config("seed004", tmp_path)).findings}
    assert f["loss-scale-init-high"].severity == "warning"
    changes = {k: v for fx in f["loss-scale-init-high"].fixes for k, v in fx.changes.items()}
    assert changes["amp.init_scale"] <= 2**10 and changes["amp.growth_interval"] >= 200


def test_two_files_of_one_run_are_linted_together(tmp_path: Path) -> None:
    # seed 002's clip lives in ds_config; a training YAML beside it supplies the rest
    train = tmp_path / "train.yaml"
    train.write_text("training:\n  learning_rate: 0.0002\n  epochs: 50\n", encoding="utf-8")
    r = lint([train, _config("seed002", tmp_path)])
    assert "no-grad-clipping" in {f.id for f in r.findings}
    assert r.facts.get("epochs") == 50 and r.facts.get("precision") == "fp16"


def test_careful_config_is_clean(tmp_path: Path) -> None:
    cfg = tmp_path / "good.yaml"
    cfg.write_text(
        "optim: {name: adamw, lr: 3.0e-4}\n"
        "schedule: {name: cosine, warmup_steps: 200}\n"
        "data: {name: digits, batch_size: 64}\n"
        "train: {epochs: 10, precision: bf16, max_grad_norm: 1.0}\n",
        encoding="utf-8",
    )
    assert lint(cfg).problems == []


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("training: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"broken\.yaml"):
        lint(bad)
    with pytest.raises(ConfigError):
        lint([])


def test_public_lint_is_callable_even_after_the_submodule_import(tmp_path: Path) -> None:
    import stabletrain
    import stabletrain.lint  # binds the package attribute to the module

    report = stabletrain.lint(_config("seed001", tmp_path))
    assert "patience-conflict" in {f.id for f in report.findings}


def test_a_file_without_training_settings_is_an_error_not_a_clean_verdict(tmp_path: Path) -> None:
    p = tmp_path / "compose.yaml"
    p.write_text("services:\n  web:\n    image: nginx\n    ports: ['80:80']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"compose\.yaml: no training settings found"):
        lint(p)


README_CONFIG = (
    "learning_rate: 2.0e-4\nper_device_train_batch_size: 8\nmax_grad_norm: 1.0\n"
    "warmup_ratio: 0.05\nnum_train_epochs: 3\n"
)


def test_each_file_is_judged_then_the_files_together(tmp_path: Path) -> None:
    # the README's `lint config.yaml ds_config.json`: first-file-wins merging hid the ds_config's
    # gradient_clipping: 0 behind the YAML's clip of 1.0
    config, ds = tmp_path / "config.yaml", tmp_path / "ds_config.json"
    config.write_text(README_CONFIG, encoding="utf-8")
    ds.write_text(
        '{"train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0,\n'
        ' "fp16": {"enabled": true, "initial_scale_power": 16}}\n',
        encoding="utf-8",
    )
    f = {x.id: x for x in lint([config, ds]).findings}
    clip = f["no-grad-clipping"]
    assert clip.title.startswith("ds_config.json: ") and clip.evidence["files"] == str(ds)
    assert [fx.changes for fx in clip.fixes] == [{"gradient_clipping": 1.0}]
    conflict = f["config-conflict"]
    assert conflict.evidence["setting"] == "max_grad_norm"
    assert f"{config}:max_grad_norm = 1.0" in conflict.title
    assert f"{ds}:gradient_clipping = 0" in conflict.title
    # a finding of one file alone names it
    scale = f["loss-scale-init-high"]
    assert scale.evidence["file"] == str(ds) and scale.title.startswith("ds_config.json: ")


def test_a_file_that_only_lacks_what_another_file_sets_is_not_blamed(tmp_path: Path) -> None:
    config, ds = tmp_path / "config.yaml", tmp_path / "ds_config.json"
    config.write_text(README_CONFIG, encoding="utf-8")
    ds.write_text('{"train_micro_batch_size_per_gpu": 8, "zero_optimization": {"stage": 2}}\n')
    ids = {x.id for x in lint([config, ds]).findings}
    assert "no-grad-clipping" not in ids and "config-conflict" not in ids
    # a TrainingArguments YAML without max_grad_norm clips at HF's default 1.0 on its own; beside a
    # ds_config without gradient_clipping (DeepSpeed's default 0, and HF fills only "auto") the
    # run does not clip, and the fix goes into the ds_config's key
    config.write_text("learning_rate: 2.0e-4\nper_device_train_batch_size: 8\n")
    assert "no-grad-clipping" not in {x.id for x in lint(config).findings}
    clip = {x.id: x for x in lint([config, ds]).findings}["no-grad-clipping"]
    assert [fx.changes for fx in clip.fixes] == [{"gradient_clipping": 1.0}]
    assert clip.evidence["files"] == f"{config}, {ds}"


def test_the_file_that_disables_a_setting_is_named_not_the_one_that_leaves_it(
    tmp_path: Path,
) -> None:
    config, ds = tmp_path / "config.yaml", tmp_path / "ds_config.json"
    config.write_text("learning_rate: 2.0e-4\nper_device_train_batch_size: 8\n")
    ds.write_text('{"train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0}\n')
    clips = [f for f in lint([config, ds]).findings if f.id == "no-grad-clipping"]
    assert len(clips) == 1 and clips[0].title.startswith("ds_config.json: ")
    assert [fx.changes for fx in clips[0].fixes] == [{"gradient_clipping": 1.0}]


def test_a_file_given_twice_is_judged_once(tmp_path: Path) -> None:
    cfg = tmp_path / "training_args.json"
    cfg.write_text('{"learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_grad_norm": 0}')
    once, twice = lint(cfg), lint([cfg, cfg])
    assert [f.title for f in twice.findings] == [f.title for f in once.findings]
    assert [f.id for f in once.findings].count("no-grad-clipping") == 1
