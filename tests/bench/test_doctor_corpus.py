"""The doctor reads every log of the real-log corpus (bench/doctor_corpus, issue 11).

Reading only: whether the doctor *finds* the labelled problems is measured by
bench/doctor_corpus.py, not asserted here. What is asserted for every one of the 110 logs:

- no crash: diagnose() returns a report or raises the doctor's own LogReadError, whose message
  names the file (the CLI turns it into exit 2 with that one line);
- no silent pass: a report is never built on zero records;
- read: the report holds records. The logs in NOT_YET_READ still get an honest LogReadError
  (xfail with raises=LogReadError: a crash or a silent zero-record report there still fails);
  once the doctor reads one, it shows as XPASS and leaves the list.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import stabletrain
from stabletrain.errors import LogReadError

CORPUS = Path(__file__).resolve().parents[2] / "bench" / "doctor_corpus"
LOGS = yaml.safe_load((CORPUS / "labels.yaml").read_text())["logs"]

# Logs the doctor may still refuse (exit 2); every other log must be read. At 2026-12-07 15:14
# UTC the working tree read all 48 (the session-start code 20); the reader change that reads this
# one was not committed yet.
# Round 3 (26 logs added 18:15 UTC): at first sight the session-start code and the working tree
# refused four with a clear LogReadError (exit 2); the list shrinks as the readers learn them
# (chainer_4424_cifar_chance: reporter-path names, fields.py).
# Round 4 (24 logs added 20:30 UTC): the session-start code refused three; the DEV one
# (insightface_2262_scale0_nan: ``Loss nan   LearningRate``) is read since the column-gap rule,
# and matconvnet_207_clean since its ``objective`` reads as the loss (logs.readers.standins).
# The two round-4 held-out logs below were refused at first sight and are left to the untouched
# held-out measure: they stay here until a run of the whole corpus reads them.
# Session 4, second part: r1 and r3 held-out became development data (22:00 UTC); apex_318
# (apex's overflow lines, dialects.py) and lightning_aiops_mnist_clean (Lightning's ``_epoch``
# suffix, fields.py) are read since and left the list.
# Session 5: r4 held-out became development data; guided_diffusion_50_nan_table (OpenAI's
# key/value blocks, text.py) and yolov5_4963_nan (YOLOv5's ``box obj cls`` columns summed,
# standins.py) are read since and left the list.
NOT_YET_READ: dict[str, str] = {}


def test_corpus_is_whole() -> None:
    """48 logs (round 1) + 26 (round 3) + 24 (round 4) + 12 (round 5, all held-out) + 15 (round 6,
    8 dev / 7 held-out), each file
    present with its SOURCE.txt, the split and the healthy share as labelled."""
    assert {c["name"] for c in LOGS} == {p.name for p in CORPUS.iterdir() if p.is_dir()}
    for c in LOGS:
        assert (CORPUS / c["file"]).is_file(), c["file"]
        assert "URL:" in (CORPUS / c["name"] / "SOURCE.txt").read_text()
    first = [c for c in LOGS if c.get("round", 1) == 1]
    assert len(first) == 48
    assert sum(c["split"] == "dev" for c in first) == 24
    assert sum(bool(c["healthy"]) for c in first) >= 12
    assert len({c["dialect"] for c in first}) >= 15
    third = [c for c in LOGS if c.get("round") == 3]
    assert len(third) == 26
    assert sum(c["split"] == "dev" for c in third) == 13
    assert sum(bool(c["healthy"]) for c in third) >= 6
    assert len({c["dialect"] for c in third}) >= 8
    fourth = [c for c in LOGS if c.get("round") == 4]
    assert len(fourth) == 24
    assert sum(c["split"] == "dev" for c in fourth) == 12
    assert sum(bool(c["healthy"]) for c in fourth) >= 6
    assert len({c["dialect"] for c in fourth}) >= 15
    fifth = [c for c in LOGS if c.get("round") == 5]
    assert len(fifth) == 12
    assert all(c["split"] == "heldout" for c in fifth)
    assert sum(bool(c["healthy"]) for c in fifth) >= 4
    sixth = [c for c in LOGS if c.get("round") == 6]
    assert len(sixth) == 15
    assert sum(c["split"] == "dev" for c in sixth) == 8
    assert sum(bool(c["healthy"]) for c in sixth) >= 5
    assert len({c["dialect"] for c in sixth}) >= 8


def _cases() -> list[object]:
    out: list[object] = []
    for c in LOGS:
        marks = (
            [pytest.mark.xfail(raises=LogReadError, reason=NOT_YET_READ[c["name"]], strict=False)]
            if c["name"] in NOT_YET_READ
            else []
        )
        out.append(pytest.param(c["file"], id=c["name"], marks=marks))
    return out


@pytest.mark.parametrize("file", _cases())
def test_corpus_log_is_read(file: str) -> None:
    path = CORPUS / file
    try:
        report = stabletrain.diagnose(str(path))
    except LogReadError as e:
        assert path.name in str(e), f"the error does not name the file: {e}"
        raise
    assert report.records, f"{file}: report built on zero records (a silent pass)"
