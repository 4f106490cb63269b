"""The doctor's text report piped to a file or another program: whole lines, no padding."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

FIXTURE = Path(__file__).parents[1] / "fixtures" / "logs" / "keras_nan_handson_398" / "log.txt"


def test_piped_report_is_not_wrapped_padded_or_split_mid_path(tmp_path: Path) -> None:
    deep = tmp_path / ("a_very_long_directory_name_" * 3) / ("another_long_segment_" * 3)
    deep.mkdir(parents=True)
    log = deep / "training_output_log.txt"
    shutil.copy(FIXTURE, log)
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "stabletrain"), "doctor", str(log)],
        capture_output=True,  # stdout is a pipe, not a terminal
        text=True,
        env={**os.environ, "COLUMNS": "80"},
        timeout=60,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines, proc.stderr
    assert [ln for ln in lines if ln != ln.rstrip()] == []
    # the path is printed whole, on one line
    assert any(str(log) in ln for ln in lines), proc.stdout
    # an explanation is one line, not hard-wrapped at the 80 columns a pipe used to get
    assert max(len(ln) for ln in lines) > 120
    assert "\x1b[" not in proc.stdout  # no colour codes in a pipe
