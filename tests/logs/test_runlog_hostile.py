"""A damaged or hostile stabletrain run log is data with notes, never a crash (issue 12, items 3-4).

The inputs are the shapes the fuzzer (bench/fuzz.py) found crashing the run-log reader: a step of
Infinity/NaN, a 400-digit integer loss, a line nested 1,000 deep.
"""

from __future__ import annotations

import math
from pathlib import Path

from stabletrain.logs.read import read_run

GOOD = '{"step": %d, "loss": %s, "lr": 0.001}\n'


def _write(tmp_path: Path, *odd: str) -> Path:
    p = tmp_path / "steps.jsonl"
    lines = [GOOD % (i, 2.0 - i / 100) for i in range(20)]
    lines[5:5] = list(odd)
    p.write_text("".join(lines))
    return p


def test_non_finite_steps_are_skipped_with_a_note(tmp_path: Path) -> None:
    p = _write(tmp_path, '{"step": Infinity, "loss": 1.0}\n', '{"step": NaN, "loss": 1.0}\n')
    data = read_run(p)
    assert [r.step for r in data.train] == list(range(20))
    assert any("not an integer" in n for n in data.notes), data.notes


def test_a_400_digit_loss_is_inf_data(tmp_path: Path) -> None:
    p = _write(tmp_path, '{"step": 100, "loss": %s}\n' % ("9" * 400))
    data = read_run(p)
    (odd,) = [r for r in data.raw if r.step == 100]
    assert odd.loss is not None and math.isinf(odd.loss)


def test_a_line_nested_1000_deep_is_skipped(tmp_path: Path) -> None:
    p = _write(tmp_path, "[" * 1000 + "]" * 1000 + "\n")
    data = read_run(p)
    assert len(data.train) == 20
    assert any("unreadable line" in n for n in data.notes), data.notes
