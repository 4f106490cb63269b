"""bench/lint_corpus: the development figures with the current tree (docs/benchmarks-lint.md).

Runs `stabletrain lint --format json` (the CLI's entry point, in this process) on round 1 (all 33
configs: development data since session 6), round 2's tune half (12) and round 3's tune half (10),
and checks the figures the docs report; skipped when the corpus is absent. Round 3's held-out half
is not run here: it is run once, by hand, with the final tree.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

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


def _totals(pick: Callable[[dict[str, Any]], bool]) -> dict[str, int]:
    bench = _bench()
    outcomes = [bench.score(c, timeout=60, inprocess=True) for c in bench.load_labels() if pick(c)]
    return dict(bench.totals(outcomes))


def test_round1_figures() -> None:
    t = _totals(lambda c: c.get("round", 1) == 1)
    assert t["configs"] == 33 and t["read"] == 33 and t["crashed"] == 0
    assert t["silent_clean"] == 1 and t["wrong_direction"] == 0  # lf1989: LoRA at its bound
    assert (t["found"], t["problems"]) == (10, 19) and t["mentioned"] == 18
    assert (t["quiet"], t["clean"]) == (17, 17) and t["false_alarms"] == 0


def test_round2_tune_half_figures() -> None:
    t = _totals(lambda c: c.get("round") == 2 and c["split"] == "tune")
    assert t["configs"] == 12 and t["read"] == 12 and t["crashed"] == 0
    assert t["wrong_direction"] == 0
    assert (t["found"], t["problems"]) == (5, 5) and t["mentioned"] == 5
    assert (t["quiet"], t["clean"]) == (7, 7) and t["false_alarms"] == 0


def test_round3_tune_half_figures() -> None:
    t = _totals(lambda c: c.get("round") == 3 and c["split"] == "tune")
    assert t["configs"] == 10 and t["read"] == 10 and t["crashed"] == 0
    assert t["wrong_direction"] == 0 and t["silent_clean"] == 0
    # DeepSpeed's WarmupLR filled by the Trainer, and its default 1e-3 peak, are found; mlx's
    # LoRA rank 64 / alpha 128 (mlx-examples#620) has no rule
    assert (t["found"], t["problems"]) == (2, 3) and t["mentioned"] == 2
    assert (t["quiet"], t["clean"]) == (7, 7) and t["false_alarms"] == 0
