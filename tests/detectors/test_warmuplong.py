"""warmup-too-long on real reference-trainer runs (guard off): the digits CNN with a warm-up of
1000 steps in a 60-step run never gets its LR up; the fix is a warm-up a tenth of the run, and
the change set never lowers the LR. A healthy run (5 % warm-up) stays quiet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.detectors.warmuplong import WarmupLongDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.records import ConfigFacts, StepRecord

#: every run here: the digits CNN, guard off, 60 steps
BASE = ("guard.preset=off", "train.max_steps=60")


@pytest.fixture(scope="module")
def long_warmup(
    tmp_path_factory: pytest.TempPathFactory, reference_run: Callable[..., Path]
) -> Path:
    run = tmp_path_factory.mktemp("warm") / "long"
    return reference_run(
        "digits-cnn.yaml", run, *BASE, "schedule.warmup_ratio=0.0", "schedule.warmup_steps=1000"
    )


def test_a_warmup_longer_than_the_run_is_found_and_shortened(long_warmup: Path) -> None:
    report = diagnose(long_warmup)
    f = next(f for f in report.findings if f.id == "warmup-too-long")
    assert f.evidence["direction"] == "progress" and f.evidence["run_steps"] == 60
    cs = report.change_set
    assert cs.cause == "warmup-too-long"
    assert 1 <= cs.changes["schedule.warmup_steps"] <= 12  # a fraction of the 60-step run
    assert cs.changes.get("optim.lr", 3e-3) >= 3e-3  # never lowered


def test_a_healthy_warmup_is_quiet(tmp_path: Path, reference_run: Callable[..., Path]) -> None:
    report = diagnose(reference_run("digits-cnn.yaml", tmp_path / "ok", *BASE))
    assert "warmup-too-long" not in [f.id for f in report.findings]


def _scripted(lrs: list[float], facts: ConfigFacts | None = None) -> list[str]:
    det = WarmupLongDetector()
    for i, lr in enumerate(lrs):
        det.update(StepRecord(step=i, loss=1.0, lr=lr))
    return [f.id for f in det.finish(facts)]


def test_only_a_ramp_still_rising_at_the_end_counts() -> None:
    ramp = [1e-3 * (i + 1) / 1000 for i in range(100)]  # step 100 of a 1000-step warm-up
    assert _scripted(ramp) == ["warmup-too-long"]
    done = [1e-3 * min(1.0, (i + 1) / 10) for i in range(100)]  # warmed up, then constant
    assert _scripted(done) == []
    decay = [1e-3 * (1 - i / 100) for i in range(100)]
    assert _scripted(decay) == []
    assert _scripted(ramp[:10]) == []  # too few records to say
    # the config says how long the run is: a log cut short in its warm-up is not the warm-up's
    facts = ConfigFacts(format="stabletrain")
    facts.set("max_steps", 10_000, key="train.max_steps")
    facts.set("warmup_steps", 1000, key="schedule.warmup_steps")
    assert _scripted(ramp, facts) == []
    facts.set("warmup_steps", 20_000, key="schedule.warmup_steps")
    assert _scripted(ramp, facts) == ["warmup-too-long"]


def test_bulk_path_and_state_round_trip(long_warmup: Path, scenarios: ModuleType) -> None:
    scenarios.assert_bulk_and_state_agree(WarmupLongDetector, list(read_run(long_warmup).records))
