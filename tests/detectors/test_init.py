"""bad-init on real reference-trainer runs (guard off): the digits CNN initialised with
``normal(std=1.0)`` (first loss ~5e4 vs ln 10) against the same CNN with Kaiming init."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.detectors.init import InitDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

#: every run here: the digits CNN, guard off, 2 epochs (a later override wins)
BASE = ("guard.preset=off", "train.epochs=2")


@pytest.fixture(scope="module")
def bad(tmp_path_factory: pytest.TempPathFactory, reference_run: Callable[..., Path]) -> Path:
    run = tmp_path_factory.mktemp("init") / "bad"
    return reference_run(
        "digits-cnn.yaml", run, *BASE, "model.cnn.init=normal", "model.cnn.init_std=1.0"
    )


def test_bad_init_is_found_with_the_init_fix(bad: Path) -> None:
    report = diagnose(bad)
    f = next(f for f in report.findings if f.id == "bad-init")
    assert f.evidence["first_loss"] > 1000  # vs ln(10) = 2.3
    assert f.evidence["num_classes"] == 10 and f.steps == [0]
    changes = {k: v for fix in f.fixes for k, v in fix.changes.items()}
    assert changes["model.cnn.init"] == "kaiming" and changes["model.cnn.init_std"] is None
    assert not any("lr" in fix.relative for fix in f.fixes)
    # the config already warms up (warmup_ratio 0.05): no second warm-up fix
    assert "schedule.warmup_ratio" not in changes
    ids = [x.id for x in report.findings]
    assert ids.index("bad-init") == min(ids.index(r) for r in [f.id, *f.related] if r in ids)


def test_kaiming_init_run_gets_no_bad_init(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    report = diagnose(reference_run("digits-cnn.yaml", tmp_path / "good", *BASE))
    assert "bad-init" not in [f.id for f in report.findings]


def test_bulk_path_and_state_round_trip(bad: Path, scenarios: ModuleType) -> None:
    scenarios.assert_bulk_and_state_agree(InitDetector, list(read_run(bad).records))


def test_too_high_lr_is_not_a_bad_init(tmp_path: Path, reference_run: Callable[..., Path]) -> None:
    """Plain SGD at lr 3, no clip: the first loss is ~ln(10) and only the updates blow up (step 1:
    loss 1.6e4, grad norm 1.2e4). That is the LR's doing, not the init's: no bad-init, and the
    change set lowers the LR instead of re-initialising with the default init."""
    run = reference_run(
        "digits-cnn.yaml",
        tmp_path / "lr3",
        *BASE,
        "optim.name=sgd",
        "optim.lr=3.0",
        "schedule.name=constant",
        "schedule.warmup_ratio=0.0",
        "train.max_grad_norm=null",
        "train.epochs=1",
    )
    report = diagnose(run)
    assert "bad-init" not in [f.id for f in report.findings]
    changes = report.change_set.changes
    assert 0 < changes["optim.lr"] < 3.0
    assert "model.cnn.init" not in changes  # kaiming is already the setting


def test_one_pre_update_record_is_enough_and_later_blowups_are_not_the_init() -> None:
    """Scripted head of a log: the grad norm at the first (pre-update) step is what the init
    made; norms after a loss that rose from updates are the LR's."""
    from stabletrain.records import ConfigFacts, StepRecord

    facts = ConfigFacts()
    facts.set("num_classes", 10)
    lr_blowup = [(3.3, 16.0), (1.5e4, 1.2e4), (1.4e5, 7e4)] + [(3.0, 0.25)] * 40
    bad_start = [(5e4, 6e4), (3e13, 4e11), (3e14, 3e13)] + [(2.3, 0.5)] * 40
    found = {}
    for name, rows in (("lr", lr_blowup), ("init", bad_start)):
        det = InitDetector()
        for i, (loss, g) in enumerate(rows):
            det.update(StepRecord(step=i, loss=loss, grad_norm=g))
        found[name] = det.finish(facts)
    assert found["lr"] == []
    assert [f.id for f in found["init"]] == ["bad-init"]
    # an excerpt that starts after updates (step 5) says nothing about the init
    det = InitDetector()
    for i, (loss, g) in enumerate(bad_start):
        det.update(StepRecord(step=i + 5, loss=loss, grad_norm=g))
    assert det.finish(facts) == []
