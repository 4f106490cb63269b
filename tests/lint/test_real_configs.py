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
    # max_norm is empty: this recipe does not clip, and lint still says so (as advice)
    assert "max_grad_norm" not in facts
    assert "no-grad-clipping" in _ids("litgpt_finetune_llama2_7b_lora.yaml", "info")


def test_the_pretrained_model_is_read_from_hf_and_axolotl_keys() -> None:
    assert "Llama_3.2_3B" in read_config(CONFIGS / "lf6069_llama32_lora_lr3e-3.yaml").get("model")
    assert read_config(CONFIGS / "axolotl1191_tinyllama_fp16.yaml").get("model") == (
        "TinyLlama/TinyLlama-1.1B-step-50K-105b"
    )


def _finding(name: str, id: str) -> object:
    return {f.id: f for f in lint(CONFIGS / name).findings}.get(id)


def test_fp16_on_a_model_trained_in_bf16_is_a_warning() -> None:
    # axolotl#1191: TinyLlama fine-tuned with fp16: true went to NaN weights
    f = _finding("axolotl1191_tinyllama_fp16.yaml", "fp16-prefer-bf16")
    assert f is not None and f.severity == "warning" and "TinyLlama" in f.title
    assert {"bf16": True, "fp16": False} in [fx.changes for fx in f.fixes]
    # fp16 with no pretrained model named stays advice (nuPlan trains its planner from scratch)
    g = _finding("nuplan91_default_lightning.yaml", "fp16-prefer-bf16")
    assert g is not None and g.severity == "info"


def test_hf_trainer_configs_clip_by_default() -> None:
    # LlamaFactory and axolotl pass no max_grad_norm to HF Trainer, whose default is 1.0
    for name in ("lf4937_gemma2_full_lr1e-4.yaml", "axolotl_llama3_lora_8b.yml"):
        assert "no-grad-clipping" not in _ids(name), name
    # torchtune recipes do not clip unless clip_grad_norm is set: still reported
    assert "no-grad-clipping" in _ids("torchtune_llama3_2_1b_lora_single_device.yaml", "info")
    # Lightning's gradient_clip_val: 0.0 is off
    assert "no-grad-clipping" in _ids("nuplan91_default_lightning.yaml")


def test_no_clipping_is_a_warning_only_where_a_huge_step_is_likely() -> None:
    # published recipes that do not clip (bf16, LR inside the bound, warm-up): advice
    for name in (
        "torchtune_llama3_2_1b_lora_single_device.yaml",
        "litgpt_finetune_llama2_7b_lora.yaml",
        "swin_eurosat_training_args.json",
    ):
        f = _finding(name, "no-grad-clipping")
        assert f is not None and f.severity == "info", name
    # nuPlan's default: precision 16 and gradient_clip_val 0.0 (its NaN thread): a warning
    f = _finding("nuplan91_default_lightning.yaml", "no-grad-clipping")
    assert f is not None and f.severity == "warning" and f.title.endswith("in fp16")


def test_lora_fine_tuning_has_its_own_lr_bound() -> None:
    # LlamaFactory#6069: LoRA at 3e-3 did not learn; the reply: 5e-5..5e-6
    f = _finding("lf6069_llama32_lora_lr3e-3.yaml", "lr-high-for-batch")
    assert f is not None and f.severity == "warning" and f.evidence["bound"] == 5e-4
    assert [fx.changes for fx in f.fixes] == [{"learning_rate": 0.0005}]
    # the published LoRA recipes at 2e-4 / 3e-4 are inside it
    assert "lr-high-for-batch" not in _ids("axolotl_llama3_lora_8b.yml", "info")
    assert "lr-high-for-batch" not in _ids("litgpt_finetune_llama2_7b_lora.yaml", "info")


def test_auto_settings_are_not_judged_here() -> None:
    # every number "auto" (HF fills them at run time): no clip verdict, no fp32 guess
    name = "ds_tp_hf_integration_auto.json"
    assert read_config(CONFIGS / name).get("precision") is None
    assert lint(CONFIGS / name).findings == []


