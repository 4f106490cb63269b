"""The start-up rule (``guard/startup.py``) on scripted losses."""

from __future__ import annotations

from stabletrain.guard.startup import StartupWatch


def test_a_loss_above_its_first_value_fires_once_then_the_ramp_is_watched() -> None:
    w = StartupWatch(steps=50, rise=0.25)
    # one far outlier batch (> 4 x 4.5) is the data's; a climb that lasts is the weights'
    fired = [w.observe(i, v) for i, v in enumerate((4.5, 4.0, 50.0, 6.0))]
    # 6.0 takes the smoothed loss 5% above its early best: the overshoot rule asks for the
    # weight check, which the guard forgets when the weights moved less than 1.5x their norm
    assert fired == [None, None, None, "ramp"] and w.rule == "early-best"
    w.not_the_updates()
    # smoothed (span 5, from 4.5): 4.5, 4.0, 6.0 → 4.86; 8.0 → 5.98 > 1.25 x 4.5 = 5.625
    assert w.observe(4, 8.0) == "ramp" and w.fires == 1 and w.rule == "first-loss"
    # the ramp: the smoothed loss falls, then turns up by more than 10% from its lowest
    assert [w.observe_ramp(True, v) for v in (4.0, 3.0, 2.5, 2.7)] == [None] * 4
    assert w.observe_ramp(True, 2.8) == "cap" and w.fires == 2
    assert w.observe_ramp(True, 9.0) is None  # only the first ramp is watched
    assert w.observe(60, 9.0) is None  # past the start-up window


def test_a_falling_start_never_fires_and_state_round_trips() -> None:
    w = StartupWatch(steps=50, rise=0.25)
    for i, v in enumerate((2.3, 2.33, 2.2, 2.0, 1.5)):
        assert w.observe(i, v) is None
    other = StartupWatch(steps=50, rise=0.25)
    other.load_state_dict(w.state_dict())
    assert other.state_dict() == w.state_dict()


def test_the_early_best_given_up_asks_for_the_weight_check_at_most_every_5_steps() -> None:
    """A loss that never climbs above its first value but gives up its early best: the
    overshoot rule fires (the guard then needs the weights 1.5x their norm away from the
    start); a check the weights did not confirm is forgotten, and the next waits 5 steps."""
    w = StartupWatch(steps=50, rise=0.25)
    # smoothed (span 5) from 4.5: falls to its lowest, then climbs 5% above it
    # (3.25 after 2.9; 3.8 takes it to 3.45 > 1.05 x 3.25)
    fired = [w.observe(i, v) for i, v in enumerate((4.5, 3.9, 3.3, 3.1, 2.9, 3.8))]
    assert fired == [None] * 5 + ["ramp"], fired
    assert w.rule == "early-best" and w.moved_needed == 1.5
    w.not_the_updates()
    assert w.fires == 0 and w.first == 4.5  # the first loss stays the first-loss reference
    assert [w.observe(i, 3.8) for i in (6, 7, 8, 9)] == [None] * 4  # within 5 steps
    assert w.observe(10, 3.8) == "ramp"
    other = StartupWatch(steps=50, rise=0.25)
    other.load_state_dict(w.state_dict())
    assert other.state_dict() == w.state_dict()
