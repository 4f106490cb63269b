"""A spike judged against the log's only earlier value (detectors/spikes.py ``sole_jump``): no
spread at all, so only a jump 10^4x that value, and a unit in absolute terms, is decided. Real
sample: mmengine#11708 (an r1 held-out log, development data from session 4), a two-line paste."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.registry import replay
from stabletrain.detectors.spikes import SpikeDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

MMENGINE_11708 = (
    "2024/05/10 15:46:31 - mmengine - INFO - Epoch(train)  [2][ 50/788]  lr: 2.0000e-03  "
    "eta: 4:14:00  time: 0.8167  data_time: 0.0169  memory: 15943  grad_norm: 3.4572  "
    "loss: 1.5043  loss_cls: 0.8781  loss_bbox: 0.6262\n"
    "2024/05/10 15:47:12 - mmengine - INFO - Epoch(train)  [2][100/788]  lr: 2.0000e-03  "
    "eta: 4:12:59  time: 0.8248  data_time: 0.0158  memory: 15871  grad_norm: 31101415.5974  "
    "loss: 63.1261  loss_cls: 61.5992  loss_bbox: 1.5268\n"
)


def test_real_two_line_paste_grad_norm_jump(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(MMENGINE_11708)
    [f] = [f for f in diagnose(log).findings if f.id == "grad-spike"]
    assert f.severity == "warning"
    assert "only earlier value" in f.explanation


def _grads(values: list[float]) -> list[StepRecord]:
    return [StepRecord(step=10 * i, loss=2.0, grad_norm=v) for i, v in enumerate(values)]


def test_near_miss_jumps_one_value_cannot_judge() -> None:
    # 500x (a first step's gradient burst is of this order), and 10^4x but under one unit
    for values in ([0.2, 100.0], [1e-6, 0.5]):
        found = replay(_grads(values), None, [SpikeDetector("grad_norm")])
        assert [f for f in found if f.severity != "info"] == [], values
