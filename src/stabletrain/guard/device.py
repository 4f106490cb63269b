"""The sync-free step: the guard's per-step decisions made on the device, its values read later.

On CUDA every host read of a device value (``.item()``, ``bool(t)``, ``.tolist()``) blocks the
CPU until the GPU has run everything queued, so the CPU stops feeding the GPU. The guard's
immediate path reads once per step; this path reads once per ``read_every`` steps::

    each step, on the device:
        ok   = finite(loss) & finite(norm) & loss <= loss_limit [& norm <= norm_limit] & not forced
               (reduced across ranks as an int32 MAX of "bad": every rank gets the same verdict)
        coef = clamp(ceiling / (norm + eps), max=1);   grads *= coef
        fused optimizer step with found_inf = (1 - ok) + the GradScaler's own found_inf
        row  = [loss, norm, scale, loss_bad, ok, coef]      (queued, not read)
    every read_every steps, on the host (the one read):
        each row is replayed through the same detectors and policy as the immediate path;
        rollback / LR back-off / abort act then; the next window's limits come from the detectors.

What it needs: an optimizer whose ``step`` honours ``found_inf`` on the device: torch's fused
Adam, AdamW, SGD and Adagrad (``fused=True``). Their skip leaves parameters and state bitwise
unchanged (the step counts are incremented and restored on the device).

What it costs, against the immediate path: decisions that need history (rollback, LR back-off,
abort) come up to ``read_every - 1`` steps late, though every bad step in between was already
skipped on the device; the spike limits are up to one window stale; the scheduler is stepped every
step and then held for as many steps as were skipped, so its position lags by at most a window;
a NaN loss still runs its backward (its grads are never applied; under fp16 the scaler counts it
as an overflow and halves its scale).
"""

from __future__ import annotations

from typing import Any

import torch

from stabletrain import measure
from stabletrain.errors import ConfigError
from stabletrain.guard.clipping import ZERO_EPS

#: the columns of a queued row (float64, one per step)
ROW = ("loss", "grad_norm", "loss_scale", "loss_bad", "ok", "clip_coef")


def _scaler_internal(scaler: Any, name: str) -> Any:
    """A GradScaler internal this module reads (it has no public no-sync equivalent; this module
    is the one place the guard reads them): a torch that renamed it fails here, named, not with
    an AttributeError from inside a step."""
    try:
        return getattr(scaler, name)
    except AttributeError:
        raise ConfigError(
            f"the guard reads torch.amp.GradScaler.{name}, which torch {torch.__version__} does "
            "not have: use a torch release stabletrain supports (see pyproject.toml)"
        ) from None


def live_scale(scaler: Any) -> torch.Tensor | None:
    """The GradScaler's current scale as a device tensor (no host read), or None before its first
    ``scale()``: ``_get_scale_async``, GradScaler's own no-sync accessor (``get_scale()`` reads
    it to the host)."""
    if scaler is None:
        return None
    scale: torch.Tensor | None = _scaler_internal(scaler, "_get_scale_async")()
    return scale


