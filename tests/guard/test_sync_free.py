"""The sync-free path: decisions on the device, one host read per ``read_every`` steps.

On the CPU a host read costs nothing, but it is the same operation that stalls a GPU: every
``.item()`` / ``bool(t)`` / ``float(t)`` dispatches ``aten._local_scalar_dense``, which a
``TorchDispatchMode`` sees. ``.tolist()`` does not dispatch on the CPU, so the guard also counts
its own reads (``guard.host_reads``). The CUDA test at the end checks the real thing with
``torch.cuda.set_sync_debug_mode("error")`` where a GPU is present.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from stabletrain.errors import ConfigError, TrainingAborted
from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.logs.runlog import RunLog


class HostReads(TorchDispatchMode):
    """Counts the ops that copy one device value to the host (a sync on CUDA)."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def _cnn(
    h: SimpleNamespace, batches: int, **opt_kw: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module, torch.optim.Optimizer]:
    """Seeded data for ``batches`` batches of 64, the test CNN and a fused AdamW."""
    torch.manual_seed(0)
    x, y = h.cnn_data(64 * batches)
    model = h.CNN()
    return x, y, model, torch.optim.AdamW(model.parameters(), lr=3e-3, fused=True, **opt_kw)


def _cnn_run(
    h: SimpleNamespace, sync_free: str, steps: int = 30, **cfg: Any
) -> tuple[torch.nn.Module, torch.optim.Optimizer, Guard, list[Any]]:
    x, y, model, opt = _cnn(h, steps)
    guard = Guard(model, opt, config=GuardConfig(sync_free=sync_free, **cfg))  # type: ignore[arg-type]
    outs = []
    for i in range(steps):
        outs.append(
            guard.step(F.cross_entropy(model(x[i * 64 : (i + 1) * 64]), y[i * 64 : (i + 1) * 64]))
        )
    guard.flush()
    return model, opt, guard, outs


def test_sync_free_on_needs_an_optimizer_that_skips_on_the_device() -> None:
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)  # foreach, not fused
    guard = Guard(model, opt, config=GuardConfig(sync_free="on"))
    with pytest.raises(ConfigError, match=r"fused=True"):
        guard.step(model(torch.randn(3, 4)).sum())


def test_a_gradscaler_without_the_internals_the_guard_reads_is_a_named_config_error() -> None:
    """The device path reads two GradScaler internals (no public no-sync equivalent): a torch
    that renamed one fails naming it and the torch version, not with an AttributeError."""
    from stabletrain.guard import device

    scaler = torch.amp.GradScaler("cpu")
    assert device.live_scale(scaler) is None or isinstance(device.live_scale(scaler), torch.Tensor)

    class Renamed:  # what a GradScaler without ``_get_scale_async`` looks like to the guard
        pass

    with pytest.raises(ConfigError, match=r"GradScaler\._get_scale_async.*torch "):
        device.live_scale(Renamed())


def test_auto_stays_immediate_on_the_cpu() -> None:
    model = torch.nn.Linear(4, 2)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    guard = Guard(model, opt)
    assert guard.step(model(torch.randn(3, 4)).sum()).resolved
    assert guard.sync_free is False


def test_no_host_read_between_reads(h: SimpleNamespace) -> None:
    x, y, model, opt = _cnn(h, 25)
    guard = Guard(model, opt, config=GuardConfig(sync_free="on", read_every=10))
    reads_per_step = []
    for i in range(25):
        loss = F.cross_entropy(model(x[i * 64 : (i + 1) * 64]), y[i * 64 : (i + 1) * 64])
        with HostReads() as reads:
            guard.step(loss)
        reads_per_step.append(reads.count)
    # step 0 verifies the initial weights are finite (one read per tensor); steps 9 and 19 end
    # a window: their flush reads with .tolist() (guard.host_reads), no scalar reads
    assert reads_per_step[0] > 0
    assert reads_per_step[1:] == [0] * 24
    assert guard.host_reads == 2
    # the immediate path reads every step, and once more per micro-batch for the loss
    _, _, immediate, _ = _cnn_run(h, "off", steps=25)
    assert immediate.host_reads == 50


