"""Names in prose lines: a running statistic of a quantity is that quantity (``avr_loss``), a
source location (``train_util.py:779``) and a lone function word (``Epoch 1 of 500``) are no
metrics (logs/readers/fields.py, dialects.py)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.fields import classify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("avr_loss", "loss"),
        ("running_loss", "loss"),
        ("smoothed_loss", "loss"),
        ("mean_acc", "accuracy"),
        ("average_precision", None),  # a metric of its own, not a running precision
        ("mean_lr", None),
    ],
)
def test_running_statistics(name: str, field: str | None) -> None:
    assert classify(name)[1] == field


def test_real_kohya_tqdm_avr_loss_nan_is_a_nonfinite_loss() -> None:
    # kohya-ss sd-scripts issue 2137: ``avr_loss=nan`` in every tqdm bar. At first sight the name
    # was an unknown metric, no loss was found and the verdict was "no problems found"
    log = FIXTURES / "kohya_tqdm_nan_2137" / "console.txt"
    run = read_run(log)
    assert run.roles.get("avr_loss") == "loss"
    assert not any(".py" in name for name in run.roles)  # ``train_util.py:779`` is a location
    train = [r for r in run.records if r.kind == "train"]
    assert train and all(r.loss is not None and math.isnan(r.loss) for r in train)
    [f] = [f for f in diagnose(log).findings if f.id == "nonfinite-loss"]
    assert f.severity == "error"


def test_a_lone_function_word_is_no_metric(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "".join(
            f"Epoch {e} of 500 took {490 + e}.1s\n  training loss:\t\t{2.4 - 0.1 * e:.4f}\n"
            for e in range(1, 7)
        )
    )
    run = read_run(log)
    assert "of" not in run.roles and run.roles.get("training loss") == "loss"
    assert run.roles.get("took") == "step_time"  # the epoch's duration
    assert [r.step_time for r in run.records if r.kind == "train"][:2] == [491.1, 492.1]
