"""Every value the doctor proposes for a reference-trainer run is one the trainer accepts: a fix,
an alternative and the change set, each applied to the run's own config, pass its validation
(``train.max_grad_norm`` must be > 0 or null, so "turn clipping off" is null there, not 0)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stabletrain.cli import main


@pytest.fixture(scope="module")
def tight_clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SGD at 0.05 under a clip of 0.01: every step clipped, the run stalls."""
    from stabletrain.train.config import load_config
    from stabletrain.train.loop import train

    run = tmp_path_factory.mktemp("tight") / "run"
    overrides = [
        "optim.name=sgd",
        "optim.lr=0.05",
        "train.max_grad_norm=0.01",
        "guard.preset=off",
        "train.epochs=1",
        "train.max_steps=30",
        "run.tensorboard=false",
    ]
    train(load_config("configs/digits-cnn.yaml", overrides), run)
    return run


def _fix_sets(report: dict[str, Any]) -> list[dict[str, Any]]:
    sets = [fix["changes"] for f in report["findings"] for fix in f.get("fix") or []]
    cs = report["change_set"]
    sets.append(cs["changes"])
    sets.extend(alt["changes"] for alt in cs.get("alternatives") or [])
    return [s for s in sets if s]


def test_every_proposed_value_passes_the_trainers_validation(
    tight_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stabletrain.train.config import apply_overrides, parse_config

    main(["doctor", str(tight_clip), "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    sets = _fix_sets(report)
    assert any("train.max_grad_norm" in s for s in sets)
    off = [s for s in sets if s.get("train.max_grad_norm", 1.0) is None]
    assert off, sets  # "turn clipping off" is offered, as null
    for changes in sets:
        data = yaml.safe_load((tight_clip / "config.yaml").read_text(encoding="utf-8"))
        apply_overrides(data, [f"{k}={json.dumps(v)}" for k, v in changes.items()])
        parse_config(data, source="patched")  # raises on a value the trainer refuses


def test_clipping_off_is_zero_where_the_framework_takes_zero() -> None:
    from stabletrain.detectors.fixes import make_fix
    from stabletrain.records import ConfigFacts

    for fmt, key in [("hf", "max_grad_norm"), ("deepspeed", "gradient_clipping")]:
        fix = make_fix(ConfigFacts(format=fmt), "off", max_grad_norm=0.0)
        assert fix.changes == {key: 0.0}
    fix = make_fix(ConfigFacts(format="stabletrain"), "off", max_grad_norm=0.0)
    assert fix.changes == {"train.max_grad_norm": None}
