from __future__ import annotations

import json
import math

from stabletrain.detectors.registry import replay
from stabletrain.detectors.schedules import LRScheduleDetector
from stabletrain.records import ConfigFacts, StepRecord


def _ids(findings) -> dict:
    return {f.id: f for f in findings}


def test_seed001_scheduler_14_epochs_late(scenarios) -> None:
    recs, facts = scenarios.seed001()
    f = _ids(replay(recs, facts, [LRScheduleDetector()]))["scheduler-late"]
    assert f.evidence["best_epoch"] == 10 and f.evidence["cut_epoch"] == 24
    assert f.evidence["epochs_late"] == 14 and f.evidence["spike_epoch"] == 13
    assert f.epochs == [10, 24] and "14 epochs after" in f.title
    assert f.fixes[0].changes == {"training.scheduler_patience": 5}
    assert f.fixes[1].changes == {"training.scheduler": "cosine"}


def test_seed001_patience_conflict_from_config(scenarios) -> None:
    recs, facts = scenarios.seed001()
    f = _ids(replay(recs, facts, [LRScheduleDetector()]))["patience-conflict"]
    assert f.fixes[0].changes == {
        "training.scheduler_patience": 5,
        "training.early_stopping_patience": 7,
    }
    assert f.source == "config"  # the LR was cut in this log: not confirmed


def test_patience_conflict_confirmed_when_run_stops_without_a_cut() -> None:
    facts = ConfigFacts()
    facts.set("plateau_patience", 10, key="scheduler_patience")
    facts.set("early_stop_patience", 10, key="early_stopping_patience")
    recs = [StepRecord(step=e, epoch=e, loss=1.0 / (1 + min(e, 5)), lr=1e-3) for e in range(16)]
    f = _ids(replay(recs, facts, [LRScheduleDetector()]))["patience-conflict"]
    assert f.source == "both" and "epoch 15" in f.explanation


def test_patience_conflict_near_miss() -> None:
    facts = ConfigFacts()
    facts.set("plateau_patience", 3)
    facts.set("early_stop_patience", 7)
    assert "patience-conflict" not in _ids(replay([], facts, [LRScheduleDetector()]))


def test_scheduler_late_near_miss_prompt_cut(scenarios) -> None:
    recs, facts = scenarios.seed001()
    # same run, but the plateau scheduler cut the LR at epoch 13, 3 epochs after the best
    for r in recs:
        if r.kind == "train":
            r.lr = 5e-4 if r.epoch < 13 else 2.5e-4
    assert "scheduler-late" not in _ids(replay(recs, facts, [LRScheduleDetector()]))


def test_cosine_per_epoch_is_not_a_late_cut() -> None:
    # no config: per-epoch cosine drops >20 % near the end, but it is not piecewise constant
    recs = [
        StepRecord(
            step=e,
            epoch=e,
            loss=1.0 / (1 + e) if e < 5 else 0.2,
            lr=1e-3 * 0.5 * (1 + math.cos(math.pi * e / 20)),
        )
        for e in range(20)
    ]
    assert replay(recs, None, [LRScheduleDetector()]) == []


def test_seed003_lr_constant_while_eval_plateaus(scenarios) -> None:
    recs, facts = scenarios.seed003()
    f = _ids(replay(recs, facts, [LRScheduleDetector()]))["lr-constant"]
    assert f.evidence["points_since_best"] == 4 and f.evidence["best_epoch"] == 1
    assert f.epochs == [2, 3, 4, 5]
    assert f.fixes[0].changes == {"scheduler_patience": 3}


def test_lr_constant_near_miss_still_improving(scenarios) -> None:
    recs, facts = scenarios.seed003()
    recs = [r for r in recs if r.kind == "train"] + [
        StepRecord(step=e * 60, kind="eval", epoch=e, eval_loss=0.8 - 0.05 * e) for e in range(6)
    ]
    assert "lr-constant" not in _ids(replay(recs, facts, [LRScheduleDetector()]))


def test_lr_constant_needs_a_configured_schedule(scenarios) -> None:
    recs, _ = scenarios.seed003()
    assert replay(recs, None, [LRScheduleDetector()]) == []


def test_lr_zero_all_steps_is_error_and_cosine_end_is_not() -> None:
    facts = ConfigFacts()
    facts.set("lr", 0.0, key="optim.lr")
    [f] = replay(
        [StepRecord(step=i, lr=0.0, loss=1.0) for i in range(50)], facts, [LRScheduleDetector()]
    )
    assert f.id == "lr-zero" and f.severity == "error" and f.fixes[0].changes == {"optim.lr": 1e-3}
    # near miss: warmup from 0 and a cosine that reaches 0 on the last step only
    lrs = [0.0] + [1e-3] * 98 + [0.0]
    assert (
        replay([StepRecord(step=i, lr=v) for i, v in enumerate(lrs)], None, [LRScheduleDetector()])
        == []
    )


def test_lr_zero_stretch_mid_run_is_warning() -> None:
    lrs = [1e-3] * 50 + [0.0] * 10 + [1e-3] * 40
    [f] = replay(
        [StepRecord(step=i, lr=v) for i, v in enumerate(lrs)], None, [LRScheduleDetector()]
    )
    assert f.id == "lr-zero" and f.severity == "warning" and f.steps == [50]


def test_state_dict_round_trip(scenarios) -> None:
    recs, facts = scenarios.seed001()
    a, b = LRScheduleDetector(), LRScheduleDetector()
    for r in recs[:30]:
        a.update(r)
    b.load_state_dict(json.loads(json.dumps(a.state_dict())))
    for r in recs[30:]:
        a.update(r)
        b.update(r)
    assert [f.to_json() for f in a.finish(facts)] == [f.to_json() for f in b.finish(facts)]


def test_lr_constant_near_miss_free_form_lambda_schedule(scenarios) -> None:
    # a LambdaLR may well be constant on purpose (fish-speech: constant after 10 warmup steps)
    recs, _ = scenarios.seed003()
    facts = ConfigFacts()
    facts.set("schedule", "lambdalr", key="model.lr_scheduler")
    assert "lr-constant" not in _ids(replay(recs, facts, [LRScheduleDetector()]))


def test_scheduler_late_near_miss_step_decay_after_a_noisy_plateau() -> None:
    # a healthy StepLR run (no config): the loss flattens by epoch 15 and wiggles ±0.5 % until
    # the LR step at epoch 30. Its lowest epoch (23) is just the luckiest one: nothing degraded
    # while the scheduler waited, so the cut is not "late"
    wiggle = [0.004, -0.003, 0.002, -0.005, 0.003, -0.002, 0.005, -0.004, 0.001, -0.001]
    recs = []
    for e in range(40):
        loss = 0.6 + 1.4 * math.exp(-e / 2) + wiggle[e % 10] * 0.6
        lr = 0.1 if e < 30 else 0.01
        recs += [StepRecord(step=e * 10 + i, epoch=e, loss=loss, lr=lr) for i in range(10)]
    assert "scheduler-late" not in {f.id for f in replay(recs, None, [LRScheduleDetector()])}
