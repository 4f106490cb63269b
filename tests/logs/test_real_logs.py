"""Every real public log in shared/real-logs parses to the values one reads in it by eye."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run
from stabletrain.logs.readers import tensorboard


def _train(path: Path) -> dict[int, object]:
    return {r.step: r for r in read_run(path).records if r.kind == "train"}


def test_megatron_tr8b_loss_scale_drops_and_repeated_norm(real_logs: Path) -> None:
    data = read_run(real_logs / "bigscience_tr8b_104B" / "megatron_iterations_extracted.log")
    assert data.format == "megatron"
    recs = {r.step: r for r in data.records}
    assert len(data.raw) == 19
    r = recs[17062]
    assert r.loss == pytest.approx(4.374269) and r.loss_scale == 1048576.0
    assert [recs[s].loss_scale for s in (17063, 17064, 17065)] == [524288.0, 262144.0, 131072.0]
    # 464441.887 repeated on 17062-17065: norm not recomputed, the steps were skipped
    assert all(recs[s].skipped for s in (17062, 17063, 17064, 17065))
    assert not recs[17061].skipped and recs[17061].grad_norm == pytest.approx(464441.887)
    assert data.facts.get("max_steps") == 159576


def test_megatron_zero_grad_norm_is_missing(real_logs: Path) -> None:
    recs = _train(real_logs / "bigscience_tr1_13B" / "megatron_iterations_extracted.log")
    assert recs[29050].loss == pytest.approx(7.343709)  # type: ignore[attr-defined]
    assert recs[29050].loss_scale == 8192.0  # type: ignore[attr-defined]
    assert recs[29050].grad_norm is None  # type: ignore[attr-defined]  # printed as 0.000


def test_megatron_wide_eval_and_rewind(real_logs: Path) -> None:
    data = read_run(real_logs / "bigscience_tr8_104B_wide" / "megatron_iterations_extracted.log")
    evals = [r for r in data.records if r.kind == "eval"]
    assert evals[0].step == 7000 and evals[0].eval_loss == pytest.approx(7.1742)
    assert any("replaced" in n for n in data.notes)  # 7000..7220 then 6900 again: a restart
    steps = [r.step for r in data.records if r.kind == "train"]
    assert steps == sorted(steps)


def test_megatron_bf16_nan_norm(real_logs: Path) -> None:
    recs = list(_train(real_logs / "issue_megatron_ds_396_bf16_gradnorm_nan" / "log.txt").values())
    assert [r.step for r in recs] == [5426, 5427, 5428]  # type: ignore[attr-defined]
    assert all(math.isnan(r.grad_norm) and r.loss is None for r in recs)  # type: ignore[attr-defined]


def test_hf_console_gemma_fp16_nan(real_logs: Path) -> None:
    data = read_run(real_logs / "issue_gemma_pytorch_24_fp16_nan" / "log.txt")
    assert data.format == "hf-console" and len(data.records) == 20
    third = data.records[2]
    assert third.loss == pytest.approx(153318.95) and math.isnan(third.grad_norm or 0.0)
    assert math.isnan(data.records[5].loss or 0.0)
    assert data.records[0].lr == 0.0002 and data.records[0].epoch == 0.09
    assert any("inferred" in n for n in data.notes)


def test_hf_console_glm_and_timemoe(real_logs: Path) -> None:
    glm = read_run(real_logs / "issue_glm4_174_gradnorm_rise_nan" / "log.txt").records
    assert [r.grad_norm for r in glm[:5]] == [0.58984375, 4.25, 1.34375, 5.625, 5.28125]
    assert math.isnan(glm[5].grad_norm or 0.0) and glm[5].loss == 0.2096
    tm = read_run(real_logs / "issue_timemoe_71_intermittent_nan" / "log.txt").records
    assert len(tm) == 9 and [i for i, r in enumerate(tm) if math.isnan(r.grad_norm or 0)] == [0, 3]


def test_deepspeed_overflow_lines(real_logs: Path) -> None:
    data = read_run(real_logs / "issue_chinese_llama_alpaca_534_lossscale" / "log.txt")
    scales = [(e["data"]["attempted_scale"], e["data"]["new_scale"]) for e in data.events]
    assert scales == [(64, 32), (32, 16), (16, 8), (8, 4), (4, 2)]
    recs = {r.step: r for r in data.records}
    assert recs[380].loss == 2.0491 and recs[380].skipped  # the HF dict and the overflow, one step
    assert recs[383].loss_scale == 2.0 and recs[383].skipped


def test_ms_swift_jsonl(real_logs: Path) -> None:
    data = read_run(real_logs / "issue_ms_swift_2436_nan_jsonl" / "log.jsonl")
    assert data.format == "ms-swift-jsonl"
    assert [r.step for r in data.records] == [8270, 8275, 8280]
    assert math.isnan(data.records[2].grad_norm or 0.0) and data.records[2].loss == 2.23302879
    assert data.facts.get("max_steps") == 11043


def test_mmengine(real_logs: Path) -> None:
    recs = read_run(real_logs / "issue_xtuner_187_mmengine_nan" / "log.txt").records
    assert [r.step for r in recs] == [200, 210, 220, 230, 240, 250]
    assert recs[0].loss == 2.7522 and recs[0].lr == 1.9870e-04 and recs[0].grad_norm == 3.0608
    assert math.isnan(recs[4].grad_norm or 0.0)


def test_nanogpt_markdown(real_logs: Path) -> None:
    data = read_run(real_logs / "nanogpt_s21_gpt2_stdout" / "log.txt")
    assert data.format == "nanogpt" and len(data.raw) == 750
    last = data.records[-1]
    assert (
        last.step == 4999 and last.loss == 0.012582 and last.grad_norm == pytest.approx(0.15568848)
    )
    assert last.step_time == pytest.approx(0.50596)
    assert data.raw[0].loss == pytest.approx(10.899394989013672)  # first section, kept in raw


def test_hf_trainer_states(real_logs: Path) -> None:
    g = read_run(real_logs / "hf_gemma3_1b_clean_eval")
    assert g.format == "hf-trainer-state"
    assert len(g.train) == 75 and len(g.evals) == 19
    assert g.records[0].step == 50 and g.records[0].loss == pytest.approx(14.7537890625)
    assert g.evals[-1].eval_loss == pytest.approx(0.7326762080192566)
    assert g.facts.get("logging_steps") == 50 and g.facts.get("batch_size") == 4
    q = read_run(real_logs / "hf_quality_lrqa_plateau" / "trainer_state.json")
    assert q.evals[0].eval_accuracy == pytest.approx(0.25503355) and q.train[0].grad_norm is None
    assert any("grad_norm" in n for n in q.notes)
    grpo = read_run(real_logs / "hf_grpo_zero_loss" / "trainer_state.json")
    assert len(grpo.records) == 1000 and "reward" in grpo.records[0].metrics
    m = read_run(real_logs / "hf_mistral_translator_clean" / "trainer_state.json")
    assert len(m.records) == 866 and m.records[-1].step == 8660  # summary row ignored


def test_trainproof_gallery_all(real_logs: Path) -> None:
    for f in sorted((real_logs / "trainproof_gallery").glob("*.json")):
        data = read_run(f)
        assert len(data.train) == 60 and data.train[-1].step == 300, f.name
    lr0 = read_run(real_logs / "trainproof_gallery" / "lr_zero_seed42_trainer_state.json")
    assert {r.lr for r in lr0.train} == {0.0}


def test_lightning_tfevents(real_logs: Path) -> None:
    data = read_run(real_logs / "trainproof_fish_lightning_tfevents")
    assert data.format == "tensorboard"
    losses = [r for r in data.train if r.loss is not None]
    assert len(losses) == 41
    assert losses[0].step == 49 and losses[0].loss == 7.90625 and losses[0].grad_norm == 5.15625
    assert losses[0].lr == pytest.approx(1e-4)
    assert len([r for r in data.evals if r.eval_loss is not None]) == 82
    assert data.facts.get("max_grad_norm") == 1.0  # from hparams.yaml beside it
    assert data.facts.key("max_grad_norm") == "trainer.gradient_clip_val"


def test_hf_tfevents_eval_in_separate_file(real_logs: Path) -> None:
    d = real_logs / "hf_serial_lain_tfevents"
    tb = tensorboard.read(d)
    train = {r.step: r for r in tb.raw if r.kind == "train"}
    assert train[500].loss == pytest.approx(0.4742)
    ev = [r for r in tb.raw if r.kind == "eval"]
    assert len(ev) == 1 and ev[0].eval_accuracy == pytest.approx(0.99905401)
    assert all("train_runtime" not in k for r in tb.raw for k in r.metrics)
    one = read_run(sorted(d.glob("*.2"))[0])
    assert one.format == "tensorboard" and one.evals[0].eval_loss == pytest.approx(0.0062216851)


def test_coqui_tfevents(real_logs: Path) -> None:
    data = read_run(real_logs / "trainproof_xtts_coqui_diverged")
    assert data.format == "tensorboard" and not data.notes
    assert data.train[0].loss == pytest.approx(0.06261977) and data.train[-1].step == 125000


def test_coqui_text_log_reads_like_its_tensorboard_file(real_logs: Path) -> None:
    """Coqui's console blocks (a ``GLOBAL_STEP`` header, then one ``| > name: value`` line per
    metric) read as one record per step; ``--> EVAL PERFORMANCE`` blocks as evals."""
    d = real_logs / "trainproof_xtts_coqui_diverged"
    data = read_run(d / "trainer_0_log.txt")
    train = [r for r in data.records if r.kind == "train"]
    assert train[0].step == 0 and train[0].loss == pytest.approx(0.06261977)  # as in the TB file
    assert train[0].lr == 5e-06 and train[0].step_time == 0.2354
    assert train[0].metrics["loss_mel_ce"] == pytest.approx(5.235686302185059)
    evals = [(r.step, r.eval_loss) for r in data.records if r.kind == "eval"]
    assert evals[0] == (0, pytest.approx(4.8813194660913375)) and len(evals) == 3
    assert data.roles["current_lr"] == "lr" and data.roles["avg_loss"] == "eval_loss"
    assert data.lines_understood is not None and data.lines_total is not None
    assert 0.5 < data.lines_understood / data.lines_total < 1.0


def test_text_without_training_records_is_one_line_error(real_logs: Path) -> None:
    f = real_logs / "bigscience_tr1_13B" / "SOURCE.txt"
    with pytest.raises(LogReadError, match=r"SOURCE\.txt"):
        read_run(f)


@pytest.mark.parametrize(
    ("log", "writer"),
    [
        ("bigscience_tr8b_104B/megatron_iterations_extracted.log", "megatron"),
        ("issue_megatron_ds_396_bf16_gradnorm_nan/log.txt", "megatron"),
        ("issue_chinese_llama_alpaca_534_lossscale/log.txt", "deepspeed"),  # beside HF dicts
        ("issue_gemma_pytorch_24_fp16_nan/log.txt", "hf-console"),
        ("issue_xtuner_187_mmengine_nan/log.txt", "mmengine"),
        ("issue_ms_swift_2436_nan_jsonl/log.jsonl", "ms-swift"),
        ("trainproof_gallery/lr_hot_seed42_trainer_state.json", "hf-trainer-state"),
        ("trainproof_fish_lightning_tfevents", "lightning-tensorboard"),
        (
            "hf_serial_lain_tfevents/events.out.tfevents.1719642696.6a29ce405cda.1269.0",
            "hf-tensorboard",
        ),
        ("trainproof_xtts_coqui_diverged", "generic-log"),  # Coqui's trainer: no known keys
        ("nanogpt_s21_gpt2_stdout/log.txt", "generic-log"),  # build-nanogpt: settings in code
    ],
)
def test_reader_names_the_framework_whose_keys_fixes_use(
    real_logs: Path, log: str, writer: str
) -> None:
    assert read_run(real_logs / log).facts.format == writer
