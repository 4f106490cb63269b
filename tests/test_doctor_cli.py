"""``stabletrain doctor`` / ``lint`` through the real argument parser: formats, files, exit codes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.cli import main
from stabletrain.doctor_cli import parse_mapping
from stabletrain.errors import ConfigError


def _fixtures() -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "seeds" / "__init__.py"
    spec = importlib.util.spec_from_file_location("stabletrain_seed_fixtures_cli", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SEEDS = _fixtures()


@pytest.fixture(scope="module")
def seed003(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return SEEDS.generate("seed003", tmp_path_factory.mktemp("cli"))  # type: ignore[no-any-return]


def test_text_report_and_fail_on(
    seed003: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    log, cfg = seed003
    assert (
        main(["doctor", str(log), "--config", str(cfg)]) == 0
    )  # default --fail-on error: warnings alone pass
    out = capsys.readouterr().out
    # (was "+ training.grad_clip: 3.0": raising the clip of an unstable Adam run, now left out)
    assert "clip-saturated" in out and "+ training.learning_rate: 1e-05" in out
    assert "+ training.grad_clip: 3.0" not in out
    assert main(["doctor", str(log), "--config", str(cfg), "--fail-on", "warning"]) == 1
    assert main(["doctor", str(log), "--config", str(cfg), "--fail-on", "error"]) == 0


def test_json_to_stdout(seed003: tuple[Path, Path], capsys: pytest.CaptureFixture[str]) -> None:
    log, cfg = seed003
    assert main(["doctor", str(log), "--config", str(cfg), "--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    ids = [f["id"] for f in data["findings"]]
    assert "clip-saturated" in ids and data["summary"]["format"] == "hf-trainer-state"
    assert all(
        {"id", "severity", "steps", "evidence", "explanation", "fix"} <= set(f)
        for f in data["findings"]
    )


def test_html_and_md_files_with_plots(
    seed003: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log, cfg = seed003
    out = tmp_path / "report" / "seed003.html"
    assert main(["doctor", str(log), "--config", str(cfg), "--format", "html", "-o", str(out)]) == 0
    assert "report written to" in capsys.readouterr().err
    assert sorted(p.name for p in out.parent.iterdir()) == [
        "seed003.html",
        "seed003_grad_norm.png",
        "seed003_loss.png",
        "seed003_lr.png",
    ]
    md = tmp_path / "seed003.md"
    assert main(["doctor", str(log), "--format", "md", "-o", str(md)]) == 0
    assert "![grad_norm](seed003_grad_norm.png)" in md.read_text()


def test_unreadable_inputs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "notes.txt"
    garbage.write_text("this is not a training log\njust words\n", encoding="utf-8")
    cases = [
        ["doctor", str(tmp_path / "missing")],
        ["doctor", str(garbage)],
        ["doctor", str(garbage), "--map", "loss"],
        ["lint", str(tmp_path / "missing.yaml")],
    ]
    for argv in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith(f"stabletrain {argv[0]}:") and "\n" not in err, err
        assert "Traceback" not in err


def test_map_option_reads_a_generic_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "log.csv"
    rows = ["iteration,objective,gnorm"] + [f"{i},{2.0 / (i + 1):.5f},0.5" for i in range(60)]
    rows[41] = "40,nan,inf"
    csv.write_text("\n".join(rows) + "\n", encoding="utf-8")
    argv = [
        "doctor",
        str(csv),
        "--format",
        "json",
        "--map",
        "loss=objective",
        "--map",
        "grad_norm=gnorm",
    ]
    assert main([*argv, "--fail-on", "error"]) == 1
    ids = {f["id"] for f in json.loads(capsys.readouterr().out)["findings"]}
    assert {"nonfinite-loss"} <= ids


def test_parse_mapping() -> None:
    assert parse_mapping(["loss=train_loss", " lr = LR "]) == {"loss": "train_loss", "lr": "LR"}
    assert parse_mapping([]) is None
    with pytest.raises(ConfigError, match="FIELD=COLUMN"):
        parse_mapping(["=x"])


def test_lint_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _log, cfg = SEEDS.generate("seed001", tmp_path)
    assert main(["lint", str(cfg), "--fail-on", "warning"]) == 1
    assert "patience-conflict" in capsys.readouterr().out
    assert main(["lint", str(cfg), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["summary"]["kind"] == "lint"
