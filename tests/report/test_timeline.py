"""The guard's actions in the report, from a real guarded run of the demo's unstable config:
NaN batches 30 and 75 and 1e6-scaled batches 50 and 100 are skipped, and the evaluation
rollback near the end is a ``guard-rollback`` finding with ``source="guard"``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.doctor import diagnose
from stabletrain.report.text import render
from stabletrain.report.timeline import guard_timeline, timeline_lines

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


pytestmark = pytest.mark.slow  # one full guarded run of the demo's config (~8 s)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("timeline") / "guarded"
    argv = ["train", str(CONFIGS / "unstable-digits.yaml"), "--run-dir", str(run)]
    main([*argv, "--no-progress", "--set", "run.tensorboard=false"])
    return run


def test_timeline_lists_the_skips_rollback_and_lr_cap(guarded: Path) -> None:
    report = diagnose(guarded)
    tl = report.guard_timeline
    skips = [a["step"] for a in tl if a["action"] == "skip"]
    assert skips == [30, 50, 75, 100]  # data.corrupt: nan_batches [30, 75], scale [50, 100]
    assert all(set(a) == {"step", "action", "reason"} for a in tl)
    assert "health" not in {a["action"] for a in tl}
    assert json.loads(json.dumps(report.to_json()))["guard_timeline"] == tl
    text = render(report)
    assert "guard: skip x4 at steps 30, 50, 75, 100: non-finite x2, spike x2" in text


@pytest.fixture(scope="module")
def rolled_back(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A guarded run at an AdamW LR far too high (0.05 on the digits CNN): the guard's damage
    rule rolls it back. (The demo's bad batches are skipped, and since the guard's 512ab30 its
    eval rule no longer rolls the demo back.)"""
    run = tmp_path_factory.mktemp("timeline") / "rolled_back"
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run), "--no-progress"]
    main([*argv, "--set", "run.tensorboard=false", "--set", "optim.lr=0.05"])
    return run


def test_rollback_is_a_guard_finding(rolled_back: Path) -> None:
    report = diagnose(rolled_back)
    actions = [a["action"] for a in report.guard_timeline]
    if "rollback" not in actions:
        pytest.fail(f"the guarded run did not roll back: {actions}")
    f = next(f for f in report.findings if f.id == "guard-rollback")
    assert f.source == "guard" and f.evidence["rollbacks"] == actions.count("rollback")
    assert f.steps and f.steps[0] in [a["step"] for a in report.guard_timeline]


def test_unguarded_run_has_an_empty_timeline(tmp_path: Path) -> None:
    run = tmp_path / "off"
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run), "--no-progress"]
    for o in ("run.tensorboard=false", "guard.preset=off", "train.max_steps=10"):
        argv += ["--set", o]
    main(argv)
    report = diagnose(run)
    assert report.guard_timeline == []
    assert "guard:" not in render(report)
    assert not [f for f in report.findings if f.source == "guard"]


def test_damaged_rows_are_ignored_and_schedule_changes_are_not_actions() -> None:
    rows = [
        "not a dict",
        {"step": 3},
        {"step": 4, "event": "lr-reduced", "message": "x", "data": {"old": 1, "new": 0.5,
                                                                   "reason": "schedule"}},
        {"step": 5, "event": "lr-reduced", "message": "plateau", "data": {"from": 1, "to": 0.1}},
        {"step": 6, "event": "abort", "message": "only bad data for 50 steps"},
    ]  # fmt: skip
    tl = guard_timeline(rows)
    assert tl == [{"step": 6, "action": "abort", "reason": "only bad data for 50 steps"}]
    assert timeline_lines(tl) == ["abort at step 6: only bad data for 50 steps"]


def test_guard_init_check_is_a_bad_init_finding_unless_the_log_showed_it(tmp_path: Path) -> None:
    run = tmp_path / "badinit"
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run), "--no-progress"]
    for o in ("run.tensorboard=false", "train.max_steps=5", "model.cnn.init=normal",
              "model.cnn.init_std=1.0"):  # fmt: skip
        argv += ["--set", o]
    main(argv)
    from stabletrain.logs.read import read_run
    from stabletrain.report.timeline import guard_findings

    data = read_run(run)
    tl = guard_timeline(data.events)
    assert "init-warning" in [a["action"] for a in tl]
    (f,) = [x for x in guard_findings(tl, data.facts) if x.id == "bad-init"]
    assert f.source == "guard"
    assert f.fixes[0].changes["model.cnn.init"] == "kaiming"
    assert not [x for x in guard_findings(tl, data.facts, {"bad-init"}) if x.id == "bad-init"]
    # the doctor reports it once (the log's first loss shows it too)
    assert [x.id for x in diagnose(run).findings].count("bad-init") == 1
