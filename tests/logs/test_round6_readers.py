"""Round-6 dev logs the readers misread at first sight (bench/doctor_corpus, 2e63da8): PaddleOCR's
fill-padded non-finite values and a multi-node launcher's IPv4 prefix."""

from __future__ import annotations

import math
from pathlib import Path

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.lines import normalise

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_paddleocr_nanxxx_is_a_nan_loss() -> None:
    """PaddleOCR prints every value with ``{:x<6f}``: NaN comes out as ``nanxxx``. The loss was
    dropped (the report said 100% understood, no problem); it is a NaN loss."""
    path = CORPUS / "paddleocr_7057_nanxxx" / "train.log"
    run = read_run(str(path))
    assert [r.step for r in run.records] == [540, 550, 560, 570]
    assert all(r.loss is not None and math.isnan(r.loss) for r in run.records)
    assert "nonfinite-loss" in {f.id for f in diagnose(str(path)).findings}


def test_padding_is_only_stripped_from_a_whole_word() -> None:
    assert normalise("loss: nanxxx, acc: 0.5")[0] == "loss: nan, acc: 0.5"
    assert normalise("loss: -infxxx")[0] == "loss: -inf"
    # a name that starts with the letters is left alone
    assert normalise("nanxx_count: 3 infxy: 2")[0] == "nanxx_count: 3 infxy: 2"


def test_node_prefixed_copies_are_one_record_per_step() -> None:
    """LLaMA-Factory#813: four nodes print each HF dict behind their IPv4 address, no step in the
    dict. Each copy was counted as the next step (16 steps, no duplicate found); the copies now
    share a step and the duplicate-logging detector sees them."""
    path = CORPUS / "llamafactory_813_rank_dup" / "console.txt"
    report = diagnose(str(path))
    assert [r.loss for r in report.records] == [1.8673, 0.7744, 0.6309, 0.5621]
    dup = next(f for f in report.findings if f.id == "duplicate-logging")
    assert dup.evidence["typical_copies"] == 4
    assert normalise("10.96.202.43: {'loss': 1.0}") == ("{'loss': 1.0}", 174115371)


def test_node_prefixed_distinct_records_keep_their_own_steps(tmp_path: Path) -> None:
    """Two nodes, each record printed once by one of them (values differ): no step is shared."""
    text = "".join(
        f"10.0.0.{1 + i % 2}: {{'loss': {2.0 - 0.1 * i:.4f}, 'learning_rate': 1e-05, 'epoch': {i / 100}}}\n"
        for i in range(6)
    )
    p = tmp_path / "console.txt"
    p.write_text(text)
    run = read_run(str(p))
    assert [r.step for r in run.records] == [1, 2, 3, 4, 5, 6]