def test_clean_run_is_bitwise_the_immediate_path(h: SimpleNamespace) -> None:
    m_off, o_off, _, outs_off = _cnn_run(h, "off", max_norm=0.2)
    m_on, o_on, g_on, outs_on = _cnn_run(h, "on", max_norm=0.2, read_every=7)
    assert g_on.sync_free
    for a, b in zip(m_off.parameters(), m_on.parameters(), strict=True):
        assert torch.equal(a, b)
    assert h.same(o_off.state_dict()["state"], o_on.state_dict()["state"])
    assert [o.applied for o in outs_on] == [True] * 30
    assert [o.loss for o in outs_on] == [o.loss for o in outs_off]
    assert [o.grad_norm for o in outs_on] == [o.grad_norm for o in outs_off]
    clipped_off = [o.clip_coef if o.clip_coef and o.clip_coef < 1 else None for o in outs_off]
    clipped_on = [o.clip_coef if o.clip_coef and o.clip_coef < 1 else None for o in outs_on]
    assert clipped_on == clipped_off and any(clipped_on)


def test_nan_batch_skipped_on_the_device_with_state_and_schedule_held(h: SimpleNamespace) -> None:
    x, y, model, opt = _cnn(h, 30, weight_decay=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (1 + s))
    guard = Guard(model, opt, scheduler=sched, config=GuardConfig(sync_free="on", read_every=10))
    outs = []
    for i in range(21):
        xb = x[i * 64 : (i + 1) * 64]
        if i == 12:
            xb = xb * float("nan")  # a corrupted batch, between two reads
            before = h.snapshot_state(model, opt)
        outs.append(guard.step(F.cross_entropy(model(xb), y[i * 64 : (i + 1) * 64])))
        if i == 12:
            assert not outs[12].resolved  # no read yet: the device decided alone
            after = h.snapshot_state(model, opt)
            # params and Adam state (moments, step counts) untouched; the LR moved: the
            # scheduler stepped (and is held one step at the next read)
            assert h.same(before["model"], after["model"])
            assert h.same(before["opt"]["state"], after["opt"]["state"])
    assert outs[12].resolved and outs[12].applied is False
    assert outs[12].action == "skip_nonfinite_loss" and math.isnan(outs[12].loss)
    assert all(o.applied for o in outs[:12] + outs[13:20])
    # the scheduler stepped for the skipped step, then was held one step after the read
    assert sched.last_epoch == 20 and guard.total_skipped == 1
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_spike_skipped_on_the_device_once_the_limit_is_known(h: SimpleNamespace) -> None:
    x, y, model, opt = _cnn(h, 60)
    guard = Guard(model, opt, config=GuardConfig(sync_free="on", read_every=5))
    outs = []
    for i in range(60):
        xb = x[i * 64 : (i + 1) * 64] * (1e4 if i == 47 else 1.0)  # an unnormalised batch
        outs.append(guard.step(F.cross_entropy(model(xb), y[i * 64 : (i + 1) * 64])))
    guard.flush()
    assert math.isfinite(guard._limits[0])  # warmed up: the device holds a loss limit
    assert outs[47].applied is False and outs[47].action == "skip_spike"
    assert [i for i, o in enumerate(outs) if not o.applied] == [47]


def test_persistent_nan_aborts_at_a_read_with_finite_weights(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y, model, opt = _cnn(h, 40)
    cfg = GuardConfig(sync_free="on", read_every=4, max_consecutive_bad=6, rollback_after=50)
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, config=cfg, run_log=run_log)
        with pytest.raises(TrainingAborted, match="6 bad steps in a row") as err:
            for i in range(40):
                xb = x[i * 64 : (i + 1) * 64] * (float("nan") if i >= 10 else 1.0)
                guard.step(F.cross_entropy(model(xb), y[i * 64 : (i + 1) * 64]))
    assert err.value.step == 15  # the 6th bad step; acted on at the read after step 15
    assert i == 15 and "What to change" in str(err.value)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_rollback_acts_at_the_read_and_undoes_the_window(
    h: SimpleNamespace, tmp_path: Path
) -> None:
    x, y, model, opt = _cnn(h, 80)
    # spikes applied (warn): the weights took them, so three within the window are damage
    cfg = GuardConfig(sync_free="on", read_every=8, snapshot_every=10, snapshot_confirm_steps=2,
                      rollback_skip_batches=3, spike_action="warn")  # fmt: skip
    with RunLog(tmp_path, tensorboard=False) as run_log:
        guard = Guard(model, opt, config=cfg, run_log=run_log)
        outs = []
        for b in guard.batches(range(80)):
            xb = x[b * 64 : (b + 1) * 64] * (1e6 if b in (50, 51, 52) else 1.0)  # spikes
            outs.append(guard.step(F.cross_entropy(model(xb), y[b * 64 : (b + 1) * 64])))
        guard.flush()
    events = [
        json.loads(line)["event"] for line in (tmp_path / "events.jsonl").read_text().splitlines()
    ]
    assert events.count("rollback") == 1
    rolled = [o for o in outs if o.action == "rollback"]
    assert len(rolled) == 1 and rolled[0].step == 52
    # the rest of that window ran on the device before the read undid it
    assert [o.step for o in outs if o.action == "rolled_back"] == [53, 54, 55]
    assert guard.dropped_batches == [56, 57, 58]
    assert all(torch.isfinite(p).all() for p in model.parameters())


