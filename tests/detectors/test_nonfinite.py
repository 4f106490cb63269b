"""NonFiniteDetector: per-step findings, one aggregated finding per id, AMP overflows left out."""

from __future__ import annotations

from stabletrain.detectors.nonfinite import NonFiniteDetector
from stabletrain.records import ConfigFacts, StepRecord

NAN, INF = float("nan"), float("inf")


def test_isolated_skipped_nan_loss_is_a_warning_about_data() -> None:
    det = NonFiniteDetector()
    hits = []
    for i in range(20):
        rec = StepRecord(step=i, loss=NAN if i == 7 else 1.0, skipped=i == 7)
        if det.update(rec) is not None:
            hits.append(i)
    assert hits == [7]
    (f,) = det.finish()
    assert f.id == "nonfinite-loss" and f.severity == "warning"
    assert f.steps == [7] and f.evidence["skipped"] == 1 and f.evidence["recovered"]
    assert "bad batch" in f.explanation


def test_diverged_run_is_an_error_with_lr_fix_in_user_keys() -> None:
    det = NonFiniteDetector()
    # a divergence builds up: the grad norm doubles on the steps before it overflows
    grads = [1.0] * 26 + [2.0, 4.0, 8.0]
    for i in range(50):
        det.update(
            StepRecord(step=i, loss=1.0 if i < 30 else NAN, grad_norm=grads[i] if i < 29 else INF)
        )
    facts = ConfigFacts()
    facts.set("lr", 0.3, key="learning_rate")
    facts.set("precision", "fp16", key="fp16")
    found = {f.id: f for f in det.finish(facts)}
    assert set(found) == {"nonfinite-loss", "nonfinite-grad"}
    loss = found["nonfinite-loss"]
    assert loss.severity == "error" and loss.steps == list(range(30, 50))
    assert not loss.evidence["recovered"]
    assert found["nonfinite-grad"].steps == [29]
    changes = {k: v for fix in loss.fixes for k, v in fix.changes.items()}
    assert changes["learning_rate"] == 0.1
    assert changes["fp16"] is False and changes["bf16"] is True  # HF flags: both keys
    assert "bad-batch" not in found and "rose" in loss.explanation


def test_amp_overflow_with_finite_loss_is_not_double_reported() -> None:
    det = NonFiniteDetector()
    det.update(StepRecord(step=0, loss=1.0, grad_norm=INF, loss_scale=65536.0, skipped=True))
    assert det.finish() == []


def test_state_round_trip() -> None:
    a = NonFiniteDetector()
    for i in range(5):
        a.update(StepRecord(step=i, loss=NAN if i == 2 else 1.0, epoch=0.0))
    b = NonFiniteDetector()
    b.load_state_dict(a.state_dict())
    assert b.state_dict() == a.state_dict()
    assert [f.to_json() for f in b.finish()] == [f.to_json() for f in a.finish()]


def _scaled(steps: list[tuple[float, float]]) -> NonFiniteDetector:
    """(grad norm, loss scale) per step, loss finite, as a GradScaler loop logs them."""
    det = NonFiniteDetector()
    for i, (g, s) in enumerate(steps):
        det.update(StepRecord(step=100 + i, loss=2.0, grad_norm=g, loss_scale=s))
    return det


def test_inf_grads_at_the_scale_floor_are_nonfinite() -> None:
    # seed 004: the scale halves on every step below 1 and the grads stay inf
    steps = [(4.0, 8192.0)] * 5 + [(INF, 8192.0 / 2**k) for k in range(20)]
    (f,) = _scaled(steps).finish()
    floor_steps = [100 + 5 + k for k in range(20) if 8192.0 / 2**k <= 1.0]
    assert f.id == "nonfinite-grad" and f.steps == floor_steps and f.severity == "error"


def test_ordinary_overflow_skips_stay_fp16_overflow() -> None:
    # near miss: the scaler backs off 65536 -> 32768 -> 16384 and the grads come back finite
    steps = [(3.0, 65536.0)] * 5 + [(INF, 65536.0), (INF, 32768.0), (2.9, 16384.0), (3.1, 16384.0)]
    assert _scaled(steps).finish() == []
    # one inf at a scale above the floor, long after another: probing again, not non-finite
    steps = [(INF, 4096.0)] + [(3.0, 2048.0)] * 50 + [(INF, 4096.0)]
    assert _scaled(steps).finish() == []


