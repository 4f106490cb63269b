"""bench/new_user.py can run every README command as written: each file a doctor or lint example
reads exists in the repo, is made by an earlier README step, or has a real stand-in in the bench
(a README example added without one fails here, not an hour into a measurement)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _bench():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("new_user", REPO / "bench/new_user.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["new_user"] = module
    spec.loader.exec_module(module)
    return module


def test_every_file_a_readme_example_reads_has_a_source() -> None:
    bench = _bench()
    steps = bench.readme_steps((REPO / "README.md").read_text(encoding="utf-8"), False)
    assert steps[0][0] == "make demo" and "snippet" in steps[1][0]
    made = {"runs/my-run", "runs/demo"}  # the snippet's run dir, the demo's
    for text, argv in steps:
        if argv[0] != "stabletrain" or argv[1] not in ("doctor", "lint"):
            continue
        paths = [a for i, a in enumerate(argv[2:], 2) if not a.startswith("-")
                 and argv[i - 1] not in ("--format", "-o", "--map", "--fail-on")]  # fmt: skip
        for path in paths:
            ok = path in bench.STAND_INS or path in made or (REPO / path).exists()
            assert ok, f"README: {text!r} reads {path}: add a stand-in to bench/new_user.py"
    for src, _ in bench.STAND_INS.values():
        assert src is None or src.is_file(), src