@pytest.mark.gpu
def test_cuda_steps_between_reads_never_sync() -> None:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Linear(64, 256), torch.nn.ReLU(), torch.nn.Linear(256, 10))
    model.to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=True)
    scaler = torch.amp.GradScaler("cuda", init_scale=2.0**10)
    guard = Guard(model, opt, scaler=scaler, config=GuardConfig(read_every=10))
    x = torch.randn(64, 64, device=dev)
    y = torch.randint(0, 10, (64,), device=dev)
    for i in range(30):
        loss = F.cross_entropy(model(x), y)
        if i % 10 in (0, 9):  # step 0 checks the weights; step 9 ends a window (the read)
            guard.step(loss)
            continue
        torch.cuda.set_sync_debug_mode("error")
        try:
            guard.step(loss)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert guard.sync_free and guard.host_reads == 3


def test_fp16_overflows_skip_on_the_device_bitwise_like_the_immediate_path(
    h: SimpleNamespace,
) -> None:
    """A GradScaler started far too high (seed 004's 2**16, here 2**24): the first steps overflow.
    The guard's flag and the scaler's are combined into found_inf, which must be exactly 1.0 (the
    fused kernels skip only on == 1; a sum of 2.0 applied the NaN grads before this test)."""

    def run(mode: str) -> tuple[list[tuple[Any, ...]], float, list[torch.Tensor]]:
        x, y, model, opt = _cnn(h, 30)
        scaler = torch.amp.GradScaler("cpu", init_scale=2.0**24, growth_interval=5)
        guard = Guard(model, opt, scaler=scaler, config=GuardConfig(sync_free=mode, read_every=6))  # type: ignore[arg-type]
        outs = []
        for i in range(30):
            with torch.autocast("cpu", dtype=torch.float16):
                loss = F.cross_entropy(model(x[i * 64 : (i + 1) * 64]), y[i * 64 : (i + 1) * 64])
            outs.append(guard.step(loss))
        guard.flush()
        return (
            [(o.applied, o.action, o.loss_scale) for o in outs],
            scaler.get_scale(),
            [p.detach().clone() for p in model.parameters()],
        )

    immediate, sync_free = run("off"), run("on")
    assert immediate[0][:5] == [
        (False, "skip_nonfinite_grad", 2.0**s) for s in (24, 23, 22, 21, 20)
    ]
    assert sync_free[0] == immediate[0] and sync_free[1] == immediate[1]
    assert all(torch.equal(a, b) for a, b in zip(immediate[2], sync_free[2], strict=True))
    assert all(torch.isfinite(p).all() for p in sync_free[2])


def test_yaml_booleans_mean_on_and_off() -> None:
    import yaml

    assert GuardConfig(**yaml.safe_load("sync_free: on")).sync_free == "on"
    assert GuardConfig(**yaml.safe_load("sync_free: off")).sync_free == "off"
    with pytest.raises(ConfigError, match="sync_free"):
        GuardConfig(sync_free="sometimes")  # type: ignore[arg-type]


def test_nan_row_through_batchnorm_restored_on_the_device(h: SimpleNamespace) -> None:
    torch.manual_seed(0)
    x, y = h.linear_data()
    model = torch.nn.Sequential(
        torch.nn.Linear(32, 32), torch.nn.BatchNorm1d(32), torch.nn.ReLU(), torch.nn.Linear(32, 2)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, fused=True)
    guard = Guard(model, opt, config=GuardConfig(sync_free="on", read_every=5))
    for i in range(12):
        xb = x[i * 32 : (i + 1) * 32].clone()
        if i == 6:
            xb[4, 2] = float("nan")
        guard.step(F.cross_entropy(model(xb), y[i * 32 : (i + 1) * 32]))
    guard.flush()
    bn = model[1]
    assert isinstance(bn, torch.nn.BatchNorm1d) and bn.running_var is not None
    assert torch.isfinite(bn.running_mean).all() and torch.isfinite(bn.running_var).all()
    assert guard.total_skipped == 1
