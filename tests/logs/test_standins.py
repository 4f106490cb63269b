"""logs.readers.standins: the loss of a log that prints none under that name (round 4 DEV logs).

OpenNMT-py prints ``acc``/``ppl``/``xent`` and no ``loss``; a Lua Torch seq2seq script prints
``PPL nan`` and ``Validation perplexity: nan``. At first sight both were read, the loss was
missing and the verdict was "no problems found" on runs whose loss had gone NaN.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from stabletrain.logs.read import read_run
from stabletrain.logs.readers import text

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"


def test_opennmt_xent_is_the_loss_when_no_loss_is_printed() -> None:
    run = read_run(CORPUS / "opennmt_1072_nan" / "train.log")
    train = {r.step: r for r in run.records if r.kind == "train"}
    assert train[5350].loss == 2.13 and train[5350].metrics["ppl"] == 8.43
    assert math.isnan(train[5650].loss)  # ``ppl:   nan; xent:  nan``
    assert run.roles["xent"].startswith("loss (stand-in")
    assert "train loss read from 'xent': the log prints no 'loss'" in run.notes


def test_a_perplexity_alone_gives_the_loss_as_its_log() -> None:
    run = read_run(CORPUS / "data2text_9_ppl_nan" / "train.log")
    assert all(math.isnan(r.loss) for r in run.records if r.kind == "train")
    evals = [r for r in run.records if r.kind == "eval"]
    assert len(evals) == 3 and all(math.isnan(r.eval_loss) for r in evals)
    data = text.parse_text("step 1 | ppl 20.0\nstep 2 | ppl 10.0\n", Path("x.log"))
    from stabletrain.logs.readers.standins import fill_standin_loss

    fill_standin_loss(data)
    assert [r.loss for r in data.raw] == pytest.approx([math.log(20.0), math.log(10.0)])


def test_a_printed_loss_wins_over_a_perplexity_or_a_cross_entropy() -> None:
    data = text.parse_text(
        "step 1 | loss 3.0 | ppl 20.0 | xent 2.9\nstep 2 | loss 2.5 | ppl 12.2 | xent 2.4\n",
        Path("x.log"),
    )
    from stabletrain.logs.readers.standins import fill_standin_loss

    fill_standin_loss(data)
    assert [r.loss for r in data.raw] == [3.0, 2.5] and not data.notes


def test_applied_holds_no_perplexity() -> None:
    # ``ppl`` inside a word (``self.applied_updates = 0`` in source code) is no perplexity: the
    # line stays prose, not a record
    assert text.parse_text("        self.applied_updates = 0\n", Path("g.py")).raw == []
