"""lint's general mechanisms added on round 2's tune half (bench/lint_corpus, session 6): the key
resolver (suffixes, fairseq's spellings, precision switches), DeepSpeed's Adam as AdamW, bf16-era
models by size, the fp16 clip warning's LR floor, the noam peak LR and Adam's warm-up rule.

Each test has a small config written here (so it fails on the code before the change) and, where
the corpus has one, the real tune-half or round-1 (development) file that showed the gap."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.configs.keys import resolve
from stabletrain.configs.read import read_config
from stabletrain.errors import ConfigError
from stabletrain.lint import lint
from stabletrain.lint_rules import bf16_trained

CONFIGS = Path(__file__).resolve().parents[2] / "bench" / "lint_corpus" / "configs"
corpus = pytest.mark.skipif(not CONFIGS.is_dir(), reason="bench/lint_corpus is absent")


def _found(path: Path) -> dict[str, str]:
    """finding id -> severity"""
    return {f.id: f.severity for f in lint(path).findings}


def _yaml(tmp_path: Path, text: str, name: str = "c.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


# ------------------------------------------------------------------ the key resolver


def test_a_warmup_or_clip_key_with_an_owner_prefix_is_resolved_but_not_an_eval_one() -> None:
    assert resolve("decay_warmup_steps") == "warmup_steps"  # NJUNMT
    assert resolve("optim_grad_clip") == "max_grad_norm"
    assert resolve("clip_norm") == "max_grad_norm"  # fairseq --clip-norm
    assert resolve("warmup_updates") == "warmup_steps"  # fairseq
    assert resolve("eval_warmup_steps") is None
    assert resolve("valid_max_grad_norm") is None
    assert resolve("per_device_eval_batch_size") is None  # suffixes are warm-up and clip only


def test_fairseq_hydra_yaml_is_read_name_list_lr_and_all(tmp_path: Path) -> None:
    p = _yaml(
        tmp_path,
        "common:\n  fp16: true\noptimization:\n  max_update: 800\n  lr: [0.00003]\n"
        "  update_freq: [4]\noptimizer:\n  _name: adam\n  adam_eps: 1e-08\n"
        "lr_scheduler:\n  _name: tri_stage\n",
    )
    f = read_config(p)
    assert f.get("lr") == 3e-5 and f.get("optimizer") == "adam" and f.get("schedule") == "tri_stage"
    assert f.get("grad_accum") == 4 and f.get("max_steps") == 800 and f.get("eps") == 1e-8


@corpus
def test_fairseq_command_line_reads_its_clip_norm_and_warmup() -> None:
    # fairseq#1529: --clip-norm 0.0 --warmup-updates 4000 --fp16, "Minimum loss scale reached"
    f = read_config(CONFIGS / "r2_fairseq1529_transformer_fp16_clip0.sh")
    assert f.get("max_grad_norm") == 0.0 and f.key("max_grad_norm") == "clip_norm"
    assert f.get("warmup_steps") == 4000
    assert _found(CONFIGS / "r2_fairseq1529_transformer_fp16_clip0.sh")["no-grad-clipping"] == (
        "warning"
    )


def test_a_boolean_switch_named_for_a_precision_sets_it(tmp_path: Path) -> None:
    # StarGANv2-VC (round 1): fp16_run: true
    f = read_config(_yaml(tmp_path, "fp16_run: true\nlr: 0.0001\nbatch_size: 5\n"))
    assert f.get("precision") == "fp16" and f.key("precision") == "fp16_run"
    g = read_config(_yaml(tmp_path, "fp16_full_eval: true\nlr: 0.0001\n", "e.yaml"))
    assert "precision" not in g  # an eval-only switch is not the run's precision
    h = read_config(_yaml(tmp_path, "use_fp16: false\nlr: 0.0001\n", "f.yaml"))
    assert "precision" not in h


# ------------------------------------------------------------------ DeepSpeed's Adam


def test_deepspeed_adam_is_adamw_unless_adam_w_mode_is_off(tmp_path: Path) -> None:
    cfg = {
        "train_micro_batch_size_per_gpu": 4,
        "gradient_clipping": 1.0,
        "optimizer": {"type": "Adam", "params": {"lr": 6e-4, "weight_decay": 0.1}},
    }
    p = tmp_path / "ds.json"
    p.write_text(json.dumps(cfg), encoding="utf-8")
    assert read_config(p).get("optimizer") == "AdamW"
    assert "weight-decay-coupled" not in _found(p)  # 0.1 is AdamW's usual decay
    cfg["optimizer"]["params"]["adam_w_mode"] = False  # type: ignore[index]
    p.write_text(json.dumps(cfg), encoding="utf-8")
    assert read_config(p).get("optimizer") == "Adam"
    assert _found(p).get("weight-decay-coupled") == "warning"  # a real L2 term of 0.1


@corpus
def test_gpt_neox_125m_is_quiet() -> None:
    found = _found(CONFIGS / "r2_neox_125m.yml")
    assert not {i for i, s in found.items() if s != "info"}


# ------------------------------------------------------------------ bf16-era models


def test_billion_parameter_models_are_taken_as_bf16_trained_except_fp16_families() -> None:
    assert bf16_trained("/data/base_model/Baichuan2-13B-Chat") is not None
    assert bf16_trained("modelscope/Llama-2-7b-ms") is not None
    assert bf16_trained("Qwen2-1.5B") is not None  # also a named family
    assert bf16_trained("EleutherAI/pythia-1.4b") is None
    assert bf16_trained("facebook/opt-6.7b") is None
    assert bf16_trained("bert-base-uncased") is None
    assert bf16_trained("gpt2-xl") is None
    assert bf16_trained("some-0.5b-model") is None


@corpus
def test_fp16_lora_of_baichuan2_13b_is_a_warning() -> None:
    # LlamaFactory#950: Baichuan2-13B-Chat LoRA with --fp16, loss 0; bf16 fixed it
    assert _found(CONFIGS / "r2_lf950_baichuan2_lora_fp16.sh")["fp16-prefer-bf16"] == "warning"


# ------------------------------------------------------------------ fp16 without a clip


def test_fp16_without_a_clip_warns_only_above_fine_tuning_lrs(tmp_path: Path) -> None:
    low = _yaml(tmp_path, "fp16: true\nlearning_rate: 0.00003\noptimizer: adam\n")
    assert _found(low)["no-grad-clipping"] == "info"
    high = _yaml(tmp_path, "fp16: true\nlearning_rate: 0.0005\noptimizer: adam\n", "h.yaml")
    assert _found(high)["no-grad-clipping"] == "warning"
    zero = _yaml(
        tmp_path,
        "fp16: true\nlearning_rate: 0.00003\noptimizer: adam\nmax_grad_norm: 0\n",
        "z.yaml",
    )
    assert _found(zero)["no-grad-clipping"] == "warning"  # a clip written as 0 is off on purpose


@corpus
def test_wav2vec_finetuning_recipe_in_fp16_is_quiet() -> None:
    found = _found(CONFIGS / "r2_fairseq_w2v_base_100h.yaml")
    assert not {i for i, s in found.items() if s != "info"}


# ------------------------------------------------------------------ noam and warm-up


def test_noam_factor_is_judged_by_its_peak_and_a_3_step_warmup_is_named(tmp_path: Path) -> None:
    base = "optimizer: adam\nlearning_rate: 2.0\nd_model: 512\ndecay_method: noam\n"
    short = lint(_yaml(tmp_path, base + "decay_warmup_steps: 3\n"))
    by_id = {f.id: f for f in short.findings}
    assert by_id["warmup-short"].severity == "warning" and "3 steps" in by_id["warmup-short"].title
    fix = by_id["warmup-short"].fixes[0].changes
    assert fix == {"decay_warmup_steps": 2000}
    # the peak once warmed up (2 x 512^-0.5 x 2000^-0.5 = 0.002) is only 2x the bound: advice
    assert by_id["lr-high-for-batch"].severity == "info"
    # the published warm-up: peak 2 x 512^-0.5 x 4000^-0.5 = 0.0014, no warning at all
    fixed = _found(_yaml(tmp_path, base + "decay_warmup_steps: 4000\n", "ok.yaml"))
    assert "warmup-short" not in fixed and fixed.get("lr-high-for-batch", "info") == "info"
    # a noam factor without d_model says nothing about the LR (a factor, not an LR)
    bare = _found(
        _yaml(
            tmp_path,
            "optimizer: adam\nlearning_rate: 2.0\ndecay_method: noam\nwarmup_steps: 4000\n",
            "bare.yaml",
        )
    )
    assert "lr-high-for-batch" not in bare


def test_noam_lr_fix_scales_the_factor_down(tmp_path: Path) -> None:
    # a peak above the bound even after the warm-up: the fix lowers the factor, never raises it
    p = _yaml(
        tmp_path,
        "optimizer: adam\nlearning_rate: 20.0\nd_model: 512\ndecay_method: noam\n"
        "warmup_steps: 4000\n",
    )
    f = {x.id: x for x in lint(p).findings}["lr-high-for-batch"]
    assert f.severity == "warning"
    new = f.fixes[0].changes["learning_rate"]
    assert 0 < new < 20.0 and abs(new * 512**-0.5 * 4000**-0.5 - 1e-3) < 1e-4


def test_a_warmup_shorter_than_adams_first_moment_horizon_is_none(tmp_path: Path) -> None:
    # 1/(1-beta1), at most 10 steps; the fix warms up over 2/(1-beta2)
    seq = "seq_len: 512\n"  # a sequence model: the Adam rules apply as warnings
    short = seq + "optimizer: adam\nlearning_rate: 0.001\nbeta2: 0.99\nwarmup_steps: 5\n"
    f = {x.id: x for x in lint(_yaml(tmp_path, short)).findings}["warmup-short"]
    assert f.severity == "warning" and f.fixes[0].changes == {"warmup_steps": 500}
    # beta1 above 0.9 is its own fault (a slow momentum), not a reason for a longer warm-up
    slow = seq + "optimizer: adam\nlearning_rate: 0.001\nbetas: [0.99, 0.999]\nwarmup_steps: 15\n"
    assert "warmup-short" not in _found(_yaml(tmp_path, slow, "slow.yaml"))
    fast = seq + "optimizer: adam\nlearning_rate: 0.001\nbetas: [0.8, 0.999]\nwarmup_steps: 4\n"
    assert _found(_yaml(tmp_path, fast, "fast.yaml"))["warmup-short"] == "warning"  # 1/(1-0.8)=5
    edge = seq + "optimizer: adam\nlearning_rate: 0.001\nwarmup_steps: 10\n"  # the horizon
    assert "warmup-short" not in _found(_yaml(tmp_path, edge, "edge.yaml"))
    # the reference trainer's clean config: 100 warm-up steps at lr 1e-3 is a warm-up
    ok = seq + "optimizer: adam\nlearning_rate: 0.001\nwarmup_steps: 100\n"
    assert "warmup-short" not in _found(_yaml(tmp_path, ok, "ok.yaml"))
    low_lr = "optimizer: adam\nlearning_rate: 0.0001\nwarmup_steps: 3\n"  # below 1e-3: no rule
    assert "warmup-short" not in _found(_yaml(tmp_path, low_lr, "low.yaml"))


@corpus
def test_njunmt_noam_config_of_issue_27_gets_the_warmup_fix_of_pr_28() -> None:
    report = lint(CONFIGS / "r2_njunmt27_noam_warmup3.yaml")
    warn = {f.id for f in report.findings if f.severity == "warning"}
    assert warn == {"warmup-short"}
    assert report.change_set is not None
    assert report.change_set.changes == {"training_configs.decay_warmup_steps": 2000}


def test_adam_lr_and_warmup_rules_need_evidence_of_a_transformer_to_warn_early(
    tmp_path: Path,
) -> None:
    # NequIP (round 1, a published interatomic-potential recipe: "we found 0.01 to work best")
    # and an MNIST MLP at Adam 1e-3 without warm-up train fine: advice, not warnings
    gnn = _found(_yaml(tmp_path, "optimizer_name: Adam\nlearning_rate: 0.01\nbatch_size: 5\n"))
    assert gnn.get("lr-high-for-batch") == "info" and gnn.get("warmup-short") == "info"
    assert gnn.get("no-grad-clipping", "info") == "info"
    # the same numbers with a sequence length (a transformer's config): warnings
    lm = _found(
        _yaml(
            tmp_path,
            "optimizer: adam\nlearning_rate: 0.01\nbatch_size: 5\nseq_len: 1024\n",
            "lm.yaml",
        )
    )
    assert lm["lr-high-for-batch"] == lm["warmup-short"] == "warning"
    # without that evidence the LR warning needs 20x the bound, not 5x: the digits CNN at Adam
    # 0.05 (fix loop r5_cnn_adam_kept_sgd_lr, cnn_large_batch_high_lr) diverges and is warned
    cnn = _found(
        _yaml(tmp_path, "optimizer: adam\nlearning_rate: 0.05\nbatch_size: 64\n", "n.yaml")
    )
    assert cnn["lr-high-for-batch"] == "warning"
    # Adam at lr 1.0 (OpenNMT-tf#156) is out of range for any network
    crazy = _found(_yaml(tmp_path, "optimizer: adam\nlearning_rate: 1.0\n", "c.yaml"))
    assert crazy["lr-high-for-batch"] == "warning"


@corpus
def test_nequip_python_tags_are_read_as_plain_data_and_its_recipe_is_quiet() -> None:
    facts = read_config(CONFIGS / "nequip_example.yaml")  # !!python/tuple: refused before
    assert facts.get("lr") == 0.01 and facts.get("batch_size") == 5
    found = _found(CONFIGS / "nequip_example.yaml")
    assert not {i for i, s in found.items() if s != "info"}


def test_only_plain_data_python_tags_are_read(tmp_path: Path) -> None:
    ok = _yaml(tmp_path, "lr: 0.001\nchemical_symbols: !!python/tuple [H, C]\nseq_len: 64\n")
    assert read_config(ok).get("lr") == 0.001
    evil = _yaml(tmp_path, "lr: !!python/object/apply:os.system ['echo hi']\n", "evil.yaml")
    with pytest.raises(ConfigError, match=r"evil\.yaml"):
        lint(evil)


def test_a_model_path_with_a_shell_variable_still_names_the_model(tmp_path: Path) -> None:
    # transformers#22467 (round 1): --model_name_or_path ${work_dir}/../pretrain_models/mt0-base
    sh = tmp_path / "train.sh"
    sh.write_text(
        "python run_translation.py \\\n  --model_name_or_path ${work_dir}/models/mt0-base \\\n"
        "  --learning_rate $LR --fp16 --per_device_train_batch_size 8\n",
        encoding="utf-8",
    )
    facts = read_config(sh)
    assert facts.get("model") == "${work_dir}/models/mt0-base"
    assert "lr" not in facts  # any other value with a variable is unknown until run time
    assert _found(sh)["fp16-prefer-bf16"] == "warning"
