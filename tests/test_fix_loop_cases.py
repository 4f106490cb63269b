"""The fix-loop case files (bench/fix_cases/cases.yaml, cases2.yaml .. cases5.yaml) are well formed:
every case's config and overrides are accepted by the reference trainer, the split follows the
rule written in the file, round 1 covers both models and every seed config, rounds 2-5 have at
least 12 new cases each on both models, none a repeat of an earlier round's. Fast: nothing is trained."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from stabletrain.train.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CASES = yaml.safe_load((ROOT / "bench" / "fix_cases" / "cases.yaml").read_text())
ROUND2 = yaml.safe_load((ROOT / "bench" / "fix_cases" / "cases2.yaml").read_text())
ROUND3 = yaml.safe_load((ROOT / "bench" / "fix_cases" / "cases3.yaml").read_text())
ROUND4 = yaml.safe_load((ROOT / "bench" / "fix_cases" / "cases4.yaml").read_text())
ROUND5 = yaml.safe_load((ROOT / "bench" / "fix_cases" / "cases5.yaml").read_text())
FIELDS = {"name", "group", "split", "model", "config", "overrides", "fault", "lr_rule", "cause",
          "expect", "repair", "first_sight"}  # fmt: skip


def test_case_set_covers_both_models_and_every_seed() -> None:
    cases = CASES["cases"]
    assert len(cases) >= 14
    assert len({c["name"] for c in cases}) == len(cases)
    assert {c["model"] for c in cases} == {"cnn", "gpt"}
    seeds = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "configs").glob("seed00*.yaml"))
    assert len(seeds) == 5
    assert seeds == sorted(c["config"] for c in cases if c["group"] == "seed")


@pytest.mark.parametrize(
    ("spec", "earlier"),
    [
        (ROUND2, [CASES]),
        (ROUND3, [CASES, ROUND2]),
        (ROUND4, [CASES, ROUND2, ROUND3]),
        (ROUND5, [CASES, ROUND2, ROUND3, ROUND4]),
    ],
    ids=["round2", "round3", "round4", "round5"],
)
def test_later_rounds_are_new_and_cover_both_models(spec: dict, earlier: list[dict]) -> None:
    cases = spec["cases"]
    assert len(cases) >= 12 and len({c["name"] for c in cases}) == len(cases)
    assert {c["model"] for c in cases} == {"cnn", "gpt"}
    old_cases = [c for e in earlier for c in e["cases"]]
    old = {c["name"] for c in old_cases}
    old_setups = {(c["config"], tuple(c["overrides"])) for c in old_cases}
    for c in cases:
        assert c["name"] not in old and (c["config"], tuple(c["overrides"])) not in old_setups


@pytest.mark.parametrize(
    "spec",
    [CASES, ROUND2, ROUND3, ROUND4, ROUND5],
    ids=["round1", "round2", "round3", "round4", "round5"],
)
def test_split_alternates_within_each_group(spec: dict) -> None:
    by_group: dict[str, list[str]] = {}
    for c in spec["cases"]:
        by_group.setdefault(c["group"], []).append(c["split"])
    for group, splits in by_group.items():
        want = ["tune" if i % 2 == 0 else "heldout" for i in range(len(splits))]
        assert splits == want, group


@pytest.mark.parametrize(
    ("spec", "case"),
    [(spec, c) for spec in (CASES, ROUND2, ROUND3, ROUND4, ROUND5) for c in spec["cases"]],
    ids=lambda x: x.get("name", ""),
)
def test_case_config_is_accepted_by_the_trainer(spec: dict, case: dict) -> None:
    assert set(case) == FIELDS
    assert case["lr_rule"] in {"up", "down", "none"}
    overrides = spec["bounds"][case["model"]] + case["overrides"]
    cfg = load_config(ROOT / case["config"], overrides)
    assert cfg.model.name == case["model"]
    assert cfg.guard["preset"] in ("off", False)  # YAML 1.1 reads a bare off as false


@pytest.mark.parametrize("model", ["cnn", "gpt"])
def test_references_are_accepted(model: str) -> None:
    ref = CASES["references"][model]
    cfg = load_config(ROOT / ref["config"], CASES["bounds"][model] + ref["overrides"])
    assert cfg.model.name == model


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("fix_loop", ROOT / "bench" / "fix_loop.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fix_loop"] = mod  # (dataclasses look their module up)
    spec.loader.exec_module(mod)
    return mod


def test_broken_from_adopts_runs_for_another_code_tree(tmp_path: Path) -> None:
    """--broken-from: the first-sight run's references and broken runs count as this code's (their
    stamps rewritten, config and overrides kept), so train_run reuses them instead of training."""
    bench = _bench()
    src, dst = tmp_path / "base", tmp_path / "tree"
    for run, overrides in (("ref_cnn", ["a=1"]), ("case/broken", ["b=2"])):
        (src / run).mkdir(parents=True)
        (src / run / "summary.json").write_text(json.dumps({"final_accuracy": 0.5}))
        stamp = json.dumps(["/work/base", "configs/digits-cnn.yaml", overrides])
        (src / f"{run}.trained.json").write_text(stamp)
    assert bench.adopt_runs(src, dst, Path("/x/code")) == 2
    tree = bench.Tree(Path("/x/code"))
    run = bench.train_run(tree, "cnn", "configs/digits-cnn.yaml", ["b=2"], dst / "case" / "broken",
                          1.0, reuse=True)  # fmt: skip
    assert run.rc == 0 and run.quality == 0.5 and run.seconds == 0.0
