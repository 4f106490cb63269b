"""The step rule of ``loss-spike`` (detectors/levelshift.py) on the real sample it was built for:
CF-ViT's DeiT ``log.txt`` (bench/doctor_corpus, round 6, development data since session 6), one
line per epoch, whose train loss goes 4.503 -> 5.313 at epoch 201 (test accuracy 77.6 % -> 54.1 %)
while its rolling median is 4.52: 1.18x, under the spike rule's 1.3x."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from stabletrain.detectors.base import feed
from stabletrain.detectors.levelshift import LossStepDetector, judge
from stabletrain.detectors.registry import replay
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"
CFVIT = CORPUS / "cfvit_epoch201_jump" / "log.txt"


def _cfvit() -> tuple[np.ndarray, np.ndarray]:
    rows = [json.loads(line) for line in CFVIT.read_text().splitlines()]
    return np.array([r["train_loss"] for r in rows]), np.array([r["train_lr"] for r in rows])


def _records(loss: np.ndarray, lr: np.ndarray) -> list[StepRecord]:
    return [
        StepRecord(step=i, epoch=float(i), loss=float(v), lr=float(r))
        for i, (v, r) in enumerate(zip(loss, lr, strict=True))
    ]


def test_cfvit_epoch_201_is_a_step_up_that_stayed() -> None:
    report = diagnose(CFVIT)
    spike = [f for f in report.findings if f.id == "loss-spike"]
    assert len(spike) == 1 and spike[0].severity == "warning"
    assert spike[0].steps == [201]
    assert spike[0].evidence["worst_before"] < 4.51 < 5.31 < spike[0].evidence["worst_value"]


def test_the_same_log_without_the_break_is_quiet() -> None:
    loss, lr = _cfvit()
    healed = loss.copy()
    healed[201:] -= loss[201] - loss[200]  # the rest of the run, shifted down to where it was
    assert not [f for f in replay(_records(healed, lr)) if f.id == "loss-spike"]


def test_a_one_epoch_blip_and_a_warm_restart_are_not_steps() -> None:
    loss, lr = _cfvit()
    blip = loss.copy()
    blip[202:] = loss[200] - 0.001 * np.arange(1, loss.size - 201)  # back at once: one bad epoch
    assert not [f for f in replay(_records(blip, lr)) if f.id == "loss-spike"]
    restart = lr.copy()
    restart[201:] = lr[200] * 3  # the LR jumped with the loss: the schedule's doing
    assert judge(loss, restart, np.arange(loss.size, dtype=float), 201) is None
    assert judge(loss, lr, np.arange(loss.size, dtype=float), 201) is not None


def test_running_means_that_restart_with_each_epoch_are_not_steps() -> None:
    # two records per epoch: the first of epoch 201 is a running mean's restart, not a break
    loss, lr = _cfvit()
    eps = np.repeat(np.arange(loss.size // 2, dtype=float), 2)[: loss.size]
    eps[201] = eps[200] + 1
    eps[199] = eps[200]
    assert judge(loss, lr, eps, 201) is None


def test_bulk_and_per_record_paths_agree_on_the_sample() -> None:
    loss, lr = _cfvit()
    records = _records(loss, lr)
    one, many = LossStepDetector(), LossStepDetector()
    for r in records:
        one.update(r)
    feed(many, records[:150])
    feed(many, records[150:])
    assert json.dumps(one.state_dict()) == json.dumps(many.state_dict())
    assert [f.to_json() for f in one.finish()] == [f.to_json() for f in many.finish()]
