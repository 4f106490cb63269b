"""Normalisation running statistics, kept so a skipped batch cannot poison them.

A forward pass in train mode updates BatchNorm's ``running_mean``/``running_var`` (and
``num_batches_tracked``) before the guard sees the loss: one NaN row in a batch writes NaN into
them, and every eval afterwards is NaN although the guard skipped the update. ``BufferKeeper``
holds a copy of those buffers as they were after the last good forward and puts it back when a
batch's loss is non-finite.

Which buffers: those of normalisation layers that track running statistics (``BatchNorm*``,
``SyncBatchNorm``, ``InstanceNorm*`` with ``track_running_stats``): small (two vectors per layer),
so the copy per step costs one fused ``_foreach_copy_``. Other buffers (causal masks, position
tables) are not written by a forward pass and are not copied.

Limits: under gradient accumulation on the GuardedOptimizer path (HF, Lightning) a non-finite
window restores the statistics of the window's start, dropping its good micro-batches' updates.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.modules.batchnorm import _NormBase


def norm_buffers(model: nn.Module) -> list[torch.Tensor]:
    """The running-statistics buffers of ``model``'s normalisation layers."""
    out: list[torch.Tensor] = []
    for m in model.modules():
        if isinstance(m, _NormBase) and m.track_running_stats:
            out.extend(
                b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None
            )
    return out


class BufferKeeper:
    """The last good copy of ``model``'s running statistics; ``restore`` puts it back."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.live: list[torch.Tensor] = norm_buffers(model)
        self.saved: list[torch.Tensor] = [b.detach().clone() for b in self.live]

    def reset(self) -> None:
        """Re-read the buffers and keep their current values (after a load or a rollback: the
        model may hold new buffer tensors)."""
        self.live = norm_buffers(self.model)
        self.saved = [b.detach().clone() for b in self.live]

    def save(self) -> None:
        """The live statistics are good (a finite forward): keep a copy."""
        if self.live:
            torch._foreach_copy_(self.saved, self.live)

    def restore(self) -> None:
        """A non-finite forward went through: put the last good statistics back."""
        if self.live:
            torch._foreach_copy_(self.live, self.saved)

    def restore_where(self, bad: torch.Tensor) -> None:
        """Sync-free path: restore where the 0-dim device flag ``bad`` is set, then save (no host
        read: one ``where`` per buffer, only for models with normalisation layers)."""
        if not self.live:
            return
        flag = bad.bool()
        for live, saved in zip(self.live, self.saved, strict=True):
            live.copy_(torch.where(flag.to(live.device), saved, live))
        torch._foreach_copy_(self.saved, self.live)
