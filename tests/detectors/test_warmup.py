from __future__ import annotations

import json

from stabletrain.detectors.registry import replay
from stabletrain.detectors.warmup import WarmupDetector
from stabletrain.records import ConfigFacts, StepRecord


def _run(
    spikes: set[int], clipped: set[int] = frozenset(), n: int = 500, ramp: int = 25
) -> list[StepRecord]:
    recs = []
    for t in range(n):
        lr = 1e-3 * min(1.0, (t + 1) / ramp)
        s = t in spikes
        recs.append(
            StepRecord(
                step=t,
                loss=(3.0 if s else 1.0) - t / 1000,
                grad_norm=10.0 if s else 1.0,
                lr=lr,
                clip_coef=0.5 if t in clipped else 1.0,
            )
        )
    return recs


def _facts() -> ConfigFacts:
    f = ConfigFacts()
    f.set("warmup_ratio", 0.05, key="warmup_ratio")
    return f


def test_spikes_while_lr_ramps_means_warmup_too_short() -> None:
    [f] = replay(_run({20, 24, 28, 30, 33}), _facts(), [WarmupDetector()])
    assert f.id == "warmup-short" and f.severity == "warning"
    assert f.steps == [20, 24, 28, 30, 33]
    assert f.evidence["early_window_end"] == 48 and f.evidence["lr_ramp_steps"] == 24
    assert f.fixes[0].changes == {"warmup_ratio": 0.1}  # seed 000: 0.05 → 0.1


def test_near_miss_spikes_spread_over_the_run() -> None:
    assert replay(_run({20, 150, 280, 400, 470}), _facts(), [WarmupDetector()]) == []


def test_early_clipping_only_is_info() -> None:
    [f] = replay(_run(set(), clipped=set(range(5, 30))), None, [WarmupDetector()])
    assert f.severity == "info" and f.fixes[0].changes == {"warmup_steps": 100}


def test_state_dict_round_trip() -> None:
    recs = _run({20, 24, 28, 30, 33})
    a, b = WarmupDetector(), WarmupDetector()
    for r in recs[:26]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in recs[26:]:
        a.update(r)
        b.update(r)
    assert [f.to_json() for f in a.finish(None)] == [f.to_json() for f in b.finish(None)]
