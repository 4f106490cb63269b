from __future__ import annotations

import json

from stabletrain.detectors.clipping import ClippingDetector
from stabletrain.detectors.registry import replay
from stabletrain.records import ConfigFacts, StepRecord


def _run(norms: list[float], clip: float | None = None, coef: bool = False) -> list[StepRecord]:
    return [
        StepRecord(
            step=i,
            epoch=i // 50,
            grad_norm=g,
            clip_coef=min(1.0, clip / g) if coef and clip else None,
        )
        for i, g in enumerate(norms)
    ]


def test_seed000_near_threshold_lowers_clip_to_two(scenarios) -> None:
    recs, facts = scenarios.seed000()
    [f] = replay(recs, facts, [ClippingDetector()])
    assert f.id == "clip-near-threshold" and f.severity == "warning"
    assert 3.3 < f.evidence["median_grad_norm"] < 3.7
    assert f.fixes[0].changes == {"max_grad_norm": 2.0}
    assert f.epochs == list(range(10))


def test_near_miss_median_at_sixty_percent_of_clip() -> None:
    norms = [2.4 + 0.01 * (i % 7) for i in range(200)]
    facts = ConfigFacts()
    facts.set("max_grad_norm", 4.0, key="max_grad_norm")
    assert replay(_run(norms), facts, [ClippingDetector()]) == []


def test_seed003_saturated_under_adam_lowers_lr_only(scenarios) -> None:
    recs, facts = scenarios.seed003()
    [f] = replay(recs, facts, [ClippingDetector()])
    assert f.id == "clip-saturated"
    assert f.evidence["fraction_clipped"] > 0.8
    changes = {k: v for fix in f.fixes for k, v in fix.changes.items()}
    # under Adam a looser clip would only hide a run that is too hot (this used to also advise
    # raising the clip 1.5x, against the direction of an instability finding)
    assert changes == {"learning_rate": 1e-5}
    assert "direction" not in f.evidence
    assert 1 in f.epochs and 6 in f.epochs


def test_saturated_under_sgd_loosens_the_clip_and_keeps_the_lr() -> None:
    # SGD at clip 0.05 with norms ~1.5: every step is scaled down 30x, progress stalls
    norms = [1.5 + 0.1 * (i % 5) for i in range(100)]
    facts = ConfigFacts()
    facts.set("optimizer", "sgd", key="optim.name")
    facts.set("lr", 0.05, key="optim.lr")
    facts.set("max_grad_norm", 0.05, key="train.max_grad_norm")
    [f] = replay(_run(norms, clip=0.05, coef=True), facts, [ClippingDetector()])
    assert f.id == "clip-saturated" and f.evidence["direction"] == "progress"
    assert all("optim.lr" not in fix.changes for fix in f.fixes)
    assert f.fixes[0].changes["train.max_grad_norm"] > 1.9  # above the usual norm


def test_saturated_without_config_infers_clip_from_clip_coef() -> None:
    norms = [1.5 + 0.1 * (i % 5) for i in range(100)]
    [f] = replay(_run(norms, clip=1.0, coef=True), None, [ClippingDetector()])
    assert f.id == "clip-saturated" and abs(f.evidence["max_grad_norm"] - 1.0) < 1e-9


def test_saturated_near_miss_clipping_on_a_third_of_steps() -> None:
    norms = [1.5 if i % 3 == 0 else 0.5 for i in range(300)]
    facts = ConfigFacts()
    facts.set("max_grad_norm", 1.0)
    assert replay(_run(norms), facts, [ClippingDetector()]) == []


def test_state_dict_round_trip_mid_run(scenarios) -> None:
    recs, facts = scenarios.seed000()
    a, b = ClippingDetector(), ClippingDetector()
    for r in recs[:500]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in recs[500:]:
        a.update(r)
        b.update(r)
    assert [f.to_json() for f in a.finish(facts)] == [f.to_json() for f in b.finish(facts)]


def test_saturated_near_miss_early_clipping_while_norms_settle() -> None:
    # the reference digits run's shape: norms 4.5 → 0.3 over 8 epochs, clipped early only
    norms = [4.5 * 0.65**e * (1 + 0.1 * (i % 5)) for e in range(8) for i in range(50)]
    facts = ConfigFacts()
    facts.set("max_grad_norm", 1.0)
    assert replay(_run(norms), facts, [ClippingDetector()]) == []


def test_near_threshold_says_how_often_the_clip_engaged() -> None:
    """Seed 000's shape (median at ~0.9x the clip, clip rarely engaged) says the clip almost
    never engages; a median at ~0.95x with 40% of late steps over the clip must not say that."""
    facts = ConfigFacts()
    facts.set("max_grad_norm", 4.0, key="max_grad_norm")
    rare = [3.5 + 0.01 * (i % 7) for i in range(200)]
    [f] = replay(_run(rare), facts, [ClippingDetector()])
    assert f.id == "clip-near-threshold" and "almost never engages" in f.explanation
    often = [3.8 + 0.01 * (i % 7) if i % 5 > 1 else 4.4 for i in range(200)]
    [f] = replay(_run(often), facts, [ClippingDetector()])
    assert f.id == "clip-near-threshold", f.evidence
    assert 0.35 < f.evidence["fraction_clipped_late"] < 0.45
    assert "almost never engages" not in f.explanation and "trims 40%" in f.explanation
