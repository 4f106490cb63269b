"""``too-few-steps`` needs the steps to be optimizer steps: an ultralytics ``results.csv`` logs one
row per epoch, its step *is* the epoch, and 10 rows say nothing of how many updates ran. The
healthy YOLOv5 run of the doctor corpus (round 1, held-out) was told it stopped after 10
optimizer steps."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_one_row_per_epoch_is_not_a_short_run() -> None:
    report = diagnose(CORPUS / "yolov5_river_reading" / "results.csv")
    assert len([r for r in report.records if r.kind == "train"]) == 10
    assert "too-few-steps" not in {f.id for f in report.findings}
    assert report.problems == []
