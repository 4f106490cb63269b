"""run-failed (detectors/fallback.py) on scripted loss curves with hand-computed expectations, and
the change set's rule for it: used only when no other finding at warning or above names a cause,
its LR cut relative to the configured LR (never raised)."""

from __future__ import annotations

import math
from types import ModuleType

import pytest

from stabletrain.detectors.fallback import CUT, FailedRunDetector
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord
from stabletrain.report.changeset import resolve


def _log(losses: list[float], lr: float = 0.1) -> list[StepRecord]:
    return [StepRecord(step=i, loss=x, lr=lr) for i, x in enumerate(losses)]


def _facts(**extra: object) -> ConfigFacts:
    facts = ConfigFacts(format="stabletrain")
    facts.set("lr", 0.03, key="optim.lr")
    for name, value in extra.items():
        facts.set(name, value, key=name)
    return facts


def _run(records: list[StepRecord], facts: ConfigFacts) -> list[Finding]:
    det = FailedRunDetector()
    for r in records:
        det.update(r)
    return det.finish(facts)


FALLING = [2.3 * math.exp(-i / 20) for i in range(60)]
RISING = [1.0 + i / 30 for i in range(60)]  # medians: first 20 -> 1.32, last 20 -> 2.65


def test_a_loss_that_ends_above_its_start_lowers_the_lr() -> None:
    (f,) = _run(_log(RISING), _facts())
    assert f.id == "run-failed" and f.severity == "warning"
    assert f.evidence == {"direction": "instability", "fallback": True}
    assert f.fixes[0].relative == {"lr": pytest.approx(1 / CUT)}
    assert "1.317 → 2.65" in f.title


def test_a_loss_that_ends_non_finite_lowers_the_lr_one_that_recovers_says_nothing() -> None:
    (f,) = _run(_log([*FALLING, math.nan, math.inf]), _facts())
    assert f.severity == "warning" and "non-finite at step 60" in f.title
    assert _run(_log([*FALLING[:30], math.nan, *FALLING[30:]]), _facts()) == []


def test_a_model_stuck_at_a_uniform_guess_is_not_sure_and_changes_nothing() -> None:
    stuck = [math.log(10) + 0.001 * (i % 3) for i in range(60)]
    (f,) = _run(_log(stuck), _facts(num_classes=10))
    assert f.severity == "info" and "not sure" in f.title and f.fixes == []
    assert _run(_log(stuck), _facts()) == []  # no class count: no scale to call it a guess


@pytest.mark.parametrize("losses", [FALLING, FALLING[:30]])
def test_healthy_or_short_runs_say_nothing(losses: list[float]) -> None:
    assert _run(_log(losses), _facts(num_classes=10)) == []


def test_bulk_path_and_state_round_trip(scenarios: ModuleType) -> None:
    recs = _log([*FALLING, math.nan, *RISING, math.inf])
    scenarios.assert_bulk_and_state_agree(FailedRunDetector, recs, _facts(num_classes=10))


def _named() -> Finding:
    return Finding(
        id="loss-spike",
        severity="warning",
        title="spike",
        steps=[5],
        fixes=[Fix("Clip harder.", {"train.max_grad_norm": 0.5})],
    )


def test_the_change_set_uses_the_fallback_only_when_nothing_else_names_a_cause() -> None:
    facts = _facts()
    (failed,) = _run(_log(RISING, lr=0.3), facts)  # the log's LR is not the base: the config's is
    alone = resolve([failed], facts)
    assert alone.cause == "run-failed" and alone.changes == {"optim.lr": 0.01}  # 0.03 / 3
    both = resolve([_named(), failed], facts)
    assert both.cause == "loss-spike" and "optim.lr" not in both.changes
    assert both.changes == {"train.max_grad_norm": 0.5}


def test_the_report_demotes_the_fallback_when_another_finding_names_a_cause() -> None:
    from stabletrain.report.chain import order

    (failed,) = _run(_log(RISING), _facts())
    alone = order([failed])
    assert [(f.id, f.severity) for f in alone] == [("run-failed", "warning")]
    both = order([failed, _named()])
    assert {(f.id, f.severity) for f in both} == {("run-failed", "info"), ("loss-spike", "warning")}
    assert failed.severity == "warning"  # (a copy is demoted, not the detector's finding)