def test_a_python_config_is_read_through_its_literals_never_run() -> None:
    # nanoGPT#167's overrides: dtype = 'float16' at lr 1e-5; nanoGPT clips at 1.0 by default, so
    # no clip verdict, and the bf16 fix is written in nanoGPT's own spelling
    facts = read_config(CONFIGS / "nanogpt167_float16.py")
    assert facts.format == "nanogpt" and facts.get("precision") == "fp16"
    assert facts.get("lr") == 1e-5 and facts.get("grad_accum") == 5 and "min_lr" not in facts
    f = {x.id: x for x in lint(CONFIGS / "nanogpt167_float16.py").findings}
    assert set(f) == {"fp16-prefer-bf16"} and f["fp16-prefer-bf16"].fixes[0].changes == {
        "dtype": "bfloat16"
    }
    # MMDetection's 1x schedule: dict(...) calls are mappings; no clip is mmengine's default
    facts = read_config(CONFIGS / "mmdet_schedule_1x.py")
    assert facts.format == "mmengine" and facts.get("optimizer") == "SGD"
    assert facts.key("lr") == "optim_wrapper.optimizer.lr" and facts.get("lr") == 0.02
    clip = {x.id: x for x in lint(CONFIGS / "mmdet_schedule_1x.py").findings}["no-grad-clipping"]
    assert clip.severity == "info"
    assert clip.fixes[0].changes == {"optim_wrapper.clip_grad.max_norm": 1.0}


def test_python_that_is_not_a_config_is_refused(tmp_path: Path) -> None:
    from stabletrain.errors import ConfigError

    code = tmp_path / "train.py"
    code.write_text("import torch\n\ndef main():\n    lr = 0.1\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"train\.py: a Python file with no literal settings"):
        lint(code)
    bad = tmp_path / "broken.py"
    bad.write_text("lr = (\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not understood"):
        lint(bad)


def test_a_launch_script_is_read_through_its_arguments() -> None:
    # LlamaFactory#2916: `python src/train_bash.py --learning_rate 5e-05 ... --fp16 True` with
    # backslash continuations; the TrainingArguments names make it an HF config
    facts = read_config(CONFIGS / "lf2916_llama2_lora_fp16.sh")
    assert facts.format == "hf-training-args"
    assert facts.get("lr") == 5e-05 and facts.get("precision") == "fp16"
    assert facts.get("model") == "modelscope/Llama-2-7b-ms" and facts.get("lora_rank") == 8
    assert facts.get("max_grad_norm") == 1.0 and facts.key("lr") == "learning_rate"
    # Llama-2-7b: its Hub checkpoint is stored in fp16, but it was trained in bf16 and the
    # thread's fix was bf16 (session 6: billion-parameter models count as bf16-trained)
    assert {f.id: f.severity for f in lint(CONFIGS / "lf2916_llama2_lora_fp16.sh").findings} == {
        "fp16-prefer-bf16": "warning"
    }
    # yanmtt#7: a bare --fp16 flag, single-dash launcher options ignored
    facts = read_config(CONFIGS / "yanmtt7_bart_pretrain_fp16.sh")
    assert facts.format == "command-line" and facts.get("precision") == "fp16"
    assert facts.get("warmup_steps") == 16000 and "world_size" not in facts


def test_command_line_spellings() -> None:
    from stabletrain.configs.cli_args import parse_command

    tree = parse_command(
        "deepspeed --num_gpus=8 train.py \\\n  --lr $LR --clip-grad 1.0 --max_steps -1 --bf16 "
        "# comment --fp16\npython other.py --clip-grad 5\n"
    )
    assert tree == {"num_gpus": "8", "clip_grad": "1.0", "max_steps": "-1", "bf16": True}


def test_a_ds_config_without_a_scheduler_says_nothing_about_warm_up() -> None:
    # DeepSpeed#1267: Lamb at 1e-3 and no scheduler block - BERT's script schedules the LR
    assert "warmup-short" not in _ids("ds1267_bert_lamb_fp16.json", "info")
    assert read_config(CONFIGS / "ds1267_bert_lamb_fp16.json").get("schedule") is None


def test_patch_refuses_scripts_instead_of_rewriting_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from stabletrain.cli import main

    # the corpus's nanoGPT#167 and LlamaFactory#2916 files with their clip switched off, so the
    # change set is not empty
    py = tmp_path / "train_gpt2.py"
    py.write_text((CONFIGS / "nanogpt167_float16.py").read_text() + "grad_clip = 0.0\n")
    sh = tmp_path / "train.sh"
    sh.write_text(
        (CONFIGS / "lf2916_llama2_lora_fp16.sh")
        .read_text()
        .replace("--max_grad_norm 1.0", "--max_grad_norm 0")
    )
    for copy in (py, sh):
        before = copy.read_bytes()
        assert main(["lint", str(copy), "--patch", "--fail-on", "never"]) == 2
        assert "--patch rewrites YAML and JSON configs" in capsys.readouterr().err
        assert copy.read_bytes() == before and not list(tmp_path.glob("*.fixed*"))
