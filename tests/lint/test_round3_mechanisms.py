"""lint's general mechanisms added on round 3's tune half (bench/lint_corpus, session 6): JSON
pasted with ``#`` comments, and what a ds_config's ``scheduler`` block does to the LR
(``ds-scheduler-override``: WarmupLR filled by the HF Trainer replaces its schedule; a warm-up
scheduler without ``warmup_max_lr`` peaks at DeepSpeed's default 1e-3).

Each test has a small config written here (so it fails on the code before the change) and, where
the corpus has one, the real tune-half or development file that showed the gap or must stay
quiet."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import pytest

from stabletrain.configs.read import read_config
from stabletrain.lint import lint

CONFIGS = Path(__file__).resolve().parents[2] / "bench" / "lint_corpus" / "configs"
corpus = pytest.mark.skipif(not CONFIGS.is_dir(), reason="bench/lint_corpus is absent")

_ZERO2 = {"zero_optimization": {"stage": 2}, "gradient_clipping": "auto"}


def _found(path: Path) -> dict[str, str]:
    """finding id -> severity"""
    return {f.id: f.severity for f in lint(path).findings}


def _ds(tmp_path: Path, cfg: dict[str, object], name: str = "ds_config.json") -> Path:
    p = tmp_path / name
    p.write_text(json.dumps({**_ZERO2, **cfg}, indent=2), encoding="utf-8")
    return p


def _sched(tmp_path: Path, lr: object, kind: str, params: Mapping[str, object], name: str) -> Path:
    """A ds_config with an AdamW optimizer at ``lr`` and a ``kind`` scheduler."""
    opt = {"type": "AdamW", "params": {"lr": lr}}
    return _ds(
        tmp_path, {"optimizer": opt, "scheduler": {"type": kind, "params": dict(params)}}, name
    )


# ------------------------------------------------------------------ JSON with # comments


def test_json_with_hash_comments_is_read_and_a_hash_inside_a_string_stays_text(
    tmp_path: Path,
) -> None:
    p = tmp_path / "ds_config.json"
    p.write_text(
        '{\n  "bf16": { # bf16 has fp32\'s range\n    "enabled": true,\n  },\n'
        '  "zero_optimization": {"stage": 1},\n'
        '  "optimizer": {"type": "AdamW", "params": {"lr": 5e-7}},  # the optimizer\n'
        '  "wandb": {"project": "run #3"}\n}\n',
        encoding="utf-8",
    )
    f = read_config(p)
    assert f.format == "deepspeed" and f.get("precision") == "bf16" and f.get("lr") == 5e-7


# ------------------------------------------------------------------ ds-scheduler-override


def test_warmuplr_filled_by_the_trainer_replaces_its_schedule(tmp_path: Path) -> None:
    auto = {"warmup_min_lr": "auto", "warmup_max_lr": "auto", "warmup_num_steps": "auto"}
    p = _sched(tmp_path, "auto", "WarmupLR", auto, "auto.json")
    report = lint(p)
    (hit,) = [x for x in report.findings if x.id == "ds-scheduler-override"]
    assert hit.severity == "warning" and "never decays" in hit.title
    assert hit.fixes and "Delete the scheduler block" in hit.fixes[0].description
    # WarmupDecayLR filled by the Trainer decays (its default schedule, linear): not flagged
    q = _ds(
        tmp_path,
        {"scheduler": {"type": "WarmupDecayLR", "params": {**auto, "total_num_steps": "auto"}}},
        "decay.json",
    )
    assert "ds-scheduler-override" not in _found(q)
    # WarmupLR with the user's own numbers (plain DeepSpeed, no Trainer): the user's choice
    mine = {"warmup_min_lr": 0, "warmup_max_lr": 1e-4, "warmup_num_steps": 100}
    r = _sched(tmp_path, 1e-4, "WarmupLR", mine, "explicit.json")
    assert "ds-scheduler-override" not in _found(r)


def test_a_warmup_scheduler_without_warmup_max_lr_peaks_at_deepspeeds_default(
    tmp_path: Path,
) -> None:
    p = _sched(tmp_path, 2e-5, "WarmupDecayLR", {"total_num_steps": 1000}, "default.json")
    (hit,) = [x for x in lint(p).findings if x.id == "ds-scheduler-override"]
    assert hit.severity == "warning" and "50x" in hit.title
    assert hit.fixes[0].changes == {"scheduler.params.warmup_max_lr": 2e-5}  # down, never up
    # a default peak below the optimizer's lr would need a raise to fix: not flagged
    q = _sched(tmp_path, 3e-3, "WarmupLR", {"warmup_num_steps": 10}, "low.json")
    assert "ds-scheduler-override" not in _found(q)
    # an explicit peak above the optimizer's lr is a deliberate warm-up (seed 002: 2e-4 -> 8e-4)
    seed002 = {"warmup_min_lr": 2e-4, "warmup_max_lr": 8e-4, "total_num_steps": 100}
    r = _sched(tmp_path, 2e-4, "WarmupDecayLR", seed002, "seed002.json")
    assert "ds-scheduler-override" not in _found(r)


@corpus
def test_real_ds_configs_tune_half_and_development() -> None:
    # round 3 tune: LLaVA#1433's zero3_offload.json and DeepSpeed#7303's pasted config
    for name in (
        "r3_llava1433_zero3_offload_warmuplr.json",
        "r3_ds7303_warmuplr_default_max_lr.json",
    ):
        assert _found(CONFIGS / name).get("ds-scheduler-override") == "warning", name
    # healthy: axolotl's ZeRO-2 (no scheduler block), round 1's all-auto WarmupDecayLR config
    for name in ("r3_axolotl_ds_zero2.json", "ds_tp_hf_integration_auto.json"):
        assert "ds-scheduler-override" not in _found(CONFIGS / name)
