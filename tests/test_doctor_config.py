"""Whose config the doctor uses: the one given, or the run's own — never a stray sibling file."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

from stabletrain.doctor import diagnose

SIBLING = "optimizer: adamw\nlearning_rate: 0.005\nbatch_size: 32\nmax_grad_norm: 1.0\nwarmup_steps: 100\n"


def _spiky_csv(path: Path, lr: float = 1e-3) -> Path:
    """A run logged at ``lr`` whose gradient norm spikes 30× three times."""
    rng = random.Random(0)
    rows = ["step,loss,lr,grad_norm"]
    for s in range(1, 401):
        loss = 2.5 * math.exp(-s / 150) + 0.3 + 0.02 * rng.random()
        g = 1.0 + 0.1 * rng.random()
        if s in (150, 230, 310):
            loss, g = loss * 6, g * 30
        rows.append(f"{s},{loss:.5f},{lr},{g:.4f}")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_a_sibling_config_of_another_run_is_seen_and_ignored(tmp_path: Path) -> None:
    # the case: a CSV logged at lr 1e-3 beside another run's config.yaml (lr 5e-3) was
    # called "lr 0.005 is 5x the bound" while the summary said "config": null
    log = _spiky_csv(tmp_path / "metrics.csv")
    (tmp_path / "config.yaml").write_text(SIBLING, encoding="utf-8")
    report = diagnose(log)
    ids = {f.id for f in report.findings}
    assert "lr-high-for-batch" not in ids and "clip-saturated" not in ids
    assert "grad-spike" in ids  # the log's own symptoms are still reported
    data = report.to_json()
    assert data["read"]["config"] == "none" and data["summary"]["config"] is None
    note = next(n for n in report.notes if "config.yaml" in n)
    assert "not used" in note and f"--config {tmp_path / 'config.yaml'}" in note


def test_a_given_config_that_disagrees_with_the_log_is_noted_and_the_log_wins(
    tmp_path: Path,
) -> None:
    log = _spiky_csv(tmp_path / "metrics.csv")
    config = tmp_path / "config.yaml"
    config.write_text(SIBLING, encoding="utf-8")
    report = diagnose(log, config)
    assert report.to_json()["read"]["config"] == f"given with --config: {config}"
    assert not any("not used" in n for n in report.notes)  # it was given, not ignored
    lr_note = next(n for n in report.notes if n.startswith("lr:"))
    assert "0.001" in lr_note and "0.005" in lr_note and "learning_rate" in lr_note
    # judged by the LR that ran (1e-3 is at the bound for batch 32), in the config's own key
    assert "lr-high-for-batch" not in {f.id for f in report.findings}
    assert report.facts.get("lr") == 0.001 and report.facts.key("lr") == "learning_rate"


def test_a_config_that_agrees_with_the_log_gets_no_note(tmp_path: Path) -> None:
    log = _spiky_csv(tmp_path / "log" / "train.csv", lr=5e-3)
    config = tmp_path / "cfg.yaml"
    config.write_text(SIBLING, encoding="utf-8")
    report = diagnose(log, config)
    assert not [n for n in report.notes if n.startswith("lr:")]
    assert report.facts.get("lr") == 0.005


def _run_dir(root: Path) -> Path:
    """A stabletrain run dir written by the run-log writer, with its own config.yaml."""
    from stabletrain.logs.runlog import RunLog
    from stabletrain.records import StepRecord

    run = root / "run"
    with RunLog(run, tensorboard=False) as out:
        out.write_config("optim: {name: adamw, lr: 3.0e-3}\ntrain: {epochs: 2}\n")
        for s in range(1, 201):
            out.log_step(StepRecord(step=s, loss=2.0 / (1 + s / 50), grad_norm=0.5, lr=3e-3))
    return run


def test_a_run_dir_uses_its_own_config(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    for path in (run, run / "steps.jsonl"):
        report = diagnose(path)
        read = report.to_json()["read"]
        assert read["config"] == f"the run dir's own config.yaml: {run / 'config.yaml'}", path
        assert report.to_json()["summary"]["config"] == read["config"]
        assert report.facts.get("lr") == 3e-3 and report.facts.key("lr") == "optim.lr"


def test_lightning_hparams_beside_metrics_csv_is_the_runs_own(tmp_path: Path) -> None:
    version = tmp_path / "lightning_logs" / "version_0"
    _spiky_csv(version / "metrics.csv")
    (version / "hparams.yaml").write_text("learning_rate: 0.001\n", encoding="utf-8")
    report = diagnose(version)
    assert report.config is not None and report.config.startswith(
        "the Lightning version dir's hparams.yaml"
    )
    assert report.facts.get("lr") == 0.001
    # the same hparams.yaml beside a CSV of another name is not tied to it
    other = _spiky_csv(tmp_path / "elsewhere" / "loss.csv")
    (other.parent / "hparams.yaml").write_text("learning_rate: 0.05\n", encoding="utf-8")
    report = diagnose(other)
    assert report.config is None and "lr" not in report.facts
    assert any("hparams.yaml" in n and "not used" in n for n in report.notes)


def test_hf_checkpoint_training_args_are_the_runs_own(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-200"
    ckpt.mkdir()
    history = [
        {"step": s, "loss": 2.0 / (1 + s / 50), "grad_norm": 0.5, "learning_rate": 5e-4}
        for s in range(10, 201, 10)
    ]
    state = {"log_history": history, "logging_steps": 10, "max_steps": 200}
    (ckpt / "trainer_state.json").write_text(json.dumps(state), encoding="utf-8")
    args = {"learning_rate": 5e-4, "per_device_train_batch_size": 8, "max_grad_norm": 1.0}
    (ckpt / "training_args.json").write_text(json.dumps(args), encoding="utf-8")
    report = diagnose(ckpt)
    assert report.config == (
        "the HF checkpoint's training_args.json, beside its trainer_state.json: "
        f"{ckpt / 'training_args.json'}"
    )
    assert report.facts.get("max_grad_norm") == 1.0 and report.facts.get("logging_steps") == 10


def test_an_hf_checkpoints_pickled_arguments_are_never_loaded(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint-20"
    ckpt.mkdir()
    history = [{"step": s, "loss": 2.0 / s, "learning_rate": 5e-4} for s in range(1, 21)]
    (ckpt / "trainer_state.json").write_text(json.dumps({"log_history": history}))
    (ckpt / "training_args.bin").write_bytes(b"\x80\x04not really a pickle")
    report = diagnose(ckpt)
    assert report.config is None
    assert any("training_args.bin not read (a pickle is never loaded)" in n for n in report.notes)


def test_a_log_still_warming_up_does_not_contradict_its_config(tmp_path: Path) -> None:
    # 100 steps of a 1000-step linear warm-up to 5e-3: the log never reaches the config's peak
    rows = ["step,loss,lr"] + [
        f"{s},{2.0 / (1 + s / 50):.4f},{5e-3 * s / 1000:.3g}" for s in range(1, 101)
    ]
    log = tmp_path / "warmup.csv"
    log.write_text("\n".join(rows) + "\n", encoding="utf-8")
    config = tmp_path / "cfg.yaml"
    config.write_text("learning_rate: 0.005\nwarmup_steps: 1000\n", encoding="utf-8")
    report = diagnose(log, config)
    assert not [n for n in report.notes if n.startswith("lr:")]
    assert report.facts.get("lr") == 0.005


def test_a_run_dir_with_a_given_config_says_both(tmp_path: Path) -> None:
    run = _run_dir(tmp_path)
    given = tmp_path / "mine.yaml"
    given.write_text("optim: {name: adamw, lr: 3.0e-3}\ntrain: {max_grad_norm: 1.0}\n")
    read = diagnose(run, given).to_json()["read"]["config"]
    own = run / "config.yaml"
    assert read == f"given with --config: {given} (also read the run dir's own config.yaml: {own})"