def test_inf_repeated_at_an_unchanged_scale_is_nonfinite() -> None:
    # a static scale (or one pinned at its minimum) does not back off: the second inf is no probe
    steps = [(3.0, 1024.0)] * 5 + [(INF, 1024.0), (INF, 1024.0), (INF, 1024.0)]
    (f,) = _scaled(steps).finish()
    assert f.steps == [106, 107]


def test_nonfinite_grad_state_round_trip_keeps_the_previous_scale() -> None:
    a = _scaled([(3.0, 1024.0), (INF, 1024.0)])
    b = NonFiniteDetector()
    b.load_state_dict(a.state_dict())
    for det in (a, b):
        det.update(StepRecord(step=200, loss=2.0, grad_norm=INF, loss_scale=1024.0))
    assert a.state_dict() == b.state_dict() and b.bad["nonfinite-grad"] == [200]


def test_intermittent_nan_ending_on_nan_is_not_called_never_finite_again(tmp_path) -> None:
    """An HF fp16 run pasted into gemma_pytorch#24: NaN losses come and go, the last is NaN. The
    report must not claim the loss "never became finite again" (it did, 11 times); per-record
    and bulk (the doctor on the log) agree."""
    from stabletrain.doctor import diagnose

    losses = [5.6, 5.3, 5.8, 5.7, 5.6, NAN, 5.1, NAN, 5.9, 6.1, 5.9, 5.4, 5.2, NAN, NAN, 5.5, NAN]
    losses += [5.5, 5.0, NAN]
    det = NonFiniteDetector()
    for i, v in enumerate(losses):
        det.update(StepRecord(step=i + 1, loss=v))
    (live,) = det.finish()
    log = tmp_path / "log.txt"
    log.write_text("".join(f"{{'loss': {v}, 'learning_rate': 0.0002, 'epoch': 0.09}}\n"
                           for v in losses))  # fmt: skip
    (replayed,) = [f for f in diagnose(log).findings if f.id == "nonfinite-loss"]
    for f in (live, replayed):
        assert f.severity == "error" and not f.evidence["recovered"]
        assert "never became finite again" not in f.explanation
        assert "log ends on a non-finite loss" in f.explanation


def _eval(step: int, v: float) -> StepRecord:
    return StepRecord(step=step, kind="eval", eval_loss=v)


def test_a_nonfinite_eval_loss_is_a_nonfinite_loss() -> None:
    """A log whose train lines were not read or stayed finite, with ``test avg ppl: nan`` or
    ``val_loss: nan``: the model's loss went non-finite. An error when no later evaluation was
    finite, a warning when one was; no second finding when the train loss was non-finite too."""
    det = NonFiniteDetector()
    for r in (StepRecord(step=1, loss=2.0), _eval(1, 1.9), _eval(2, float("nan"))):
        det.update(r)
    (f,) = det.finish()
    assert (f.id, f.severity, f.steps) == ("nonfinite-loss", "error", [2])
    det2 = NonFiniteDetector()
    for r in (_eval(1, float("inf")), _eval(2, 1.5)):
        det2.update(r)
    assert [(f.id, f.severity) for f in det2.finish()] == [("nonfinite-loss", "warning")]
    det3 = NonFiniteDetector()
    for r in (StepRecord(step=1, loss=float("nan")), _eval(1, float("nan"))):
        det3.update(r)
    assert [f.id for f in det3.finish()] == ["nonfinite-loss"]
    state = det.state_dict()
    again = NonFiniteDetector()
    again.load_state_dict(state)
    assert again.eval_bad == [2]


def test_a_nonfinite_eval_loss_is_found_through_the_doctor(tmp_path) -> None:
    # the doctor feeds records in bulk (update_many): the eval records go through it too
    from stabletrain import diagnose

    log = tmp_path / "train.log"
    lines = [f"step {s} | loss {2.0 - s / 100:.3f}" for s in range(1, 41)]
    log.write_text("\n".join([*lines, "step 40 | val_loss nan"]) + "\n")
    found = [(f.id, f.severity) for f in diagnose(str(log)).findings]
    assert ("nonfinite-loss", "error") in found
