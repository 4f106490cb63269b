from __future__ import annotations

import json
import random

from stabletrain.detectors.perf import SlowStepsDetector
from stabletrain.detectors.registry import replay
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
