"""The guard's two contacts with the device per step: the packed host read and the inner step.

``read_step`` is the one host sync per optimizer step (loss, norm, loss scale in one ``tolist``),
with the cross-rank reduction of the loss flags as int32 MAX and the loss as a finite SUM.
``step_with_lr_factor`` runs the wrapped optimizer (through the GradScaler when the guard owns
the loop) with the guard's LR back-off applied around the step only, so schedulers never see it.
"""

from __future__ import annotations

import math

import torch
import torch.distributed as dist

from stabletrain import measure
from stabletrain.guard import device

_DIST = dist.is_available()


def is_distributed() -> bool:
    return _DIST and dist.is_initialized()


def read_step(
    loss_t: torch.Tensor | None,
    loss_bad: bool,
    norm_t: torch.Tensor,
    scaler: torch.amp.GradScaler | None,
    scaler_on: bool,
    *,
    loss_host: float | None = None,
) -> tuple[float | None, float, float | None, bool]:
    """The step's numbers on the host: (loss, grad norm, loss scale, loss non-finite).

    ``loss_host``: the loss as ``Guard.backward`` already read it; then, single process and no
    scaler, only the norm is read (the common CPU/GPU case: one scalar, no packing kernels).
    """
    if loss_host is not None and not scaler_on and not is_distributed():
        # host sync: the norm (the loss was read in backward, before its backward pass)
        return loss_host, norm_t.item(), None, loss_bad
    dev = norm_t.device
    has_loss = loss_t is not None
    lt = loss_t.to(dev) if loss_t is not None else torch.zeros((), device=dev)
    if is_distributed():
        # ints for the flags (NCCL cannot reduce bool; NaN floats would poison a SUM)
        flag = torch.tensor([int(loss_bad), int(has_loss)], dtype=torch.int32, device=dev)
        flag = measure.any_rank_flag(flag)
        lt = rank_mean_loss(lt)
        loss_bad, has_loss = bool(flag[0]), bool(flag[1])  # host sync: decision needs it
    scale_t: torch.Tensor = torch.zeros((), device=dev)
    # (``is None``, never ``or``: the truth value of a device tensor is a host read)
    live = device.live_scale(scaler) if scaler_on else None
    if live is not None:
        scale_t = live
    # host sync: the one packed read per step (loss, norm, scale) the decisions are made on
    loss_v, norm_v, scale_v = torch.stack(
        [lt.float(), norm_t.float(), scale_t.to(dev).float()]
    ).tolist()
    if loss_bad and has_loss and math.isfinite(loss_v):
        loss_v = float("nan")  # the mean over ranks hid a rank's NaN: report it as such
    # no scale before the scaler's first scale() (a non-finite first loss skipped it)
    has_scale = scaler_on and live is not None
    return (loss_v if has_loss else None), norm_v, (scale_v if has_scale else None), loss_bad


def rank_mean_loss(loss: torch.Tensor) -> torch.Tensor:
    """The mean over ranks of the finite losses (a rank's NaN counts as 0; its flag says it)."""
    finite = torch.where(torch.isfinite(loss), loss, torch.zeros_like(loss))
    dist.all_reduce(finite)
    return finite / dist.get_world_size()


def step_with_lr_factor(
    opt: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None,
    owns_loop: bool,
    lr_factor: float,
    *,
    ok: torch.Tensor | None = None,
) -> None:
    """Step ``opt`` (through the scaler when the guard owns the loop) at ``lr_factor`` x its LR.

    ``ok`` (sync-free path): a device flag; the fused optimizer skips on the device unless set.
    """
    saved = None
    if lr_factor != 1.0:
        # scale the LR around the step only: schedulers never see the guard's back-off
        saved = [g["lr"] for g in opt.param_groups]
        for g in opt.param_groups:
            g["lr"] = g["lr"] * lr_factor
    try:
        if ok is not None:
            device.fused_step(opt, ok, scaler, owns_scaler=owns_loop)
        elif owns_loop and scaler is not None and scaler.is_enabled():
            scaler.step(opt)
            scaler.update()
        else:
            opt.step()
    finally:
        if saved is not None:
            for g, lr in zip(opt.param_groups, saved, strict=True):
                g["lr"] = lr