def supports_found_inf(optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``optimizer.step`` skips on a device ``found_inf`` (torch's fused optimizers)."""
    return bool(getattr(optimizer, "_step_supports_amp_scaling", False)) and all(
        g.get("fused") for g in optimizer.param_groups
    )


def ok_flag(
    loss: torch.Tensor | None,
    loss_bad: torch.Tensor,
    norm: torch.Tensor,
    *,
    loss_limit: float,
    norm_limit: float,
    check_nonfinite: bool,
    forced_skip: bool,
    distributed: bool,
) -> torch.Tensor:
    """0-dim bool: apply this step. ``loss`` is the (rank-mean) loss, ``loss_bad`` an int flag."""
    dev = norm.device
    if forced_skip:
        return torch.zeros((), dtype=torch.bool, device=dev)
    bad = loss_bad.to(torch.int32)
    if check_nonfinite:
        bad = bad | (~torch.isfinite(norm)).to(torch.int32)
    if loss is not None and loss_limit != float("inf"):
        # float64: the host replays the same comparison on the value it reads back
        bad = bad | (loss.double() > loss_limit).to(torch.int32)
    if norm_limit != float("inf"):
        bad = bad | (norm.double() > norm_limit).to(torch.int32)
    if distributed:
        bad = measure.any_rank_flag(bad)
    return bad == 0


def clip_(
    grads: list[torch.Tensor], norm: torch.Tensor, ceiling: torch.Tensor | float
) -> torch.Tensor:
    """Scale ``grads`` by ``min(1, ceiling / (norm + eps))`` in place, on the device; the coef.

    A NaN norm gives a NaN coef (and NaN grads): only on a step the fused optimizer skips.
    """
    if not isinstance(ceiling, torch.Tensor):
        # a fill, not torch.tensor(): no host-to-device copy (a sync on CUDA); and a true
        # division (float / tensor is computed as reciprocal x float: 1 ulp off the host's)
        ceiling = torch.full((), ceiling, dtype=torch.float64, device=norm.device)
    coef = torch.clamp(ceiling / (norm.double() + ZERO_EPS), max=1.0)
    by_device: dict[torch.device, list[torch.Tensor]] = {}
    for g in grads:
        by_device.setdefault(g.device, []).append(g)
    for dev, gs in by_device.items():
        # a float32 0-dim factor: in-place multiplication keeps each grad's own dtype
        torch._foreach_mul_(gs, coef.to(dev, torch.float32))
    return coef


def fused_step(
    optimizer: torch.optim.Optimizer,
    ok: torch.Tensor,
    scaler: torch.amp.GradScaler | None,
    *,
    owns_scaler: bool,
) -> None:
    """Step a fused ``optimizer`` that skips on the device unless ``ok``, then update the scaler.

    With a GradScaler (already ``unscale_``d: its per-device ``found_inf`` is recorded) the skip
    flag is ours plus its own; ``scaler.update()`` then sees only its own overflow, so a spike skip
    does not shrink the loss scale. (``_per_optimizer_states`` is GradScaler's private record of
    ``unscale_``; ``GradScaler.step`` reads it the same way for fused optimizers.)
    """
    found_inf = (~ok).float()
    if owns_scaler and scaler is not None and scaler.is_enabled():
        state: dict[str, Any] = _scaler_internal(scaler, "_per_optimizer_states")[id(optimizer)]
        for t in state["found_inf_per_device"].values():
            found_inf = torch.maximum(found_inf, t.to(found_inf.device, non_blocking=True))
    # exactly 0.0 or 1.0: the fused kernels skip only when found_inf == 1 (a sum of two flags,
    # 2.0, would apply the NaN grads of an overflow step)
    optimizer.grad_scale = None  # type: ignore[attr-defined]  # grads are already unscaled
    optimizer.found_inf = found_inf  # type: ignore[attr-defined]
    try:
        optimizer.step()
    finally:
        del optimizer.grad_scale  # type: ignore[attr-defined]
        del optimizer.found_inf  # type: ignore[attr-defined]
    if owns_scaler and scaler is not None and scaler.is_enabled():
        scaler.update()


def row(
    loss: torch.Tensor | None,
    norm: torch.Tensor,
    scale: torch.Tensor | None,
    loss_bad: torch.Tensor,
    ok: torch.Tensor,
    coef: torch.Tensor | None,
) -> torch.Tensor:
    """One step's values packed in a float64 vector on the device (see ``ROW``)."""
    dev = norm.device
    nan = torch.full((), float("nan"), dtype=torch.float64, device=dev)
    one = torch.ones((), dtype=torch.float64, device=dev)
    return torch.stack(
        [
            loss.double() if loss is not None else nan,
            norm.double(),
            scale.to(dev).double() if scale is not None else nan,
            loss_bad.to(dev).double(),
            ok.double(),
            coef.double() if coef is not None else one,
        ]
    )
