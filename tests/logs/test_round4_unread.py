"""The two round-4 held-out logs refused at first sight (declared development data in session 5,
after round 5 and 6 were collected): OpenAI's key/value logger blocks with its fp16 ``lg_loss_scale``
messages, and YOLOv5's early console table whose loss columns are ``box obj cls``. Both exited 2
("no training records") at 2e63da8."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_openai_key_value_blocks_and_lg_loss_scale() -> None:
    path = CORPUS / "guided_diffusion_50_nan_table" / "train.log"
    run = read_run(str(path))
    first = run.records[0]
    assert first.step == 153000 and math.isnan(first.loss or 0.0)
    assert first.loss_scale == 0.0  # 2 ** -16200: below the smallest float
    assert [r.skipped for r in run.records[1:]] == [True] * 5
    ids = {f.id for f in diagnose(str(path)).findings if f.severity != "info"}
    assert {"nonfinite-loss", "loss-scale-collapse", "fp16-overflow"} <= ids


def test_a_key_value_row_needs_the_whole_line(tmp_path: Path) -> None:
    """fairseq's ``| INFO | train_inner | epoch 001: ... loss=9.2`` is no ``| key | value |`` row."""
    log = tmp_path / "train.log"
    log.write_text(
        "".join(
            f"2020-07-17 07:11:02 | INFO | train_inner | epoch 001:   {s} / 9000 loss={9 - s / 1000:.3f}, "
            f"num_updates={s}, lr=2.8e-05, gnorm=3.2\n"
            for s in (100, 200, 300, 400)
        )
    )
    assert [r.step for r in read_run(str(log)).records] == [100, 200, 300, 400]


def test_yolov5_short_loss_columns_sum_to_the_loss() -> None:
    path = CORPUS / "yolov5_4963_nan" / "console.txt"
    run = read_run(str(path))
    assert len(run.records) == 1 and math.isnan(run.records[0].loss or 0.0)
    assert run.roles["box_loss"].startswith("loss term")
    assert "nonfinite-loss" in {f.id for f in diagnose(str(path)).findings}


def test_one_loss_term_alone_is_no_loss(tmp_path: Path) -> None:
    """A single ``*_loss`` term is not taken for the loss: still refused, naming it for --map."""
    log = tmp_path / "train.log"
    log.write_text("".join(f"steps: {i} box_loss: {0.5 - i / 10:.2f}\n" for i in range(4)))
    with pytest.raises(LogReadError, match="box_loss"):
        read_run(str(log))
