"""Small generated files of every format, intact and damaged: read up to the damage, with a note."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from torch.utils.tensorboard import SummaryWriter

from stabletrain.errors import LogReadError
from stabletrain.logs.read import detect_format, read_run
from stabletrain.logs.runlog import RunLog
from stabletrain.records import StepRecord


def _run_dir(tmp_path: Path) -> Path:
    d = tmp_path / "run"
    with RunLog(d, tensorboard=False) as rl:
        rl.write_config(
            "optim: {lr: 0.001}\ntrain: {max_grad_norm: 4.0}\nschedule: {name: plateau}\n"
        )
        for s in range(10):
            loss = float("nan") if s == 6 else 2.0 - 0.1 * s
            rl.log_step(StepRecord(step=s, loss=loss, grad_norm=1.0 + s, lr=1e-3, epoch=s / 5))
        rl.log_eval(StepRecord(step=9, eval_loss=1.5, eval_accuracy=0.7))
        rl.log_event(6, "skip", "non-finite loss", severity="warning")
    return d


def test_stabletrain_run_dir(tmp_path: Path) -> None:
    data = read_run(_run_dir(tmp_path))
    assert data.format == "stabletrain" and not data.notes
    assert len(data.train) == 10 and math.isnan(data.train[6].loss or 0.0)
    assert data.evals[0].eval_accuracy == 0.7 and data.events[0]["event"] == "skip"
    assert data.facts.get("max_grad_norm") == 4.0 and data.facts.key("lr") == "optim.lr"


def test_run_log_crashed_mid_line_and_resumed(tmp_path: Path) -> None:
    d = _run_dir(tmp_path)
    with open(d / "steps.jsonl", "a") as f:  # resumed from step 5, then killed mid-write
        for s in (5, 6, 7):
            f.write(json.dumps({"step": s, "loss": 9.0}) + "\n")
        f.write('{"step": 8, "loss": 1.')
    data = read_run(d / "steps.jsonl")
    assert len(data.raw) == 13
    assert [r.step for r in data.records] == list(range(8))
    assert data.records[5].loss == 9.0  # the latest attempt wins
    assert any("mid-write" in n for n in data.notes) and any("replaced" in n for n in data.notes)


def test_tensorboard_simple_and_tensor_values(tmp_path: Path) -> None:
    w = SummaryWriter(str(tmp_path / "tb"))
    for s in range(30):
        w.add_scalar("train/loss", 3.0 - 0.1 * s, s)
        w.add_scalar("train/grad_norm", 1.5, s, new_style=True)  # stored as a tensor
        w.add_scalar("train/learning_rate", 1e-3, s, double_precision=True, new_style=True)
    w.add_scalar("eval/loss", 1.25, 29)
    w.add_histogram("weights", torch.arange(10.0), 29)
    w.add_text("note", "hello", 29)
    w.close()
    data = read_run(tmp_path / "tb")
    assert data.format == "tensorboard" and not data.notes
    assert len(data.train) == 30 and data.train[29].loss == pytest.approx(0.1)
    assert data.train[0].grad_norm == 1.5 and data.train[0].lr == pytest.approx(1e-3)
    assert data.evals[0].eval_loss == 1.25 and not data.train[29].metrics


def test_tensorboard_half_written(tmp_path: Path) -> None:
    w = SummaryWriter(str(tmp_path))
    for s in range(20):
        w.add_scalar("train/loss", float(s), s)
    w.close()
    f = next(tmp_path.glob("events.*"))
    f.write_bytes(f.read_bytes()[:-7])
    data = read_run(f)
    assert [r.step for r in data.records] == list(range(19))
    assert any("truncated" in n for n in data.notes)


def test_tensorboard_garbage_after_records(tmp_path: Path) -> None:
    w = SummaryWriter(str(tmp_path))
    w.add_scalar("loss", 1.0, 0)
    w.close()
    f = next(tmp_path.glob("events.*"))
    f.write_bytes(f.read_bytes() + b"\x01" * 40)
    data = read_run(f)
    assert len(data.records) == 1 and any("corrupt" in n for n in data.notes)


def test_hf_trainer_state_minimal(tmp_path: Path) -> None:
    state = {
        "logging_steps": 10,
        "train_batch_size": 8,
        "max_steps": 30,
        "log_history": [
            {"loss": 2.0, "grad_norm": 1.0, "learning_rate": 1e-4, "epoch": 0.1, "step": 10},
            {
                "loss": 1.5,
                "grad_norm": float("nan"),
                "learning_rate": 1e-4,
                "epoch": 0.2,
                "step": 20,
            },
            {"eval_loss": 1.4, "eval_accuracy": 0.5, "eval_runtime": 3.0, "epoch": 0.2, "step": 20},
            {"train_loss": 1.7, "train_runtime": 9.0, "total_flos": 1.0, "step": 30},
        ],
    }
    f = tmp_path / "state.json"
    f.write_text(json.dumps(state))
    data = read_run(f)
    assert data.format == "hf-trainer-state" and len(data.records) == 3
    assert math.isnan(data.train[1].grad_norm or 0.0)
    assert data.evals[0].eval_accuracy == 0.5 and data.evals[0].metrics == {"eval_runtime": 3.0}
    assert data.facts.get("batch_size") == 8 and data.facts.key("logging_steps") == "logging_steps"


def test_lightning_csv_with_bad_row(tmp_path: Path) -> None:
    f = tmp_path / "metrics.csv"
    f.write_text(
        "epoch,lr-AdamW,step,train_loss,val_acc,val_loss\n"
        "0,0.001,9,2.5,,\n"
        "0,,9,,0.4,2.1\n"
        "0,0.001,19,nan\n"  # half-written row
        "1,0.001,29,1.9,,\n"
    )
    data = read_run(tmp_path)
    assert data.format == "lightning-csv"
    assert [(r.step, r.kind) for r in data.records] == [(9, "train"), (9, "eval"), (29, "train")]
    assert data.train[0].lr == 0.001 and data.evals[0].eval_accuracy == 0.4
    assert any("malformed" in n for n in data.notes)


def test_keras_csv_and_generic_mapping(tmp_path: Path) -> None:
    k = tmp_path / "training.log"
    k.write_text(
        "epoch,accuracy,loss,lr,val_accuracy,val_loss\n0,0.5,1.2,0.01,0.55,1.1\n1,0.6,1.0,0.01,0.6,1.0\n"
    )
    data = read_run(k)
    assert data.format == "keras-csv" and data.train[1].loss == 1.0 and data.evals[1].epoch == 1.0
    g = tmp_path / "log.csv"
    g.write_text("it,my_loss,gn\n1,3.0,0.5\n2,2.0,0.4\n")
    data = read_run(g, mapping={"step": "it", "loss": "my_loss", "grad_norm": "gn"})
    assert [(r.step, r.loss, r.grad_norm) for r in data.records] == [(1, 3.0, 0.5), (2, 2.0, 0.4)]


def test_jsonl_crashed_and_mapped(tmp_path: Path) -> None:
    f = tmp_path / "metrics.jsonl"
    f.write_text(
        '{"iteration": 1, "total": 4.0}\n{"iteration": 2, "total": NaN}\n{"iteration": 3, "to'
    )
    data = read_run(f, mapping={"loss": "total"})
    assert data.format == "jsonl" and [r.step for r in data.records] == [1, 2]
    assert math.isnan(data.records[1].loss or 0.0) and data.notes


def test_text_mixed_console(tmp_path: Path) -> None:
    f = tmp_path / "paste.md"
    f.write_text(
        "# my run\n```\n"
        "\x1b[32m 10%|█         | 1/10 [00:01<00:09]\x1b[0m\n"
        "{'loss': 2.5, 'grad_norm': inf, 'learning_rate': 5e-05, 'epoch': 0.1}\n"
        " 20%|██        | 2/10 [00:02<00:08]{'loss': 2.4, 'grad_norm': 1.0, 'learning_rate': 5e-05, 'epoch': 0.2}\n"
        "```\n"
    )
    data = read_run(f)
    assert data.format == "hf-console"
    assert [(r.step, r.loss) for r in data.records] == [(1, 2.5), (2, 2.4)]
    assert math.isinf(data.records[0].grad_norm or 0.0)


def test_unreadable_inputs(tmp_path: Path) -> None:
    with pytest.raises(LogReadError, match="nope"):
        read_run(tmp_path / "nope")
    empty = tmp_path / "empty.log"
    empty.write_text("")
    with pytest.raises(LogReadError, match=r"empty\.log: empty"):
        read_run(empty)
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00\x01\x02" * 10)
    with pytest.raises(LogReadError, match=r"junk\.bin"):
        read_run(junk)
    (tmp_path / "d").mkdir()
    with pytest.raises(LogReadError, match="no run log found"):
        read_run(tmp_path / "d")
    assert detect_format(_run_dir(tmp_path)) == "stabletrain"


def test_run_log_blank_lines_and_string_nan(tmp_path: Path) -> None:
    f = tmp_path / "steps.jsonl"
    f.write_text('{"step": 0, "loss": 1.0}\n\n{"step": 1, "loss": "nan", "grad_norm": "inf"}\n')
    data = read_run(f)
    assert data.format == "stabletrain" and not data.notes
    assert math.isnan(data.records[1].loss or 0.0) and math.isinf(data.records[1].grad_norm or 0.0)
