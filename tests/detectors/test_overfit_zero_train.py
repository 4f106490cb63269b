"""An overfitting log whose training loss reaches exactly 0 (a log that prints '0.000000', or
a value below the float range such as 1e-400) has no eval/train ratio. The doctor reported an
internal ZeroDivisionError on it (found by bench/fuzz.py on a mutated lasagne console log);
now it names the overfitting and records the ratio as unknown."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.cli import main


def test_a_training_loss_of_zero_is_data_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ev = [2.0, 1.5, 1.2, 1.1, 1.15, 1.3, 1.5, 1.8, 2.1, 2.5]
    tr = [2.2, 1.6, 1.1, 0.7, 0.4, 0.0, 0.0, 0.0, 0.0, 1e-400]
    lines = ["Starting training..."]
    for i, (e, t) in enumerate(zip(ev, tr, strict=True), 1):
        lines += [f"Epoch {i} of 10 took 5.0s", f"  training loss:\t\t{t:g}",
                  f"  validation loss:\t\t{e:.6f}"]  # fmt: skip
    log = tmp_path / "console.txt"
    log.write_text("\n".join(lines) + "\n")
    assert main(["doctor", str(log), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    (f,) = [f for f in report["findings"] if f["id"] == "overfitting"]
    assert f["evidence"]["eval_train_ratio_since_best"] is None
