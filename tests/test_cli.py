"""The exit-code table (``ExitCode``), the same for every command, through the real parser."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.errors import ExitCode

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"


def _csv(path: Path, nan_at: tuple[int, ...] = ()) -> Path:
    rows = ["step,loss"]
    for i in range(200):
        loss = "nan" if i in nan_at else f"{2.0 * math.exp(-i / 40) + 0.1:.5f}"
        rows.append(f"{i},{loss}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("exit")
    return {"clean": _csv(root / "clean.csv"), "nan": _csv(root / "nan.csv", (100, 101))}


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["doctor", "{clean}"], ExitCode.CLEAN),
        (["doctor", "{clean}", "--fail-on", "info"], ExitCode.CLEAN),
        (["doctor", "{nan}"], ExitCode.FINDINGS),  # an ERROR finding fails by default
        (["doctor", "{nan}", "--fail-on", "warning"], ExitCode.FINDINGS),
        (["doctor", "{nan}", "--fail-on", "never"], ExitCode.CLEAN),
        (["doctor", "{missing}"], ExitCode.UNUSABLE_INPUT),
        (["doctor", "{clean}", "--format", "md", "-o", "/proc/nope/r.md"], ExitCode.UNUSABLE_INPUT),
        (["lint", "{seed001}"], ExitCode.CLEAN),  # warnings only: below the default
        (["lint", "{seed001}", "--fail-on", "warning"], ExitCode.FINDINGS),
        (["lint", "{seed001}", "--fail-on", "never"], ExitCode.CLEAN),
        (["lint", "{missing}"], ExitCode.UNUSABLE_INPUT),
        (["train", "{missing}"], ExitCode.UNUSABLE_INPUT),
    ],
)
def test_exit_code_table(
    argv: list[str],
    code: ExitCode,
    logs: dict[str, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    paths = {
        **{k: str(v) for k, v in logs.items()},
        "missing": str(tmp_path / "missing.yaml"),
        "seed001": str(CONFIGS / "seed001-plateau-too-slow.yaml"),
    }
    assert main([a.format(**paths) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    if code == ExitCode.UNUSABLE_INPUT:
        assert err.startswith(f"stabletrain {argv[0]}:") and "\n" not in err, err
        assert "Traceback" not in err


def test_internal_error_is_one_line_asking_for_a_report(
    logs: dict[str, Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A bug (here: the doctor's own code raising) is exit 4 and one line; -v adds the traceback."""
    import stabletrain.doctor

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("float division by zero")

    monkeypatch.setattr(stabletrain.doctor, "diagnose", broken)
    assert main(["doctor", str(logs["clean"])]) == ExitCode.INTERNAL_ERROR
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err
    assert re.search(r"internal error \(ZeroDivisionError: float division by zero\)", err)
    assert "please report it" in err and "-v" in err
    for argv in (["-v", "doctor", str(logs["clean"])], ["doctor", "-v", str(logs["clean"])]):
        assert main(argv) == ExitCode.INTERNAL_ERROR
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "in broken" in err


def test_bad_arguments_are_exit_2() -> None:
    with pytest.raises(SystemExit) as e:
        main(["doctor", "x", "--fail-on", "sometimes"])
    assert e.value.code == ExitCode.UNUSABLE_INPUT


def test_readme_documents_every_exit_code() -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    table = dict(re.findall(r"^\| (\d+) \| (.+) \|$", readme, flags=re.M))
    assert sorted(int(c) for c in table) == sorted(int(c) for c in ExitCode)


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_doctor_refuses_a_fifo_or_device_at_once(
    kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import os
    import threading

    path = tmp_path / "train.log"
    if kind == "fifo":
        os.mkfifo(path)
    else:
        path.symlink_to("/dev/zero")
    out: list[int] = []
    t = threading.Thread(target=lambda: out.append(main(["doctor", str(path)])), daemon=True)
    t.start()
    t.join(10)
    assert out == [ExitCode.UNUSABLE_INPUT], "doctor hung or did not refuse"
    err = capsys.readouterr().err.strip()
    assert str(path) in err and "not a regular file" in err and "\n" not in err
