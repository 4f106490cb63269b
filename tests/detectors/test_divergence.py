"""loss-divergence on scripted loss sequences with hand-computed expectations."""

from __future__ import annotations

import math

from stabletrain.detectors.divergence import DivergenceDetector, Ema
from stabletrain.records import StepRecord


def _feed(det: DivergenceDetector, losses: list[float]) -> list[int]:
    fired = []
    for i, v in enumerate(losses):
        if det.update(StepRecord(step=i, loss=v, grad_norm=1.0 + i / 100)) is not None:
            fired.append(i)
    return fired


def test_ema_is_bias_corrected() -> None:
    e = Ema(3)  # alpha 0.5
    assert e.add(4.0) == 4.0
    assert e.add(2.0) == (0.25 * 4 + 0.5 * 2) / 0.75


def test_a_climb_back_above_the_start_fires_once_after_patience() -> None:
    # 4.0 for 10 steps (start), down to 1.0 by step 40, then back up to 5.0 by step 140
    down = [4.0] * 10 + [4.0 - 3.0 * i / 30 for i in range(1, 31)]
    up = [1.0 + 4.0 * i / 100 for i in range(1, 101)]
    det = DivergenceDetector(span=10, patience=10)
    fired = _feed(det, down + up)
    assert len(fired) >= 1
    (first, *_) = fired
    # the EMA (span 10) lags the climb by ~4.5 steps; best ~1.0, start 4.0: the threshold is
    # 2.5, which the raw loss crosses at step 40 + 37.5; the EMA ~4.5 steps later; +10 patience
    assert 85 <= first <= 95, fired
    ep = det.episodes[0]
    assert ep["best_step"] in range(38, 46) and ep["start"] == 4.0
    assert ep["given_back"] > 0.5 and ep["grad_norm_ratio"] > 1.0
    (f,) = det.finish()
    assert f.id == "loss-divergence" and "learning rate" in f.fixes[0].description.lower()


def test_noise_and_a_plateau_never_fire() -> None:
    losses = [2.0 / (1 + i / 50) + 0.3 * math.sin(i * 1.7) for i in range(2000)]
    assert _feed(DivergenceDetector(), losses) == []


def test_a_run_without_progress_is_not_judged() -> None:
    losses = [3.0 + 0.01 * (i % 7) for i in range(300)] + [3.5] * 300
    assert _feed(DivergenceDetector(span=20), losses) == []


def test_skipped_and_nonfinite_records_are_ignored() -> None:
    det = DivergenceDetector(span=5)
    det.update(StepRecord(step=0, loss=math.nan))
    det.update(StepRecord(step=1, loss=100.0, skipped=True))
    assert det.smoothed is None


def test_state_round_trip() -> None:
    down = [4.0 - 3.0 * i / 60 for i in range(60)]
    a = DivergenceDetector(span=10)
    _feed(a, down)
    b = DivergenceDetector(span=10)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    rest = [1.0 + i / 10 for i in range(80)]
    assert _feed(a, rest) == _feed(b, rest)
