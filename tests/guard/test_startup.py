"""The start-up rule (``guard/startup.py``) on scripted losses."""

from __future__ import annotations

from stabletrain.guard.startup import StartupWatch


def test_a_loss_above_its_first_value_fires_once_then_the_ramp_is_watched() -> None:
    w = StartupWatch(steps=50, rise=0.25)
    # one far outlier batch (> 4 x 4.5) is the data's; a climb that lasts is the weights'
    assert [w.observe(i, v) for i, v in enumerate((4.5, 4.0, 50.0, 6.0))] == [None] * 4
    # smoothed (span 5, from 4.5): 4.5, 4.0, 6.0 → 4.86; 8.0 → 5.98 > 1.25 x 4.5 = 5.625
    assert w.observe(4, 8.0) == "ramp" and w.fires == 1
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
