"""The policy ladder on scripted bad-step sequences."""

from __future__ import annotations

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.policy import Policy


def test_ladder_skip_then_rollback_then_backoff_then_abort() -> None:
    p = Policy(GuardConfig(rollback_after=2, escalate_window=10, max_rollbacks=2,
                           lr_backoff_window=50, lr_rewarm_steps=4))  # fmt: skip
    assert p.decide("spike", can_rollback=True, damaged=True).verdict == "skip"
    d = p.decide("spike", can_rollback=True, damaged=True)
    assert d.verdict == "rollback" and not d.backoff
    assert p.decide(None, can_rollback=True).verdict == "apply"
    p.decide("spike", can_rollback=True, damaged=True)
    d = p.decide("spike", can_rollback=True, damaged=True)
    assert d.verdict == "rollback" and d.backoff and p.lr_scale == 0.5 and p.lr_cap == 0.5
    assert [round(p.lr_factor(), 3)] == [0.125]  # re-warm: 1/4 of 0.5x
    for _ in range(4):
        p.decide(None, can_rollback=True)
    assert p.lr_factor() == 0.5
    p.decide("spike", can_rollback=True, damaged=True)
    d = p.decide("spike", can_rollback=True, damaged=True)
    assert d.verdict == "abort" and "2 rollbacks" in d.reason


def test_nonfinite_skips_are_harmless_never_escalate_but_count_for_abort() -> None:
    p = Policy(GuardConfig(rollback_after=2, max_consecutive_bad=5))
    verdicts = [p.decide("nonfinite", can_rollback=True).verdict for _ in range(5)]
    assert verdicts == ["skip"] * 4 + ["abort"]
    assert p.rollbacks == 0 and p.lr_cap is None


def test_damage_rolls_back_and_caps_the_lr_then_aborts_when_rollbacks_run_out() -> None:
    p = Policy(GuardConfig(max_rollbacks=1, lr_rewarm_steps=0))
    d = p.damage("weights non-finite", can_rollback=True, stable_lr=1e-2)
    assert d.verdict == "rollback" and d.backoff and p.lr_cap == 5e-3
    d = p.damage("weights non-finite", can_rollback=True, stable_lr=1e-2)
    assert d.verdict == "abort" and "max_rollbacks" in d.reason


def test_overflow_never_escalates_but_counts_for_abort() -> None:
    p = Policy(GuardConfig(rollback_after=2, max_consecutive_bad=4))
    verdicts = [p.decide("overflow", can_rollback=True).verdict for _ in range(4)]
    assert verdicts == ["skip", "skip", "skip", "abort"]


def test_without_snapshots_recurring_spikes_back_off_the_lr() -> None:
    p = Policy(GuardConfig(rollback_after=2))
    p.decide("spike", can_rollback=False, damaged=True)
    d = p.decide("spike", can_rollback=False, damaged=True)
    assert d.verdict == "skip" and d.backoff and p.lr_scale == 0.5


def test_state_round_trip() -> None:
    cfg = GuardConfig(rollback_after=2)
    a = Policy(cfg)
    for bad in ["spike", None, "spike", "nonfinite"]:
        a.decide(bad, can_rollback=True, damaged=True)  # type: ignore[arg-type]
    b = Policy(cfg)
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert a.decide("spike", can_rollback=True) == b.decide("spike", can_rollback=True)


def test_a_spike_right_after_the_lr_rose_backs_off_on_the_first_rollback() -> None:
    p = Policy(GuardConfig(rollback_after=2, lr_rewarm_steps=0))
    p.decide("spike", can_rollback=True, stable_lr=1e-3, lr_rose=True)
    d = p.decide("spike", can_rollback=True, stable_lr=1e-3, lr_rose=True)
    assert d.verdict == "rollback" and d.backoff and "scheduled LR rose" in d.reason
    # a cap, not a multiplier: the x100 schedule is brought back to half the stable LR ...
    assert p.lr_cap == 5e-4 and p.lr_factor(0.1) == 5e-3
    # ... and a schedule that decays below the cap runs untouched
    assert p.lr_factor(1e-4) == 1.0


def test_no_backoff_on_a_first_rollback_without_an_lr_rise() -> None:
    p = Policy(GuardConfig(rollback_after=2))
    p.decide("spike", can_rollback=True, stable_lr=1e-3, damaged=True)
    d = p.decide("spike", can_rollback=True, stable_lr=1e-3, damaged=True)
    assert d.verdict == "rollback" and not d.backoff and p.lr_cap is None
    assert p.lr_factor(1e-3) == 1.0


def test_repeated_backoffs_cap_below_the_previous_cap_then_abort_at_min_lr_scale() -> None:
    p = Policy(GuardConfig(rollback_after=1, lr_rewarm_steps=0, lr_backoff_factor=0.1,
                           min_lr_scale=5e-3, max_rollbacks=10))  # fmt: skip
    p.decide("spike", can_rollback=True, stable_lr=1.0, lr_rose=True)
    assert p.lr_cap == 0.1
    p.decide(
        "spike", can_rollback=True, stable_lr=1.0, damaged=True
    )  # recurring: cap from min(cap, stable)
    assert p.lr_cap is not None and abs(p.lr_cap - 0.01) < 1e-12
    d = p.decide("spike", can_rollback=True, stable_lr=1.0, damaged=True)  # 1e-3 < 5e-3 x 1.0
    assert d.verdict == "abort" and "min_lr_scale" in d.reason


def test_an_isolated_burst_then_healthy_steps_never_rolls_back() -> None:
    """The rescue suite's corrupt batches: NaN at 30 and 31, x1e6 at 50, all skipped. The 18
    healthy steps between say the model is fine; three bad steps within 25 must not roll back."""
    p = Policy(GuardConfig())  # rollback_after 3 within 25: the count resets after 12 clean
    verdicts = []
    for step in range(60):
        bad = "nonfinite" if step in (30, 31) else ("spike" if step == 50 else None)
        verdicts.append(p.decide(bad, can_rollback=True).verdict)  # type: ignore[arg-type]
    assert "rollback" not in verdicts and verdicts.count("skip") == 3


def test_spikes_recurring_every_12_steps_still_escalate() -> None:
    p = Policy(GuardConfig())
    verdicts = [
        p.decide(
            "spike" if step % 12 == 0 and step else None, can_rollback=True, damaged=True
        ).verdict
        for step in range(40)
    ]
    assert verdicts[36] == "rollback"  # 12, 24, 36: 3 within 25, 11 clean steps between each


def test_skipped_spikes_without_damage_never_roll_back_and_a_long_burst_is_accepted() -> None:
    """A mislabelled shard: every batch's loss spikes while the weights stay those that gave a
    healthy loss before it (each spike is skipped). No rollback, no LR cap, no abort: after
    ``max_consecutive_bad`` the new loss level is accepted (the spike baseline is rebuilt)."""
    p = Policy(GuardConfig(rollback_after=2, max_consecutive_bad=5))
    decisions = [p.decide("spike", can_rollback=True, stable_lr=1e-3) for _ in range(6)]
    assert [d.verdict for d in decisions] == ["skip"] * 4 + ["apply", "skip"]
    assert decisions[4].rebase and "loss level changed" in decisions[4].reason
    assert p.rollbacks == 0 and p.lr_cap is None
    # the same burst with evidence of damage (the smoothed loss already climbing) escalates
    q = Policy(GuardConfig(rollback_after=2))
    q.decide("spike", can_rollback=True, damaged=True)
    assert q.decide("spike", can_rollback=True, damaged=True).verdict == "rollback"
