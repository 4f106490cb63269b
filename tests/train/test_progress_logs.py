"""`stabletrain train` in a real pseudo-terminal: log lines print above the progress bar, never
glued to it (``0/23 0:00:00WARNING stabletrain.guard...``)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

from .helpers import CONFIGS

_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: carriage returns, erase-line and cursor-up applied."""
    lines: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        m = _CSI.match(raw, i)
        if m:
            arg, op = m.group(1), m.group(2)
            n = int(arg) if arg.isdigit() else 1
            if op == "A":
                row = max(0, row - n)
            elif op == "B":
                row += n
            elif op == "K":
                lines[row][col if arg in ("", "0") else 0 :] = (
                    [] if arg != "1" else lines[row][col:]
                )
            elif op == "G":
                col = n - 1
            i = m.end()
            while len(lines) <= row:
                lines.append([])
            continue
        ch = raw[i]
        i += 1
        if ch == "\r":
            col = 0
        elif ch == "\n":
            row, col = row + 1, 0
            while len(lines) <= row:
                lines.append([])
        elif ch == "\x1b":
            continue
        elif ch >= " ":
            line = lines[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return ["".join(x).rstrip() for x in lines]


def test_log_lines_are_not_glued_to_the_progress_bar(tmp_path: Path) -> None:
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 160, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES", "NO_COLOR")}
    cmd = [str(Path(sys.executable).parent / "stabletrain"), "train"]
    cmd += [str(CONFIGS / "unstable-digits.yaml"), "--run-dir", str(tmp_path / "run")]
    cmd += ["--set", "train.epochs=2", "--set", "run.tensorboard=false"]  # guard warns at step 30
    proc = subprocess.Popen(
        cmd, stdin=slave, stdout=slave, stderr=slave, env={**env, "TERM": "xterm"}
    )
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    assert proc.wait(timeout=120) == 0
    raw = b"".join(chunks).decode("utf-8", "replace")
    shown = screen(raw)
    logs = [ln for ln in shown if "stabletrain.guard" in ln]
    assert any("step 30 skipped" in ln for ln in logs), "\n".join(shown)
    glued = [ln for ln in logs if not re.match(r"\s*(DEBUG|INFO|WARNING|ERROR)\b", ln)]
    assert glued == [], "\n".join(shown)
    assert any(ln.startswith("status completed") for ln in shown)
