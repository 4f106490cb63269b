"""DeepSpeed guidance in docs/integrations.md: ``stabletrain lint ds_config.json`` flags the config.

The guard as a DeepSpeed client-optimizer wrapper is not tested (deepspeed is not installed here
and needs CUDA); this checks the documented fallback on a real ds_config without clipping.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

lint = pytest.importorskip("stabletrain.lint").lint

DS_CONFIG = {
    "train_micro_batch_size_per_gpu": 16,
    "gradient_accumulation_steps": 4,
    "fp16": {"enabled": True, "loss_scale": 0, "initial_scale_power": 32, "min_loss_scale": 1},
    "optimizer": {"type": "AdamW", "params": {"lr": 3e-4, "betas": [0.9, 0.95]}},
    "gradient_clipping": 0.0,
}


def test_lint_flags_unclipped_fp16_ds_config(tmp_path: Path) -> None:
    path = tmp_path / "ds_config.json"
    path.write_text(json.dumps(DS_CONFIG))
    ids = {f.id for f in lint(path).findings}
    assert "no-grad-clipping" in ids
    clipped = {**DS_CONFIG, "gradient_clipping": 1.0}
    path.write_text(json.dumps(clipped))
    assert "no-grad-clipping" not in {f.id for f in lint(path).findings}
