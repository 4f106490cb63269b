"""The generated references (docs/reference-guard.md, docs/reference-cli.md) are what the code
gives: a GuardConfig field, a preset, a CLI option or an exit code changed without running
``python tools/gen_reference.py`` (``make docs``) fails here."""

from __future__ import annotations

import dataclasses
import importlib.util
import re
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.guard.config import GuardConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", REPO / "tools/gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_references_match_the_code(gen: ModuleType) -> None:
    for path, text in gen.generated().items():
        committed = path.read_text(encoding="utf-8") if path.exists() else ""
        assert committed == text, f"{path.name} is stale: run python tools/gen_reference.py"


def test_every_guard_field_is_documented_with_its_default(gen: ModuleType) -> None:
    text = gen.guard_reference()
    default = GuardConfig()
    for f in dataclasses.fields(GuardConfig):
        row = re.search(rf"^\| `{f.name}` \|.*\|$", text, re.M)
        assert row, f"GuardConfig.{f.name} missing from the reference"
        assert repr(getattr(default, f.name)).strip("'") in row.group(0), row.group(0)
        assert "(undocumented)" not in row.group(0), (
            f"GuardConfig.{f.name} has no docstring under it in guard/config.py"
        )


def test_every_cli_option_and_exit_code_is_in_the_reference(gen: ModuleType) -> None:
    from stabletrain.cli import build_parser
    from stabletrain.errors import ExitCode

    text = gen.cli_reference()
    parser = build_parser()
    for name, sub in gen._subcommands(parser).items():
        assert f"## `stabletrain {name}`" in text
        for opt in (o for a in sub._actions for o in a.option_strings):
            if opt not in ("-h", "--help", "-v", "--verbose"):
                assert f"`{opt}" in text or f", {opt}" in text, f"{name} {opt}"
    for code in ExitCode:
        assert re.search(rf"^\| {int(code)} \| `{code.name}` \|", text, re.M), code
