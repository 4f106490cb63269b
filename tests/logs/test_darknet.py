"""darknet's iteration line, whose values come before their names (logs/readers/lines.py)."""

from __future__ import annotations

import math
from pathlib import Path

from stabletrain.logs.read import read_run
from stabletrain.logs.readers.lines import normalise

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def test_real_darknet_line_under_pm2_prefix() -> None:
    # pjreddie/darknet issue 715; before, "no training records found"; the Region lines (their
    # -nan is the IOU of a layer with no object, count: 0) make no record
    run = read_run(FIXTURES / "darknet_pm2_715" / "log.txt")
    [r] = run.records
    assert (r.step, r.loss, r.lr, r.step_time) == (10313, 0.576849, 0.002, 3.992994)
    assert r.metrics["loss_avg"] == 0.677636 and not any(math.isnan(v) for v in r.metrics.values())


def test_alexeyab_variants() -> None:
    # AlexeyAB/darknet issue 7090 ("avg loss", "hours left") and issue 1020 (a leading space)
    line = " 11524: 47.876884, 48.406509 avg loss, 0.005220 rate, 21.247497 seconds, 1475072 images, 978.731018 hours left"
    s, _ = normalise(line)
    assert s.startswith("iteration: 11524 loss: 47.876884 loss_avg: 48.406509 lr: 0.005220")
    s, _ = normalise(
        " 2: 519.797913, 519.720886 avg loss, 0.000000 rate, 2.054143 seconds, 128 images"
    )
    assert "iteration: 2 loss: 519.797913" in s and "time: 2.054143s" in s
    prose = "we average 3 runs: 0.5, 0.6 avg, 0.1 rate, as said"  # no darknet line
    assert normalise(prose)[0] == prose
