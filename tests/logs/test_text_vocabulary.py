"""The text reader's general mechanisms on real excerpts from the doctor corpus's DEV half:
markdown emphasis pasted around numbers, a value on its own line continuing the record above,
the free-form loss/accuracy vocabulary, lines printed per batch under one epoch number, a
percent share of clipped updates and fairseq's loss-scale warnings."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.lines import strip_ansi
from stabletrain.records import StepRecord

FIXTURES = Path(__file__).parents[1] / "fixtures" / "logs"


def _log(name: str) -> Path:
    return FIXTURES / name / "log.txt"


def _train(data: RunData) -> list[StepRecord]:
    return [r for r in data.records if r.kind == "train"]


def test_markdown_bold_pasted_around_a_nan_is_removed() -> None:
    """mmcv 1.x ``acc: 92.77**39, loss_bbox: nan, loss: nan**`` (a user bolded the NaNs)."""
    assert strip_ansi("acc: 92.77**39, loss: nan**") == "acc: 92.7739, loss: nan"
    train = _train(read_run(_log("mmcv_markdown_nan_5911")))
    assert [r.step for r in train] == [50, 100, 150, 200]
    assert math.isnan(train[2].loss or 0.0) and train[2].accuracy == pytest.approx(0.927739)
    assert train[3].loss == 1.0595


def test_nan_loss_between_finite_ones_is_found() -> None:
    report = diagnose(_log("mmcv_markdown_nan_5911"))
    assert "nonfinite-loss" in {f.id for f in report.findings}


def test_a_value_on_its_own_line_continues_the_epoch_above() -> None:
    """TF1 script: ``Epoch: 0001 cost= 29.86`` then ``time this epoch= 1.749361``: ``cost`` is
    the loss, and the epoch time belongs to the epoch above (not an epoch number 1.749)."""
    data = read_run(_log("tf1_epoch_time_198"))
    train = _train(data)
    assert [r.step for r in train] == [1, 2, 3, 4, 5, 6]
    assert train[0].loss == 29.860479714 and train[0].step_time == 1.749361
    assert train[5].loss == 19.878952036 and train[5].step_time == 2.675142
    assert data.lines_understood == data.lines_total == 12
    assert data.roles["cost"] == "loss" and data.roles["time this epoch"] == "step_time"


def test_prose_after_a_record_does_not_continue_it(tmp_path: Path) -> None:
    """Keras' ``stopped after  19 epochs`` under the last epoch's line is no metric of it."""
    text = "Epoch 1/2\n225s - loss: 0.52 - acc: 0.85\nstopped after  19 epochs\n"
    path = tmp_path / "keras.txt"
    path.write_text(text)
    train = _train(read_run(path))
    assert len(train) == 1 and train[0].metrics == {}


def test_lines_per_batch_under_one_epoch_are_numbered_in_order() -> None:
    """WLASL: every line says ``Epoch 2`` with new values: batches, not eight copies of one
    epoch summary (no records silently replaced, no false duplicate-logging)."""
    data = read_run(_log("freeform_batches_wlasl_74"))
    train = _train(data)
    assert [r.step for r in train] == list(range(1, 9))
    assert [r.accuracy for r in train[:3]] == [0.0010, 0.0013, 0.0012]
    assert train[6].loss == 0.0043 and all(r.epoch == 2.0 for r in train)
    assert data.roles["Accu"] == "accuracy"
    assert "duplicate-logging" not in {
        f.id for f in diagnose(_log("freeform_batches_wlasl_74")).findings
    }


def test_clip_percent_is_the_share_of_updates_clipped() -> None:
    """fairseq 2018 ``clip=100%``: a fraction 1.0 under its own role, not a clip coefficient,
    kept as ``metrics["clip_fraction"]`` for the clipping detector."""
    data = read_run(_log("fairseq_clip_percent_301"))
    train = _train(data)
    assert [r.metrics["clip_fraction"] for r in train] == [1.0] * 4
    assert all(r.clip_coef is None for r in train) and train[0].grad_norm == 2.1427
    assert data.roles["clip"].startswith("clip_fraction")


def test_fairseq_overflow_warnings_lower_the_loss_scale() -> None:
    """fairseq 2019 ``| WARNING: overflow detected, setting loss scale to: 0.25``: each is a
    skipped step whose scale halves from the ``loss_scale 0.500`` of the summary above."""
    data = read_run(_log("fairseq_overflow_scale_512"))
    skips = [e for e in data.events if e["event"] == "skip"]
    assert len(skips) == 12
    assert skips[0]["data"]["attempted_scale"] == 0.5 and skips[0]["data"]["new_scale"] == 0.25
    assert skips[-1]["data"]["new_scale"] == pytest.approx(0.0001220703125)
    assert data.lines_understood == data.lines_total == 14
    ids = {f.id for f in diagnose(_log("fairseq_overflow_scale_512")).findings}
    assert ids & {"fp16-overflow", "loss-scale-collapse"}


def test_the_total_of_several_losses_is_the_loss(tmp_path: Path) -> None:
    """Several names that each read as a loss on one line: the total wins wherever it is
    printed, and the parts stay as metrics under their own names."""
    train = _train(read_run(_log("freeform_batches_wlasl_74")))
    assert train[0].loss == 0.0044 and train[0].metrics["Cls Loss"] == 0.0044
    path = tmp_path / "log.txt"
    path.write_text(
        "".join(f"Epoch {e} Total Loss: {e}.5 Loc Loss: 0.{e} Cls Loss: 0.0{e}\n" for e in (1, 2))
    )
    train = _train(read_run(path))
    assert [r.loss for r in train] == [1.5, 2.5]
    assert train[1].metrics == {"Loc Loss": 0.2, "Cls Loss": 0.02}
