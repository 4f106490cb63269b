"""Hostile config files (issue 12, items 3-4): each is one line naming the file and exit 2, or a
finding — fast, in bounded memory, never a traceback, never a hang."""

from __future__ import annotations

import os
import resource
import threading
import time
from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.errors import ExitCode

BOMB = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
    f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
)


def _deep_yaml(n: int) -> str:
    return "".join("  " * i + f"k{i}:\n" for i in range(n)) + "  " * n + "lr: 0.1\n"


CASES = {
    "deep.yaml": lambda p: p.write_text(_deep_yaml(1000), encoding="utf-8"),
    "deep-flow.yaml": lambda p: p.write_text("lr: " + "[" * 1000 + "]" * 1000, encoding="utf-8"),
    "deep.json": lambda p: p.write_text('{"a": ' * 1000 + "1" + "}" * 1000, encoding="utf-8"),
    "bomb.yaml": lambda p: p.write_text(BOMB, encoding="utf-8"),
    "number.yaml": lambda p: p.write_bytes(b"lr: " + b"9" * 50_000_000 + b"\n"),
    "zero.yaml": lambda p: p.symlink_to("/dev/zero"),
    "fifo.yaml": lambda p: os.mkfifo(p),
    "dir.yaml": lambda p: p.mkdir(),
    "python.yaml": lambda p: p.write_text("lr: !!python/object/apply:os.getcwd []\n"),
    "binary.yaml": lambda p: p.write_bytes(b"lr: \xff\xfe\x00 0.1\n"),
}


def _run(argv: list[str], seconds: float) -> tuple[int | None, float]:
    """``main(argv)`` in a thread: (exit code or None if it hung, seconds taken)."""
    out: list[int] = []
    t0 = time.perf_counter()
    t = threading.Thread(target=lambda: out.append(main(argv)), daemon=True)
    t.start()
    t.join(seconds)
    return (out[0] if out else None), time.perf_counter() - t0


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("command", ["lint", "train"])
def test_hostile_config_is_one_line_exit_2(
    name: str, command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / name
    CASES[name](path)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    argv = [command, str(path)] + (
        ["--run-dir", str(tmp_path / "run")] if command == "train" else []
    )
    code, seconds = _run(argv, 20)
    assert code is not None, f"{command} {name} hung"
    assert code == ExitCode.UNUSABLE_INPUT
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"stabletrain {command}:") and str(path) in err, err
    assert "\n" not in err and "Traceback" not in err
    assert seconds < 5, f"{name} took {seconds:.1f}s"
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200, f"{name} grew the process by {grown_mib:.0f} MiB"
    assert not (tmp_path / "run").exists()  # nothing written for a config that cannot be used


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("optim:\n  lr: .nan\n", "optim.lr"),
        ("learning_rate: .inf\n", "learning_rate"),
        ("learning_rate: " + "9" * 400 + "\n", "learning_rate"),
        ('{"learning_rate": Infinity, "train_batch_size": 8}', "learning_rate"),
        ('{"gradient_clipping": 1.0, "fp16": {"enabled": true, "initial_scale_power": '
         + "9" * 400 + "}}", "fp16.initial_scale_power"),
        ('{"gradient_clipping": 1.0, "fp16": {"enabled": true, "initial_scale_power": 5000}}',
         "fp16.initial_scale_power"),
    ],
)  # fmt: skip
def test_non_finite_and_huge_numbers_are_a_finding_not_a_crash(
    text: str, key: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / ("c.json" if text.startswith("{") else "c.yaml")
    path.write_text(text, encoding="utf-8")
    assert main(["lint", str(path), "--format", "json"]) == ExitCode.FINDINGS
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    assert '"config-not-finite"' in out.out and key in out.out


def test_train_config_with_a_huge_number_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("optim:\n  lr: " + "9" * 400 + "\n", encoding="utf-8")
    argv = ["train", str(path), "--run-dir", str(tmp_path / "run")]
    assert main(argv) == ExitCode.UNUSABLE_INPUT
    err = capsys.readouterr().err.strip()
    assert "optim.lr" in err and "\n" not in err and "Traceback" not in err


def test_a_launch_script_with_a_megabyte_line_is_read_fast(tmp_path: Path) -> None:
    """``shlex`` is quadratic in a token's length: a fuzzed ``train.sh`` with a 1 MB line hung
    ``lint`` for 47 s. Such a line is skipped; the script's real command is still read."""
    path = tmp_path / "train.sh"
    path.write_text(
        "python train.py \\\n  --learning_rate 5e-4 \\\n  --fp16\n" + "x" * 1_000_000 + "\n",
        encoding="utf-8",
    )
    code, seconds = _run(["lint", str(path), "--format", "json"], 20)
    assert code is not None and seconds < 5, f"took {seconds:.1f}s"
    from stabletrain.configs.cli_args import parse_command

    assert parse_command(path.read_text(encoding="utf-8")) == {
        "learning_rate": "5e-4",  # as written; the key search reads the number
        "fp16": True,
    }
