"""A split label before the names it heads makes them eval values (logs/readers/plan.py):
SAM-Adapter's epoch line (bench/doctor_corpus, round 7 dev) prints
``epoch 170/200, train G: loss=1.0265, val: sm=0.6728, val: em=0.5950, ...``, whose validation
S-measure, E-measure, weighted F and MAE were read as train metrics (0 eval records)."""

from __future__ import annotations

from pathlib import Path

from stabletrain.logs.read import read_run

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_val_labelled_values_are_eval_values() -> None:
    run = read_run(CORPUS / "samadapter_126_late_clean" / "train.log")
    train = [r for r in run.records if r.kind == "train"]
    evals = [r for r in run.records if r.kind == "eval"]
    assert [r.loss for r in train] == [1.0265, 1.0286, 1.0231, 1.0275, 1.0238]
    assert len(evals) == 5 and evals[0].metrics["valid sm"] == 0.6728
    assert "sm" not in train[0].metrics


def test_a_phase_header_before_a_number_is_not_a_label(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text(
        "Train: 1 [ 350/5004 (  7%)]  Loss: 6.912 (6.921)  Time: 0.512s\n"
        "Train: 1 [ 400/5004 (  8%)]  Loss: 6.904 (6.919)  Time: 0.511s\n"
    )
    records = read_run(log).records
    assert [r.kind for r in records] == ["train", "train"]
    assert [r.loss for r in records] == [6.912, 6.904]
