from __future__ import annotations

import json

from stabletrain.detectors.base import Detector
from stabletrain.detectors.registry import default_detectors, replay
from stabletrain.detectors.sanity import RULES as SANITY_RULES

ALL_IDS = {
    "nonfinite-loss",
    "bad-batch",
    "lr-jump",
    "bad-init",
    "underfitting",
    "nonfinite-grad",
    "loss-spike",
    "grad-spike",
    "loss-scale-collapse",
    "fp16-overflow",
    "clip-near-threshold",
    "clip-saturated",
    "grad-norm-growth",
    "warmup-short",
    "warmup-too-long",
    "loss-divergence",
    "chance-level",
    "lr-constant",
    "lr-zero",
    "scheduler-late",
    "patience-conflict",
    "eval-unstable",
    "overfitting",
    "duplicate-logging",
    "run-restart",
    "slow-steps",
    "run-failed",
    "no-learning",
    "too-few-steps",
    *(r.id for r in SANITY_RULES),  # the config sanity table (detectors/sanity.py)
}


def test_registry_covers_every_log_finding_id_with_fresh_instances() -> None:
    dets = default_detectors()
    assert all(isinstance(d, Detector) for d in dets)
    assert {i for d in dets for i in d.ids} == ALL_IDS
    assert not any(a is b for a, b in zip(dets, default_detectors(), strict=True))


def test_clean_run_gives_no_warnings(scenarios) -> None:
    recs, facts = scenarios.clean_run()
    found = replay(recs, facts)
    assert [f.id for f in found if f.severity != "info"] == []


def _ids(findings) -> set[str]:
    return {f.id for f in findings if f.severity != "info"}


def test_seed_scenarios_through_all_detectors(scenarios) -> None:
    recs, facts = scenarios.seed000()
    assert "clip-near-threshold" in _ids(replay(recs, facts))
    recs, facts = scenarios.seed001()
    assert {"scheduler-late", "patience-conflict", "loss-divergence"} <= _ids(replay(recs, facts))
    recs, facts = scenarios.seed002()
    assert {"chance-level", "nonfinite-grad"} <= _ids(replay(recs, facts))
    recs, facts = scenarios.seed003()
    found = _ids(replay(recs, facts))
    assert {"clip-saturated", "grad-norm-growth", "lr-constant", "eval-unstable"} <= found
    assert "chance-level" not in found
    clean, raw, facts = scenarios.seed004()
    assert "duplicate-logging" in _ids(replay(clean, facts, raw=raw))


def test_every_detector_state_round_trips_through_json(scenarios) -> None:
    recs, facts = scenarios.seed003()
    a, b = default_detectors(), default_detectors()
    half = len(recs) // 2
    for d in a:
        for r in recs[:half]:
            d.update(r)
    for da, db in zip(a, b, strict=True):
        db.load_state_dict(json.loads(json.dumps(da.state_dict())))
    rest = recs[half:]
    assert [f.to_json() for f in replay(rest, facts, a)] == [
        f.to_json() for f in replay(rest, facts, b)
    ]
