"""JSON lines with one line per epoch and no step key take their epochs as steps (logs/readers/
jsonl.py), so a second run appended to the file shows as the counter going back. Real sample:
the DETR fork's ``log.txt`` (bench/doctor_corpus, round 6, development data since session 6),
epochs 0-9 then 0-50 in one file, which line numbers read as one run of 61 steps."""

from __future__ import annotations

import json
from pathlib import Path

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_detr_two_runs_in_one_log_are_a_restart() -> None:
    path = CORPUS / "detr_dcmha_restart" / "log.txt"
    run = read_run(path)
    train = [r.step for r in run.raw if r.kind == "train"]
    assert train[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    restart = [f for f in diagnose(path).findings if f.id == "run-restart"]
    assert len(restart) == 1 and restart[0].severity == "warning"


def test_one_line_per_epoch_takes_the_epochs_as_steps() -> None:
    # P2T's DeiT log (round 1 held-out, development data since session 4): epochs 0..N, one a line
    path = CORPUS / "p2t_13_deit_json_clean" / "log.txt"
    epochs = [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.strip()]
    run = read_run(path)
    assert sorted({r.step for r in run.records}) == sorted(set(epochs))
    assert not [f for f in diagnose(path).findings if f.severity in ("warning", "error")]


def test_several_lines_per_epoch_keep_their_line_numbers(tmp_path: Path) -> None:
    rows = [{"epoch": e // 2, "loss": 2.0 - 0.1 * e} for e in range(8)]  # two lines an epoch
    fractional = [{"epoch": 0.25 * i, "loss": 2.0 - 0.1 * i} for i in range(8)]  # HF's epochs
    for name, data in (("two.jsonl", rows), ("hf.jsonl", fractional)):
        path = tmp_path / name
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
        assert [r.step for r in read_run(path).records] == list(range(8))
