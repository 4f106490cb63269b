"""Training histories printed as per-epoch lists (logs/readers/series.py): Keras'
``print(history.history)`` and MATLAB struct displays."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def test_keras_history_dict_wrapped_over_lines(tmp_path: Path) -> None:
    log = tmp_path / "history.txt"
    log.write_text(
        "{'loss': [0.6931, 0.5512, 0.4410, 0.3822, 0.3351], 'accuracy': [0.51, 0.72, 0.80, "
        "0.84, 0.86],\n 'val_loss': [0.6012, 0.5023, 0.4520, 0.4410, 0.4390], 'val_accuracy': "
        "[0.66, 0.75, 0.79, 0.80, 0.81]}\n"
    )
    run = read_run(log)
    train = [r for r in run.records if r.kind == "train"]
    evals = [r for r in run.records if r.kind == "eval"]
    assert [r.loss for r in train] == [0.6931, 0.5512, 0.4410, 0.3822, 0.3351]
    assert [r.eval_accuracy for r in evals] == [0.66, 0.75, 0.79, 0.80, 0.81]
    assert [r.epoch for r in evals] == [1, 2, 3, 4, 5] and run.dialect == "series-dump"
    assert not [f for f in diagnose(log).findings if f.severity in ("warning", "error")]


def test_real_matconvnet_display_reads_its_objective_as_the_loss() -> None:
    # MatConvNet issue 207: ``objective: [1.5653 1.1478 ...]`` under ``info.train =`` and
    # ``info.val =``. At first sight: "no training records found"; then exit 2 asking for
    # ``--map loss=objective``. The objective is the loss by another name (logs.readers.standins):
    # read without a map, said in the notes and the roles; a map still wins
    log = FIXTURES / "matconvnet_info_207" / "info.txt"
    for run in (
        read_run(log),
        read_run(log, mapping={"loss": "objective", "eval_loss": "val_objective"}),
    ):
        train = [r for r in run.records if r.kind == "train"]
        evals = [r for r in run.records if r.kind == "eval"]
        assert len(train) == 20 and train[0].loss == 1.5653 and train[-1].loss == 0.3432
        assert len(evals) == 20 and evals[-1].eval_loss == 0.7291
        assert train[0].metrics["topFiveError"] == 0.1101  # ``speed: [1x20 double]``: no series
    plain = read_run(log)
    assert "train loss read from 'objective': the log prints no 'loss'" in plain.notes
    assert plain.roles["objective"].startswith("loss (stand-in")
