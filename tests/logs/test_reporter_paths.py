"""Metric names that are reporter paths (Chainer's ``main/loss``, ``validation/main/accuracy``):
the last segment names the metric, another segment may name the eval split (logs/readers/fields)."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.fields import classify

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.mark.parametrize(
    ("name", "kind", "field"),
    [
        ("main/loss", "train", "loss"),
        ("main/accuracy", "train", "accuracy"),
        ("validation/main/loss", "eval", "eval_loss"),
        ("validation/main/accuracy", "eval", "eval_accuracy"),
        ("metrics/val/acc", "eval", "eval_accuracy"),
        ("loss/aux", "train", None),  # a leaf the table does not know stays a metric
        ("encoder/layer3", "train", None),
        ("main/epoch", "train", None),  # an epoch under a path is no epoch counter
        ("lr-AdamW/pg2", "train", None),  # Lightning's second param group is not the LR
    ],
)
def test_path_names(name: str, kind: str, field: str | None) -> None:
    assert classify(name)[:2] == (kind, field)


def test_real_chainer_printreport_table_is_read_and_at_chance() -> None:
    # chainer issue 4424: at first sight "no column is a loss or metric stabletrain knows" (exit 2)
    log = FIXTURES / "chainer_printreport_4424" / "log.txt"
    run = read_run(log)
    train = [r for r in run.records if r.kind == "train"]
    evals = [r for r in run.records if r.kind == "eval"]
    assert len(train) == 10 and len(evals) == 10
    assert train[0].loss == pytest.approx(2.46634) and train[-1].accuracy == pytest.approx(0.099992)
    assert evals[-1].eval_loss == pytest.approx(2.30259)
    [f] = [f for f in diagnose(log).findings if f.id == "chance-level"]
    assert f.severity == "error" and f.evidence["num_classes"] == 10
