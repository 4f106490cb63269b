"""Percent strings are the fractions they write, and a clip-named key whose values carry ``%``
is the share of clipped updates (fairseq ``--log-format json``: ``"clip": "100%"``); a clip key
without ``%`` keeps its own name, since a threshold is no share (logs/readers/fields.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.fields import classify, to_float
from stabletrain.logs.readers.table import parse_number

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


@pytest.mark.parametrize(
    ("text", "value"),
    [("100%", 1.0), ("12.5%", 0.125), (" 0% ", 0.0), ("%", None), ("abc%", None), ("1e2%", 1.0)],
)
def test_percent_strings(text: str, value: float | None) -> None:
    assert to_float(text) == value
    assert parse_number(text) == value


def test_share_names_by_name_alone() -> None:
    assert classify("clip_fraction")[2] == "clip_fraction"
    assert classify("clipfrac")[2] == "clip_fraction"
    assert classify("clip") == ("train", None, "clip")  # by name alone: maybe a threshold


def test_real_fairseq_json_clip_percent_is_the_clip_share() -> None:
    # fairseq issue 233 (--log-format json): "clip": "100%" on every epoch line. At first sight
    # the value was dropped (a percent string was no number); now it is the clip share, and three
    # epochs are too few for more than a note
    log = FIXTURES / "fairseq_json_clip_233" / "train.log"
    train = [r for r in read_run(log).records if r.kind == "train"]
    assert [r.metrics.get("clip_fraction") for r in train] == [1.0, 1.0, 1.0]
    [f] = [f for f in diagnose(log).findings if f.id == "clip-saturated"]
    assert f.severity == "info" and f.evidence["logged_clip_fraction_late"] == 1.0


def test_a_clip_threshold_without_percent_is_no_share(tmp_path: Path) -> None:
    log = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 3.0 - 0.01 * s, "clip": 1.0} for s in range(1, 41)]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = [r for r in read_run(log).records if r.kind == "train"]
    assert all("clip_fraction" not in r.metrics and r.metrics["clip"] == 1.0 for r in train)
    assert "clip-saturated" not in {f.id for f in diagnose(log).findings}
