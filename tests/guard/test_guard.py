"""The guard's step on real tiny models with faults injected as real runs get them."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from stabletrain.errors import ConfigError, TrainingAborted
from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.logs.runlog import RunLog


def _events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]


def _linear(
    lr: float = 1e-2, **cfg: object
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Guard]:
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.1)
    return model, opt, Guard(model, opt, config=GuardConfig(**cfg))  # type: ignore[arg-type]


def _train(
    guard: Guard, model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, steps: range
) -> None:
    for i in steps:
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))


def test_nan_batch_no_backward_no_step_state_bitwise_unchanged(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model, opt, guard = _linear()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.99)
    guard.scheduler = sched
    _train(guard, model, x, y, range(10))
    before = h.snapshot_state(model, opt)
    epoch_before = sched.last_epoch
    bad = x[:32].clone()
    bad[3, 5] = float("nan")  # one corrupted sample, as a broken pipeline delivers it
    loss = F.cross_entropy(model(bad), y[:32])
    assert guard.backward(loss) is False
    assert all(p.grad is None for p in model.parameters())  # no backward happened
    out = guard.optimizer_step()
    assert not out.applied and out.action == "skip_nonfinite_loss" and math.isnan(out.loss or 0.0)
    assert h.same(before, h.snapshot_state(model, opt))  # Adam moments, step counts, weights
    assert sched.last_epoch == epoch_before
    _train(guard, model, x, y, range(10, 12))
    assert guard.last_outcome is not None and guard.last_outcome.applied


def test_fp16_overflow_skips_with_state_untouched_and_scaler_backs_off(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    guard = Guard(model, opt, scaler=scaler)
    _train(guard, model, x, y, range(3))  # also lets the scaler settle on this model
    before = h.snapshot_state(model, opt)
    scale = scaler.get_scale()
    # inputs of magnitude ~1e3: the loss is finite, but the fp16 weight grads overflow (> 65504)
    with torch.autocast("cpu", dtype=torch.float16):
        logits = model(x[:64] * 1e3)
    out = guard.step(F.cross_entropy(logits.float(), y[:64], reduction="sum"))
    assert out.action == "skip_nonfinite_grad" and not out.applied
    assert (
        out.loss is not None and math.isfinite(out.loss) and not math.isfinite(out.grad_norm or 0.0)
    )
    assert h.same(before, h.snapshot_state(model, opt))
    assert scaler.get_scale() == scale / 2
    assert all(p.grad is None for p in model.parameters())  # zeroed (set to None) after the skip


def test_spike_batch_1e6_skipped_then_training_continues(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model, opt, guard = _linear()
    _train(guard, model, x, y, range(40))
    before = h.snapshot_state(model, opt)
    out = guard.step(F.cross_entropy(model(x[:32] * 1e6), y[:32]))
    assert out.action == "skip_spike" and not out.applied
    assert h.same(before, h.snapshot_state(model, opt))
    _train(guard, model, x, y, range(41, 60))
    assert all(torch.isfinite(p).all() for p in model.parameters())
    (f,) = [f for f in guard.finish() if f.id == "loss-spike"]
    assert f.steps == [40] and f.evidence["unrecovered"] == 0


def test_spike_on_cnn_with_warn_only_is_applied_and_logged(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y = h.cnn_data()
    model = h.CNN()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, config=GuardConfig(spike_action="warn"), run_log=run_log)
        for i in range(30):
            xb = x[(i % 16) * 32 : (i % 16 + 1) * 32]
            guard.step(F.cross_entropy(model(xb * (1e4 if i == 25 else 1.0)), y[:32]))
            if i == 25:
                assert guard.last_outcome is not None and guard.last_outcome.applied
                assert (guard.last_outcome.clip_coef or 1.0) < 1e-3  # clipping bounded it
    assert [e["step"] for e in _events(tmp_path) if e["event"] == "spike"] == [25]


def test_gpt_trains_and_clipping_is_recorded(h: SimpleNamespace) -> None:
    model = h.tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    guard = Guard(model, opt, config=GuardConfig(max_norm=0.5))
    first = guard.step(h.gpt_loss(model, h.gpt_batch(0)))
    for i in range(1, 25):
        last = guard.step(h.gpt_loss(model, h.gpt_batch(i)))
    assert first.loss is not None and last.loss is not None and last.loss < first.loss
    assert first.clip_coef is not None and first.grad_norm is not None
    assert first.clip_coef == pytest.approx(min(1.0, 0.5 / (first.grad_norm + 1e-6)))


def test_rollback_restores_exactly_and_logs_the_skipped_batches(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y = h.linear_data()
    batches = [(x[i * 32 : (i + 1) * 32], y[i * 32 : (i + 1) * 32], i) for i in range(60)]
    batches[35] = (batches[35][0] * 1e6, batches[35][1], 35)  # a corrupted batch
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    seen: list[int] = []
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(
            model, opt,
            config=GuardConfig(spike_action="rollback", snapshot_every=10, rollback_skip_batches=4),
            run_log=run_log,
        )  # fmt: skip
        snap_state = None
        for xb, yb, idx in guard.batches(batches):
            seen.append(idx)
            if idx == 35:
                snap = guard.snapshots.pick()
                assert snap is not None
                snap_state = {"model": snap.model, "opt": snap.optimizer, "step": snap.step}
            out = guard.step(F.cross_entropy(model(xb), yb))
            if idx == 35:
                assert out.action == "rollback"
                assert snap_state is not None
                assert h.same(snap_state["model"], h.snapshot_state(model, opt)["model"])
                assert h.same(snap_state["opt"], h.snapshot_state(model, opt)["opt"])
                assert guard.step_count == snap_state["step"]  # rewound with the scheduler
    events = _events(tmp_path)
    dropped = [
        e["data"]["batch"]
        for e in events
        if e["event"] == "skip" and e.get("data", {}).get("reason") == "rollback"
    ]
    assert dropped == [36, 37, 38, 39] == guard.dropped_batches
    assert not set(dropped) & set(seen)
    (rb,) = [e for e in events if e["event"] == "rollback"]
    # the event sits at the step its message names (the step decided on, before the rewind)
    assert rb["step"] == rb["data"]["from_step"] == 35 and rb["message"].startswith("step 35:")


def test_recurring_spikes_back_off_the_lr_and_rewarm(h: SimpleNamespace, tmp_path: Path) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    cfg = GuardConfig(spike_action="rollback", snapshot_every=5, rollback_skip_batches=0,
                      lr_backoff_factor=0.5, lr_rewarm_steps=10)  # fmt: skip
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, config=cfg, run_log=run_log)
        outs = []
        for i in range(70):
            xb = x[i * 32 : (i + 1) * 32] * (1e6 if i in (40, 50) else 1.0)
            outs.append(guard.step(F.cross_entropy(model(xb), y[i * 32 : (i + 1) * 32])))
    assert guard.policy.rollbacks == 2 and guard.policy.lr_scale == 0.5
    after = outs[51]  # the first step after the second rollback: LR re-warms from 1/10 of 0.5x
    assert after.lr == pytest.approx(1e-2 * 0.5 * 1 / 10)
    assert outs[-1].lr == pytest.approx(1e-2 * 0.5)
    assert opt.param_groups[0]["lr"] == 1e-2  # the schedule's LR is untouched
    backoff = [e for e in _events(tmp_path) if e["event"] == "lr-backoff"]
    assert len(backoff) == 1
    assert backoff[0]["data"] == {"old_cap": None, "new_cap": 0.005, "lr_scale": 0.5,
                                  "rewarm_steps": 10}  # fmt: skip


def test_abort_after_consecutive_bad_steps_with_a_diagnosis(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y = h.linear_data()
    model, opt, _ = _linear()
    with RunLog(tmp_path, tensorboard=False) as run_log:
        cfg = GuardConfig(max_consecutive_bad=5, rollback_after=10)  # no rollback first
        guard = Guard(model, opt, config=cfg, run_log=run_log)
        _train(guard, model, x, y, range(3))
        with pytest.raises(TrainingAborted) as err:
            for _ in range(10):  # the pipeline now only delivers NaN batches
                guard.step(F.cross_entropy(model(x[:32] * float("nan")), y[:32]))
    assert err.value.step == 7
    msg = str(err.value)
    assert "5 bad steps in a row" in msg and "What to change" in msg and "learning rate" in msg
    assert err.value.findings[0].id == "nonfinite-loss"
    assert _events(tmp_path)[-1]["event"] == "abort"


def test_lr_1e2_is_rescued_or_aborted_never_nan_weights(h: SimpleNamespace) -> None:
    model = h.tiny_gpt()
    opt = torch.optim.SGD(model.parameters(), lr=1e2)  # far too high for this model
    guard = Guard(model, opt, config=GuardConfig(snapshot_every=5, max_rollbacks=3, spike_warmup=5))
    try:
        for i in range(80):
            guard.step(h.gpt_loss(model, h.gpt_batch(i)))
    except TrainingAborted as err:
        assert "What to change" in str(err) and err.findings
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_scheduled_lr_jump_caught_and_backed_off(h: SimpleNamespace) -> None:
    x, y = h.linear_data(8000)
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    # a schedule bug: the LR jumps 2000x at step 40 (a warmup that overshoots)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 if s < 40 else 2000.0)
    guard = Guard(model, opt, scheduler=sched,
                  config=GuardConfig(snapshot_every=10, rollback_skip_batches=2, max_rollbacks=20,
                                     min_lr_scale=1e-6))  # fmt: skip
    outs = []
    for i in range(200):
        xb, yb = x[(i % 250) * 32 : (i % 250 + 1) * 32], y[(i % 250) * 32 : (i % 250 + 1) * 32]
        outs.append(guard.step(F.cross_entropy(model(xb), yb)))
    assert guard.policy.rollbacks >= 1 and guard.policy.lr_scale < 1.0
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_lr_x100_milestone_rolls_back_once_caps_the_lr_and_keeps_learning(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    """The rescue suite's lr_jump: the restored scheduler replays the x100, so the first rollback
    must already cap the LR (at half the snapshot's LR), and go to the newest snapshot."""
    torch.manual_seed(0)
    x, y = h.cnn_data(4096)
    model = h.CNN()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 100.0 if s >= 60 else 1.0)
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, scheduler=sched, run_log=run_log,
                      config=GuardConfig(snapshot_every=20, rollback_skip_batches=2))  # fmt: skip
        losses = []
        for i, b in enumerate(guard.batches(range(160))):
            xb, yb = x[b * 25 : (b + 1) * 25], y[b * 25 : (b + 1) * 25]
            out = guard.step(F.cross_entropy(model(xb), yb))
            if out.applied:
                losses.append(out.loss)
            assert i < 160
    rollbacks = [e for e in _events(tmp_path) if e["event"] == "rollback"]
    assert len(rollbacks) == 1 and rollbacks[0]["data"]["to_step"] >= 40  # newest, not step 1
    assert guard.policy.lr_cap == pytest.approx(5e-3)
    assert out.lr is not None and out.lr <= 5e-3 + 1e-12  # the x100 schedule (1.0) is capped
    before = sum(losses[40:55]) / 15
    assert sum(losses[-20:]) / 20 < before  # still learning after the rescue
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_bad_init_warns_and_nonfinite_weights_abort(h: SimpleNamespace, tmp_path: Path) -> None:
    model = h.CNN(init_std=1.0)  # seed 002's normal(std=1) init
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, run_log=run_log)
        x, y = h.cnn_data()
        guard.step(F.cross_entropy(model(x[:32]), y[:32]))
    (f,) = [f for f in guard.findings if f.id == "init-scale"]
    layers = [entry["layer"] for entry in f.evidence["layers"]]
    assert "convs.2" in layers and "convs.4" in layers
    assert next(e["event"] for e in _events(tmp_path)) == "init-warning"
    good = h.CNN()
    assert Guard(good, torch.optim.SGD(good.parameters(), lr=0.1)).check_model() == []
    with torch.no_grad():
        good.convs[0].weight[0, 0, 0, 0] = float("inf")
    with pytest.raises(TrainingAborted, match=r"convs\.0\.weight"):
        Guard(good, torch.optim.SGD(good.parameters(), lr=0.1)).check_model()


