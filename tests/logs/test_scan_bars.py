"""A dataset scan's progress bar is no per-step training line (logs/readers/text.py). Real sample:
ultralytics#1149 (bench/doctor_corpus, round 7 held-out, development data after its one untouched
run): YOLOv8's ``train: Scanning ... 4 images, 0 backgrounds, 0 corrupt: 100%|...| 4/4`` made
the log look per-step, so its one epoch row (every loss column ``nan``) was set aside as an
epoch summary and the log was refused (exit 2, "no column is a loss")."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_yolov8_epoch_row_after_the_dataset_scan_is_read() -> None:
    report = diagnose(CORPUS / "ultralytics_1149_all_nan" / "console.txt")
    train = [r for r in report.records if r.kind == "train"]
    assert [r.step for r in train] == [1]
    nonfinite = [f for f in report.findings if f.id == "nonfinite-loss"]
    assert len(nonfinite) == 1 and nonfinite[0].severity == "error"


def test_per_step_loss_lines_still_set_epoch_summaries_aside(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    lines = [f"Epoch 1 [{i}/4] loss: {2.0 - 0.1 * i:.2f}" for i in range(1, 5)]
    log.write_text("\n".join([*lines, "Epoch 1 summary: loss 1.75"]) + "\n")
    report = diagnose(log)
    assert [r.loss for r in report.records if r.kind == "train"] == [1.9, 1.8, 1.7, 1.6]
