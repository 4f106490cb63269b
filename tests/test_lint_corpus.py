"""bench/lint_corpus: the tune half's figures with the current tree (docs/benchmarks-lint.md).

Runs `stabletrain lint --format json` (the CLI's entry point, in this process) on the 17 tune-half
configs and checks the figures the docs report; skipped when the corpus is absent. The held-out
half is not run here: it is run once, by hand, with the final tree.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"
pytestmark = pytest.mark.skipif(
    not (BENCH / "lint_corpus" / "labels.yaml").is_file(), reason="bench/lint_corpus is absent"
)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lint_corpus_bench", BENCH / "lint_corpus.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses resolve their module by name
    spec.loader.exec_module(mod)
    return mod


def test_tune_half_figures() -> None:
    bench = _bench()
    tune = [c for c in bench.load_labels() if c["split"] == "tune" and c.get("round", 1) == 1]
    outcomes = [bench.score(c, timeout=60, inprocess=True) for c in tune]
    t = bench.totals(outcomes)
    assert t["configs"] == 17 and t["read"] == 17 and t["crashed"] == 0
    assert t["silent_clean"] == 0 and t["wrong_direction"] == 0
    assert (t["found"], t["problems"]) == (4, 10) and t["mentioned"] == 10
    assert (t["quiet"], t["clean"]) == (9, 9) and t["false_alarms"] == 0
