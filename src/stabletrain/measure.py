"""Measuring gradients: the fused global norm, finiteness, and the cross-rank reduction.

Pure functions over tensors; the guard composes them. The norm is computed once, in one fused
pass (``torch.nn.utils.get_total_norm`` / ``torch._foreach_norm``), reduced across ranks when
``torch.distributed`` is initialised (so every rank clips and decides with the same number), and
returned as a 0-dim tensor on the gradients' device — reading it is the caller's (host-sync) choice.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.distributed as dist


def grads_of(params: Iterable[torch.nn.Parameter]) -> list[torch.Tensor]:
    """The gradients that exist (parameters without a grad are ignored)."""
    return [p.grad for p in params if p.grad is not None]


def total_grad_norm(
    grads: list[torch.Tensor], *, norm_type: float = 2.0, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Global ``norm_type`` norm of ``grads`` as a float32 0-dim tensor (NaN/inf propagate).

    When a process group is initialised the *local* norms are combined across ranks: the sum of
    ``norm**p`` for finite p, the max for inf. This is the norm of the full gradient for DDP
    (identical grads: pass ``group=None`` and no reduction is done when not initialised) and for
    sharded grads (FSDP), as in torchtitan's ``clip_grad_norm_``.
    """
    if not grads:
        return torch.zeros((), dtype=torch.float32)
    device = grads[0].device
    # a sparse gradient (nn.Embedding(sparse=True)) has the norm of its coalesced values;
    # torch's norm kernels have no sparse implementation
    grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
    if hasattr(torch.nn.utils, "get_total_norm"):
        norm = torch.nn.utils.get_total_norm(grads, norm_type=norm_type, foreach=None).float()
    else:  # torch < 2.6
        norms = torch._foreach_norm(grads, norm_type)
        norm = torch.linalg.vector_norm(torch.stack([n.float() for n in norms]), norm_type)
    return norm.to(device)


def reduce_norm_across_ranks(
    local_norm: torch.Tensor, *, norm_type: float = 2.0, group: dist.ProcessGroup | None = None
) -> torch.Tensor:
    """Combine per-rank norms of *sharded* gradients into the global norm (no-op when not distributed)."""
    if not (dist.is_available() and dist.is_initialized()):
        return local_norm
    if norm_type == float("inf"):
        out = local_norm.clone()
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
        return out
    powered = local_norm.double() ** norm_type
    dist.all_reduce(powered, op=dist.ReduceOp.SUM, group=group)
    return (powered ** (1.0 / norm_type)).float()


def any_rank_flag(flag: torch.Tensor, *, group: dist.ProcessGroup | None = None) -> torch.Tensor:
    """1 if ``flag`` (0/1 int tensor) is set on any rank. NCCL cannot reduce bool: use int32 MAX."""
    out = flag.to(torch.int32)
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(out, op=dist.ReduceOp.MAX, group=group)
    return out


def all_finite(tensors: Iterable[torch.Tensor]) -> bool:
    """True when every element of every tensor is finite. Host sync: use off the hot path."""
    return all(bool(torch.isfinite(t).all()) for t in tensors if t.is_floating_point())
