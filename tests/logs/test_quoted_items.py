"""Quoted ``'name': 'number'`` items outside a dict (PaddleDetection 1.x), ``iterations`` as a
step name, and ``[valid]`` sections inside a line (logs/readers/lines.py, dialects.py, plan.py)."""

from __future__ import annotations

from pathlib import Path

from stabletrain.logs.read import read_run
from stabletrain.logs.readers.lines import unquote_items

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def test_unquote_items() -> None:
    assert (
        unquote_items("iter: 620, 'loss': '1.024392', eta: 8:56")
        == "iter: 620, loss: 1.024392, eta: 8:56"
    )
    assert unquote_items('"acc": 0.5 "name": "resnet"') == 'acc: 0.5 "name": "resnet"'
    dict_line = "{'loss': '1.0', 'lr': 0.1}"
    assert unquote_items(dict_line) == dict_line  # dicts are read by dict_items


def test_real_paddle_quoted_losses_are_read() -> None:
    # PaddleDetection issue 1946: before, the losses were skipped (a quoted name is no item) and
    # the report held lr, batch_cost and ips only — a verdict on a log without its loss
    run = read_run(FIXTURES / "paddle_quoted_1946" / "log.txt")
    train = [r for r in run.records if r.kind == "train"]
    assert [r.step for r in train] == [620, 640, 660, 680, 700, 720, 740]
    assert train[0].loss == 1.024392 and train[-1].loss == 1.377799
    assert train[0].metrics["loss_cls"] == 0.539213 and run.roles["loss"] == "loss"
    assert train[0].step_time == 0.32392  # PaddlePaddle's batch_cost: seconds per batch


def test_real_espnet_iterations_are_the_step() -> None:
    run = read_run(FIXTURES / "espnet_iterations_3370" / "log.txt")
    train = [r for r in run.records if r.kind == "train"]
    assert [r.step for r in train] == [57, 58, 59, 60, 61, 62]
    assert train[0].loss == 616.408 and train[0].accuracy == 0.44


def test_real_espnet2_valid_section_is_eval() -> None:
    # ESPnet issue 2674: the epoch summary holds a ``[train]`` and a ``[valid]`` section; before,
    # the valid loss=1.854 was a second train loss on the same line
    run = read_run(FIXTURES / "espnet2_sections_2674" / "log.txt")
    evals = [r for r in run.records if r.kind == "eval"]
    assert [r.eval_loss for r in evals] == [1.854]
    train = [r for r in run.records if r.kind == "train"]
    assert 1.854 not in [r.loss for r in train] and train[0].loss == 1.601
