from __future__ import annotations

import json
import random
from pathlib import Path

from stabletrain.detectors.base import feed
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.evidence import TOO_FEW
from stabletrain.detectors.perf import SlowStepsDetector
from stabletrain.detectors.registry import replay
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord


def _run(times: list[float], per_epoch: int = 50) -> list[StepRecord]:
    return [StepRecord(step=i, epoch=i // per_epoch, step_time=t) for i, t in enumerate(times)]


def test_sustained_5x_slowdown_from_epoch_4() -> None:
    times = [0.1] * 200 + [0.5] * 100
    [f] = replay(_run(times), None, [SlowStepsDetector()])
    assert f.id == "slow-steps" and f.epochs == [4, 5]
    assert 4.8 < f.evidence["worst_ratio"] < 5.2


def test_from_wall_time_every_10_steps() -> None:
    wall, recs = 0.0, []
    for i in range(0, 3000, 10):
        wall += 10 * (0.1 if i < 2000 else 0.4)
        recs.append(StepRecord(step=i, wall_time=wall))
    [f] = replay(recs, None, [SlowStepsDetector()])
    assert f.steps and min(f.steps) >= 1900


def test_near_miss_checkpoint_pauses_and_slow_first_epoch() -> None:
    times = [1.0] * 50 + [0.1 if i % 50 else 5.0 for i in range(250)]  # compile, then saves
    assert replay(_run(times), None, [SlowStepsDetector()]) == []


def test_state_dict_round_trip() -> None:
    recs = _run([0.1] * 200 + [0.5] * 100)
    a, b = SlowStepsDetector(), SlowStepsDetector()
    for r in recs[:120]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in recs[120:]:
        a.update(r)
        b.update(r)
    assert [f.to_json() for f in a.finish(None)] == [f.to_json() for f in b.finish(None)]


def test_near_miss_millisecond_steps_under_cpu_contention() -> None:
    # a 2 ms CPU step slowed 10x by another process: 20 ms is host jitter, not a regression
    times = [0.002] * 200 + [0.02] * 100
    assert replay(_run(times), None, [SlowStepsDetector()]) == []


def test_slowdown_just_past_the_floor_is_reported() -> None:
    times = [0.015] * 200 + [0.06] * 100  # 4x, and the slow steps take 60 ms
    [f] = replay(_run(times), None, [SlowStepsDetector()])
    assert f.epochs == [4, 5]


def _drift(first: float, last: float, n: int = 600, noise: float = 0.05, seed: int = 0):
    rng = random.Random(seed)
    return [
        (first + (last - first) * i / (n - 1)) * (1 + rng.uniform(-noise, noise)) for i in range(n)
    ]


def test_gradual_drift_60_percent_slower_over_the_run() -> None:
    # 1.0 s → 1.6 s per step over 600 steps in 3 epochs: no 3× jump, but a steady drift
    [f] = replay(_run(_drift(1.0, 1.6), per_epoch=200), None, [SlowStepsDetector()])
    assert f.id == "slow-steps" and "drift" in f.explanation
    assert 1.45 <= f.evidence["drift_ratio"] <= 1.75


def test_near_miss_flat_noisy_steps_and_a_small_drift_are_quiet() -> None:
    assert replay(_run(_drift(1.0, 1.0, noise=0.3)), None, [SlowStepsDetector()]) == []
    assert replay(_run(_drift(1.0, 1.15)), None, [SlowStepsDetector()]) == []
    # faster over the run (caches warming, a shorter curriculum) is not a problem
    assert replay(_run(_drift(1.6, 1.0)), None, [SlowStepsDetector()]) == []


# -- level shift: slower over a few epochs, then staying slow ----------------------------------
REPO = Path(__file__).parents[2]


def _epochs(times: list[float]) -> list[StepRecord]:
    """One record per epoch whose duration is the epoch's (``time this epoch= 1.75``)."""
    return [StepRecord(step=e, epoch=e, loss=1.0, step_time=t) for e, t in enumerate(times, 1)]


def test_tf1_epochs_slower_from_epoch_4_and_staying_so() -> None:
    # bench/doctor_corpus DEV log (tensorflow issue 198): 1.75 s → 2.6-2.8 s from epoch 6 on
    report = diagnose(REPO / "bench/doctor_corpus/tf1_198_slower_epochs/log.txt")
    [f] = [f for f in report.findings if f.id == "slow-steps"]
    assert f.severity == "warning" and f.epochs[0] == 4 and f.epochs[-1] == 18
    assert 1.35 <= f.evidence["shift_ratio"] <= 1.5 and f.evidence["points"] == 18


def test_six_epoch_excerpt_of_the_same_log_is_only_a_note() -> None:
    report = diagnose(REPO / "tests/fixtures/logs/tf1_epoch_time_198/log.txt")
    [f] = [f for f in report.findings if f.id == "slow-steps"]
    assert f.severity == "info" and TOO_FEW in f.title and f.evidence["points"] == 6


def test_near_miss_level_shifts_that_are_noise_small_or_not_sustained() -> None:
    rng = random.Random(3)
    noisy = [2.0 * (1 + rng.uniform(-0.3, 0.3)) for _ in range(20)]
    assert replay(_epochs(noisy), None, [SlowStepsDetector()]) == []
    small = [2.0] * 8 + [2.4] * 12  # 20 % slower: under the 1.3× a shift must reach
    assert replay(_epochs(small), None, [SlowStepsDetector()]) == []
    faster = [2.6] * 8 + [1.8] * 12
    assert replay(_epochs(faster), None, [SlowStepsDetector()]) == []
    last_two = [2.0] * 18 + [3.0] * 2  # two slow epochs at the end: not a third of the run
    assert replay(_epochs(last_two), None, [SlowStepsDetector()]) == []
    back = [2.0] * 6 + [3.0] * 10 + [2.0] * 4  # slow for a while, then fast again by the end
    assert replay(_epochs(back), None, [SlowStepsDetector()]) == []


def test_level_shift_bulk_equals_per_record() -> None:
    recs = _epochs([1.75, 1.87, 2.05, 2.4, 2.56] + [2.65] * 13)
    one, many = SlowStepsDetector(), SlowStepsDetector()
    for r in recs:
        one.update(r)
    feed(many, Batch(recs))
    assert json.dumps(one.state_dict()) == json.dumps(many.state_dict())
    assert [f.to_json() for f in one.finish(None)] == [f.to_json() for f in many.finish(None)]
    assert [f.severity for f in one.finish(None)] == ["warning"]