def test_guarded_optimizer_path_skips_without_touching_state(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    guard = Guard(model, opt, config=GuardConfig(grads_unscaled=True))
    wrapped = guard.optimizer
    for i in range(5):  # the framework's own loop: backward, then optimizer.step()
        F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]).backward()
        wrapped.step()
        assert not wrapped.step_was_skipped
        wrapped.zero_grad()
    before = h.snapshot_state(model, opt)
    F.cross_entropy(model(x[:32] * float("inf")), y[:32]).backward()
    wrapped.step()
    assert wrapped.step_was_skipped
    assert guard.last_outcome is not None and guard.last_outcome.action == "skip_nonfinite_grad"
    assert h.same(before, h.snapshot_state(model, opt))
    assert guard.step_count == 6


def test_off_preset_is_the_plain_step(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = Guard(model, opt, config=GuardConfig.preset("off"))
    out = guard.step(F.cross_entropy(model(x[:32] * float("nan")), y[:32]))
    assert out.applied and out.action is None  # no protection: the NaN went into the weights
    assert not torch.isfinite(model.weight).all()


def test_state_dict_round_trip(h: SimpleNamespace) -> None:
    x, y = h.linear_data()
    model, opt, guard = _linear(clip="zscore", snapshot_every=5)
    _train(guard, model, x, y, range(30))
    guard.step(F.cross_entropy(model(x[:32] * 1e6), y[:32]))
    state = guard.state_dict()
    model2 = torch.nn.Linear(32, 2)
    opt2 = torch.optim.AdamW(model2.parameters(), lr=1e-2, weight_decay=0.1)
    model2.load_state_dict(model.state_dict())
    opt2.load_state_dict(copy.deepcopy(opt.state_dict()))  # else both would share Adam's moments
    guard2 = Guard(model2, opt2, config=GuardConfig(clip="zscore", snapshot_every=5))
    guard2.load_state_dict(state)
    assert h.same(guard2.state_dict(), state)
    for i in range(31, 40):  # and both continue identically
        a = guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
        b = guard2.step(F.cross_entropy(model2(x[i * 32 : (i + 1) * 32]), y[i * 32 : (i + 1) * 32]))
        assert a == b


def test_healthy_run_has_no_false_alarms(h: SimpleNamespace) -> None:
    # early training: the grad norm climbs steadily (here 0.5 → 2.5) and must not trigger the ladder
    model = h.tiny_gpt()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    guard = Guard(model, opt)
    actions = [guard.step(h.gpt_loss(model, h.gpt_batch(i % 4))).action for i in range(80)]
    assert actions == [None] * 80


def test_finish_reports_a_clip_that_fires_on_every_step(h: SimpleNamespace) -> None:
    """Seed 003's "clipping at 2.0 fires on almost every batch", said by the guard itself."""
    x, y = h.linear_data()
    saturated = _linear(max_norm=0.01)
    roomy = _linear(max_norm=100.0)
    for model, _opt, guard in (saturated, roomy):
        _train(guard, model, x, y, range(60))
    ids = {f.id for f in saturated[2].finish()}
    assert "clip-saturated" in ids
    assert not {"clip-saturated", "clip-near-threshold"} & {f.id for f in roomy[2].finish()}


def test_adaptive_preset_clips_while_warming_up_then_only_outliers(h: SimpleNamespace) -> None:
    """A healthy run whose grad norms sit far above 1 (inputs x20): the adaptive preset clips at
    1.0 while its statistics warm up, then leaves ordinary steps alone. Fed the clipped norms
    (1.0) during the warm-up, the statistics would clip every later step to 1.0 for good."""
    x, y = h.linear_data()
    model = torch.nn.Linear(32, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    guard = Guard(model, opt, config=GuardConfig.preset("adaptive", clip_warmup=10))
    outs = [
        guard.step(F.cross_entropy(model(x[i * 32 : (i + 1) * 32] * 20), y[i * 32 : (i + 1) * 32]))
        for i in range(60)
    ]
    assert all(o.grad_norm is not None and o.grad_norm > 2 for o in outs)
    assert all(o.clip_coef is not None and o.clip_coef < 1 for o in outs[:10])  # warming up
    later = [o.clip_coef for o in outs[10:]]
    assert sum(c is not None and c < 1 for c in later) <= 5  # only outliers after it
    assert guard.clipper is not None and guard.clipper.mean > 2  # the run's own norm level
    with pytest.raises(ConfigError, match="'adaptive'"):
        GuardConfig.preset("adaptve")  # type: ignore[arg-type]
