"""``configs.patch``: a change set written into the user's own file, format kept."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stabletrain.configs.patch import ADDED, default_output, plan_patch, write_patch
from stabletrain.configs.read import read_config
from stabletrain.errors import ConfigError

YAML_CONFIG = """\
# my run: keep this comment
run:
  name: mine   # and this one
  seed: 3
optim:
  name: adamw
  lr: 3.0e-3   # tuned by hand
  betas: [0.9, 0.999]
schedule:
  name: cosine
  warmup_ratio: 0.05
train:
  epochs: 8
  max_grad_norm: null
callbacks:
  - early_stop
  - checkpoint
"""


def test_yaml_keeps_comments_and_order_and_creates_nested_maps(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(YAML_CONFIG, encoding="utf-8")
    changes = {
        "optim.lr": 1e-5,
        "train.max_grad_norm": 1.0,
        "amp.init_scale": 1024.0,  # a section the file does not have
        "optim.betas[1]": 0.99,
        "schedule.warmup_steps": 100,  # replaces warmup_ratio (the trainer refuses both)
    }
    patch = plan_patch(cfg, changes)
    text = patch.text
    for kept in ("# my run: keep this comment", "# and this one", "# tuned by hand"):
        assert kept in text
    # a float PyYAML reads back as a float (not "1e-05", a string to YAML 1.1), comment kept
    assert next(ln for ln in text.splitlines() if "lr:" in ln).split() == [
        "lr:",
        "1.0e-05",
        "#",
        "tuned",
        "by",
        "hand",
    ]
    assert "  - early_stop\n  - checkpoint" in text  # the file's sequence indentation
    tree = yaml.safe_load(text)
    assert list(tree) == ["run", "optim", "schedule", "train", "callbacks", "amp"]
    assert tree["optim"]["lr"] == 1e-5 and tree["optim"]["betas"] == [0.9, 0.99]
    assert tree["amp"] == {"init_scale": 1024.0}
    assert tree["train"] == {"epochs": 8, "max_grad_norm": 1.0}
    assert tree["schedule"]["warmup_steps"] == 100 and tree["schedule"]["warmup_ratio"] == 0
    edits = {e.key: (e.old, e.new) for e in patch.edits}
    assert edits["optim.lr"] == (0.003, 1e-5) and edits["amp.init_scale"] == (ADDED, 1024.0)
    assert "optim.lr: 0.003 → 1e-05" in patch.summary()
    assert not patch.refused


def test_deepspeed_json_nested_keys_order_and_indent(tmp_path: Path) -> None:
    ds = tmp_path / "ds_config.json"
    src = {
        "train_micro_batch_size_per_gpu": 8,
        "gradient_clipping": 0,
        "optimizer": {"type": "AdamW", "params": {"lr": "auto"}},
        "fp16": {"enabled": True, "initial_scale_power": 32},
    }
    ds.write_text(json.dumps(src, indent=4) + "\n", encoding="utf-8")
    patch = plan_patch(
        ds, {"fp16.initial_scale_power": 10, "gradient_clipping": 1.0, "learning_rate": 1e-4}
    )
    assert patch.text.startswith('{\n    "train_micro_batch_size_per_gpu": 8,')
    tree = json.loads(patch.text)
    assert list(tree) == list(src)
    assert tree["fp16"] == {"enabled": True, "initial_scale_power": 10}
    assert tree["gradient_clipping"] == 1.0
    # "auto" is filled in by the HF integration at run time: refused, one line naming it
    assert tree["optimizer"]["params"]["lr"] == "auto"
    assert patch.refused == [
        'learning_rate: optimizer.params.lr is "auto" in ds_config.json (filled in by the '
        "trainer at run time); set it where the trainer reads it"
    ]


def test_hf_args_flat_keys_and_another_frameworks_key_is_refused(tmp_path: Path) -> None:
    hf = tmp_path / "training_args.json"
    hf.write_text(
        json.dumps({"learning_rate": 5e-4, "per_device_train_batch_size": 8, "fp16": True}),
        encoding="utf-8",
    )
    changes = {"optim.lr": 2.5e-4, "train.precision": "bf16", "amp.init_scale": 1024.0}
    patch = plan_patch(hf, changes)
    tree = json.loads(patch.text)
    assert tree == {
        "learning_rate": 2.5e-4,
        "per_device_train_batch_size": 8,
        "fp16": False,
        "bf16": True,
    }
    assert patch.refused == [
        "amp.init_scale: HF TrainingArguments (training_args.json) has no loss_scale_init setting"
    ]
    assert read_config(_written(patch, tmp_path)).get("lr") == 2.5e-4


def _written(patch: object, tmp_path: Path) -> Path:
    return write_patch(patch, tmp_path / "out" / "fixed.json")  # type: ignore[arg-type]


def test_written_atomically_never_over_the_input(tmp_path: Path) -> None:
    cfg = tmp_path / "run.yaml"
    cfg.write_text(YAML_CONFIG, encoding="utf-8")
    patch = plan_patch(cfg, {"optim.lr": 1e-3})
    out = default_output(cfg)
    assert out == tmp_path / "run.fixed.yaml"
    write_patch(patch, out)
    assert cfg.read_text(encoding="utf-8") == YAML_CONFIG
    assert yaml.safe_load(out.read_text(encoding="utf-8"))["optim"]["lr"] == 1e-3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.fixed.yaml", "run.yaml"]


def test_a_key_under_a_scalar_is_a_one_line_error(tmp_path: Path) -> None:
    cfg = tmp_path / "flat.yaml"
    cfg.write_text("optimizer: adamw\nlr: 0.001\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"flat.yaml: optimizer is 'adamw', not a mapping"):
        plan_patch(cfg, {"optimizer.foreach": False})


def test_hostile_yaml_is_refused_before_the_round_trip(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lines.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [*{prev}, *{prev}, *{prev}]")
    lines.append("lr: 0.1")
    bomb.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bomb\.yaml"):
        plan_patch(bomb, {"lr": 0.01})
    evil = tmp_path / "evil.yaml"
    evil.write_text("lr: !!python/object/apply:os.system ['echo hi']\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"evil\.yaml"):
        plan_patch(evil, {"lr": 0.01})


def test_yaml_the_round_trip_cannot_take_is_a_one_line_error(tmp_path: Path) -> None:
    dup = tmp_path / "dup.yaml"
    dup.write_text("lr: 0.1\noptimizer: adam\nlr: 0.2\n", encoding="utf-8")  # PyYAML lets it pass
    with pytest.raises(ConfigError, match=r"dup\.yaml: cannot patch this YAML \(found duplicate"):
        plan_patch(dup, {"lr": 0.01})


def test_a_key_inside_a_shared_anchor_is_refused_not_edited_everywhere(tmp_path: Path) -> None:
    cfg = tmp_path / "anchors.yaml"
    cfg.write_text(
        "base: &b {lr: 0.1, optimizer: adam}\nrun: *b\nmax_grad_norm: 0\n", encoding="utf-8"
    )
    patch = plan_patch(cfg, {"base.lr": 0.01, "max_grad_norm": 1.0})
    assert patch.refused == [
        "base.lr: base.lr is inside the YAML anchor &b, shared by every place that uses it; "
        "edit it by hand"
    ]
    assert yaml.safe_load(patch.text) == {
        "base": {"lr": 0.1, "optimizer": "adam"},
        "run": {"lr": 0.1, "optimizer": "adam"},
        "max_grad_norm": 1.0,
    }


_NAMES = st.text("abcdefgh_", min_size=1, max_size=6)
_SCALARS = st.one_of(
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text("abc xyz:#-", max_size=8),
    st.none(),
)
_TREES = st.recursive(
    _SCALARS, lambda kids: st.dictionaries(_NAMES, kids, min_size=1, max_size=4), max_leaves=12
)


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}.{k}" if prefix else k
        out.update(_leaves(v, key) if isinstance(v, dict) and v else {key: v})
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    tree=st.dictionaries(_NAMES, _TREES, min_size=1, max_size=5),
    pick=st.integers(0, 100),
    value=st.one_of(st.floats(allow_nan=False, width=32), st.integers(-5, 5)),
    style=st.sampled_from(["yaml-block", "yaml-flow", "json"]),
)
def test_any_leaf_is_set_and_nothing_else_moves(
    tree: dict[str, Any], pick: int, value: float, style: str, tmp_path_factory: Any
) -> None:
    path = tmp_path_factory.mktemp("fuzz") / ("c.json" if style == "json" else "c.yaml")
    if style == "json":
        path.write_text(json.dumps(tree, indent=2), encoding="utf-8")
    else:
        text = yaml.safe_dump(tree, default_flow_style=style == "yaml-flow", sort_keys=False)
        path.write_text(f"# a comment\n{text}", encoding="utf-8")
    leaves = _leaves(tree)
    key = sorted(leaves)[pick % len(leaves)]
    try:
        patch = plan_patch(path, {key: value})
    except ConfigError as e:  # a file the config reader refuses (no mapping...), one line
        assert str(path) in str(e) and "\n" not in str(e)
        return
    if patch.refused:  # a key that names a known setting of another framework
        assert len(patch.refused) == 1 and patch.refused[0].startswith(f"{key}: ")
        return
    back = json.loads(patch.text) if style == "json" else yaml.safe_load(patch.text)
    got = _leaves(back)
    written = {e.key for e in patch.edits}
    for k, v in leaves.items():
        if k not in written:
            assert got[k] == v or (v != v and got[k] != got[k]), k
    for e in patch.edits:
        assert e.key in got
