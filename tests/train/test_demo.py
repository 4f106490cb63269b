"""`stabletrain demo` end to end: what `make demo` runs and the README promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.cli import main


@pytest.mark.slow
def test_demo_trains_rescues_and_diagnoses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--no-progress", "--run-dir", str(tmp_path)]) == 0
    out = capsys.readouterr().out

    digits = json.loads((tmp_path / "digits-cnn" / "summary.json").read_text())
    assert digits["final_accuracy"] > 0.90
    assert (tmp_path / "digits-cnn" / "training_history.png").stat().st_size > 0

    # the same unstable config: without the guard it collapses to chance, with it it trains
    off = json.loads((tmp_path / "unstable-digits-guard-off" / "summary.json").read_text())
    on = json.loads((tmp_path / "unstable-digits-guard-default" / "summary.json").read_text())
    assert off["final_accuracy"] < 0.2
    assert on["final_accuracy"] > 0.85 and on["skipped_steps"] > 0

    # the doctor's verdict closes the demo: the clean run is clean, the unguarded one is not
    assert f"stabletrain doctor {tmp_path / 'digits-cnn'}  ->  no findings" in out
    assert "nonfinite-loss" in out and "chance-level" in out
    # issue 13: the guard-off run's cause is the injected bad batch (step 30), named first
    off_report = out.split(f"stabletrain doctor {tmp_path / 'unstable-digits-guard-off'}")[1]
    first = off_report.splitlines()[1].split()
    assert first[1] == "bad-batch" and "step 30" in off_report.splitlines()[1], off_report
