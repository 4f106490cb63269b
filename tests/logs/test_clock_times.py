"""A "time" column that holds Unix times is a clock, not a step time (logs/readers/text.py).
Real sample: PaddlePaddle/models#3005 (bench/doctor_corpus, round 7 dev), whose OCR script prints
``Time: 1564715520.4697154; Iter[1000]; Avg loss: 25.504``: read as a step time of 1.56e9 s."""

from __future__ import annotations

from pathlib import Path

from stabletrain.logs.read import read_run

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_unix_times_are_wall_clock_not_step_times() -> None:
    run = read_run(CORPUS / "paddle_models_3005_attention_nan" / "train.log")
    train = [r for r in run.records if r.kind == "train"]
    assert [r.step for r in train] == [1000, 2000, 3000, 4000, 5000]
    assert all(r.step_time is None for r in run.raw)
    clock = [round(r.wall_time) for r in run.raw if r.wall_time is not None]
    assert clock[:2] == [1564715520, 1564715635]
    assert run.roles["Time"].startswith("wall clock")


def test_durations_stay_step_times(tmp_path: Path) -> None:
    log = tmp_path / "train.log"
    log.write_text("".join(f"step {i} loss {2.0 - 0.1 * i:.2f} time 0.{i + 1}\n" for i in range(5)))
    assert [r.step_time for r in read_run(log).records] == [0.1, 0.2, 0.3, 0.4, 0.5]
