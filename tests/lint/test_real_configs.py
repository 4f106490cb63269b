"""lint on real configs from bench/lint_corpus (tune half only): each general mechanism added
after the corpus's first sight, tested on the file that showed the gap."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.configs.read import read_config
from stabletrain.lint import lint

CONFIGS = Path(__file__).resolve().parents[2] / "bench" / "lint_corpus" / "configs"
pytestmark = pytest.mark.skipif(not CONFIGS.is_dir(), reason="bench/lint_corpus is absent")


def _ids(name: str, at_least: str = "warning") -> set[str]:
    levels = ("info", "warning", "error", "critical")
    keep = levels[levels.index(at_least) :]
    return {f.id for f in lint(CONFIGS / name).findings if f.severity in keep}


def test_torchtune_warmup_is_the_schedulers_not_the_profilers() -> None:
    facts = read_config(CONFIGS / "torchtune_llama3_2_1b_lora_single_device.yaml")
    assert facts.get("warmup_steps") == 100  # lr_scheduler.num_warmup_steps, not profiler's 3
    assert facts.key("warmup_steps") == "lr_scheduler.num_warmup_steps"
    assert facts.get("precision") == "bf16"  # torchtune's top-level dtype


def test_litgpt_spells_warmup_and_clip_its_own_way() -> None:
    facts = read_config(CONFIGS / "litgpt_finetune_llama2_7b_lora.yaml")
    assert facts.get("warmup_steps") == 10 and facts.key("warmup_steps") == "train.lr_warmup_steps"
    # max_norm is empty: this recipe does not clip, and lint still says so
    assert "max_grad_norm" not in facts
    assert "no-grad-clipping" in _ids("litgpt_finetune_llama2_7b_lora.yaml")


def test_the_pretrained_model_is_read_from_hf_and_axolotl_keys() -> None:
    assert "Llama_3.2_3B" in read_config(CONFIGS / "lf6069_llama32_lora_lr3e-3.yaml").get("model")
    assert read_config(CONFIGS / "axolotl1191_tinyllama_fp16.yaml").get("model") == (
        "TinyLlama/TinyLlama-1.1B-step-50K-105b"
    )
