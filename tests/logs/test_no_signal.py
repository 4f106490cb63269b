"""No verdict on a text log whose training signal was not found (logs/readers/text.py): records
holding only an LR or a step time beside names the tables do not know exit 2 with those names,
instead of "no problems found" judged on the LR alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.doctor import diagnose
from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run


def _log(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "train.log"
    p.write_text(text)
    return p


def test_lr_and_an_unknown_name_is_no_verdict(tmp_path: Path) -> None:
    # the shape kohya's ``avr_loss=nan`` had at first sight (read: step_time; not known: avr_loss)
    log = _log(
        tmp_path, "".join(f"iter {i} lr 0.1 objective {2.3 - 0.1 * i}\n" for i in range(1, 6))
    )
    with pytest.raises(LogReadError, match=r"names not known: objective; --map loss=objective"):
        diagnose(log)
    run = read_run(log, mapping={"loss": "objective"})
    assert [round(r.loss, 6) for r in run.records][:2] == [2.2, 2.1]


def test_a_known_signal_or_nothing_unknown_is_read_as_before(tmp_path: Path) -> None:
    with_loss = _log(
        tmp_path, "".join(f"iter {i} lr 0.1 loss {2.3 - 0.1 * i}\n" for i in range(1, 6))
    )
    assert len(read_run(with_loss).records) == 5
    lr_only = tmp_path / "lr.log"
    lr_only.write_text("".join(f"iter {i} lr {0.1 * i}\n" for i in range(1, 6)))
    assert len(read_run(lr_only).records) == 5  # nothing unknown to name: as before
