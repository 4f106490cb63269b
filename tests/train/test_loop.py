"""End-to-end runs of the reference trainer on real tiny data (digits, the stdlib corpus)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.train.config import load_config
from stabletrain.train.data import load_dataset, unigram_entropy

from .helpers import CONFIGS, read_jsonl, train

QUICK = ("train.epochs=2", "data.batch_size=256")  # 6 steps/epoch on digits


def test_run_dir_log_summary_and_plot(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train("digits-cnn.yaml", run, *QUICK) == 0
    steps = read_jsonl(run / "steps.jsonl")
    assert [r["step"] for r in steps] == list(range(12))
    first = steps[0]
    for key in (
        "loss",
        "grad_norm",
        "clip_coef",
        "lr",
        "accuracy",
        "samples",
        "step_time",
        "epoch",
    ):
        assert key in first, key
    assert first["samples"] == 256 and first["skipped"] is False
    evals = read_jsonl(run / "evals.jsonl")
    assert [e["kind"] for e in evals] == ["eval", "eval"] and "eval_accuracy" in evals[0]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "completed" and summary["epochs"] == 2 and summary["steps"] == 12
    assert summary["final_accuracy"] == evals[-1]["eval_accuracy"]
    assert (run / "training_history.png").stat().st_size > 10_000
    assert load_config(run / "config.yaml").data.batch_size == 256  # the resolved config
    assert (run / "checkpoint.pt").is_file()


def test_plateau_reductions_are_logged(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # an LR so small the val loss cannot improve: patience 0 reduces after every eval
    run = tmp_path / "run"
    args = ("train.epochs=3", "data.batch_size=512", "optim.lr=1e-6")
    args += ("schedule.plateau_patience=0", "schedule.plateau_threshold=0.01")
    assert train("seed003-lr-plateau.yaml", run, *args) == 0
    events = [
        e
        for e in read_jsonl(run / "events.jsonl")
        if e["event"] == "lr-reduced" and "val_loss" in e.get("data", {})  # the trainer's own
    ]
    assert len(events) >= 2
    assert events[0]["data"]["to"] == pytest.approx(events[0]["data"]["from"] * 0.1)
    assert "Learning rate reduced: 1.000e-06 -> 1.000e-07 (val loss" in capsys.readouterr().out


def test_early_stopping(tmp_path: Path) -> None:
    run = tmp_path / "run"
    args = ("train.epochs=10", "data.batch_size=512", "optim.lr=1e-9")
    args += ("train.early_stopping_patience=2", "train.early_stopping_min_delta=0.01")
    assert train("digits-cnn.yaml", run, *args) == 0
    events = [e for e in read_jsonl(run / "events.jsonl") if e["event"] == "early-stop"]
    assert len(events) == 1
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "early-stopped" and summary["epochs"] == 3


def test_guard_abort_exits_3_with_aborted_summary(tmp_path: Path) -> None:
    run = tmp_path / "run"
    nan_everywhere = "data.corrupt.nan_batches=[0,1,2,3,4,5,6,7,8,9]"
    code = train("unstable-digits.yaml", run, nan_everywhere, "guard.max_consecutive_bad=3", *QUICK)
    assert code == 3  # ExitCode.GUARD_STOPPED
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] == "aborted" and "abort" in summary["abort_reason"]
    assert any(e["event"] == "abort" for e in read_jsonl(run / "events.jsonl"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_on_cpu(tmp_path: Path, precision: str) -> None:
    run = tmp_path / precision
    # guard on: the first fp16 steps overflow at init_scale 2**16 and are skipped, not stepped
    args = (f"train.precision={precision}", "train.max_steps=4", "data.batch_size=256")
    args += ("guard.preset=default",)
    assert train("seed004-fp16-gradscaler.yaml", run, *args) == 0
    steps = read_jsonl(run / "steps.jsonl")
    assert len(steps) == 4
    if precision == "fp16":  # the GradScaler's scale is logged, starting at amp.init_scale
        assert steps[0]["loss_scale"] == 65536.0
    else:
        assert "loss_scale" not in steps[0]


def test_grad_accum_counts_optimizer_steps(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert (
        train("digits-cnn.yaml", run, "train.epochs=1", "data.batch_size=128", "train.grad_accum=4")
        == 0
    )
    steps = read_jsonl(run / "steps.jsonl")
    assert len(steps) == 3  # 12 micro-batches / 4
    n_train = len(load_dataset(load_config(run / "config.yaml").data, 0).x_train)
    assert steps[0]["samples"] == 512 and steps[-1]["samples"] == n_train - 2 * 512


@pytest.mark.slow
def test_digits_demo_config_beats_90_percent(tmp_path: Path) -> None:
    assert train("digits-cnn.yaml", tmp_path / "run") == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["final_accuracy"] > 0.9


@pytest.mark.slow
def test_guard_rescues_unstable_digits(tmp_path: Path) -> None:
    accs = {}
    for preset in ("off", "default"):
        run = tmp_path / preset
        code = train("unstable-digits.yaml", run, "train.epochs=3", f"guard.preset={preset}")
        assert code == (3 if preset == "off" else 0)  # unguarded, it diverges: a failed run
        accs[preset] = json.loads((run / "summary.json").read_text())["final_accuracy"]
    assert accs["off"] is None or accs["off"] < 0.2  # NaN weights: chance level
    assert accs["default"] > 0.85


@pytest.mark.slow
def test_tiny_gpt_beats_unigram_entropy(tmp_path: Path) -> None:
    cfg = load_config(CONFIGS / "tiny-gpt.yaml")
    data = load_dataset(cfg.data, cfg.run.seed)
    entropy = unigram_entropy(data.y_train, data.num_classes)
    run = tmp_path / "run"
    assert train("tiny-gpt.yaml", run, "train.max_steps=60", "schedule.warmup_steps=10") == 0
    val = read_jsonl(run / "evals.jsonl")[-1]["eval_loss"]
    print(f"tiny-gpt after 60 steps: val loss {val:.3f} nats vs unigram entropy {entropy:.3f}")
    assert val < entropy - 0.3
