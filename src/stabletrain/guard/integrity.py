"""Post-update integrity: after an applied update, are the weights still finite and in range?

The loss and the gradients say nothing about what the update wrote. Pure fp16 parameters under
Adam (eps=1e-8 is 0 in fp16, the second moment underflows, the update is 0/0) write NaN on the
first step; an unclipped update on a 1e15-scaled batch writes weights ~1e29 whose next forward is
inf. Either way every later loss is non-finite, and a guard that reads only losses skips batch
after batch as if the data were bad.

The check is folded into a read the guard already does: an update that broke the weights makes
the *next* loss (or grad norm) non-finite or a spike, which the guard reads anyway. Only then —
on a bad step that follows an applied update — does ``WeightCheck.judge`` read the weights'
total norm (one fused pass and one host read, on that step only): non-finite, or above
``growth_limit`` x the norm at the rollback snapshot, is *damage*; anything else leaves the bad
step harmless (the data). Clean steps cost nothing.

Limits: weights that break without changing the next loss (a NaN in a parameter the loss does
not use) are found by ``Guard.check_model`` at the next load or rollback, not here.
"""

from __future__ import annotations

import math
from typing import Literal

import torch

Damage = Literal["nonfinite-weights", "exploding-weights"]


def weight_norm(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """The total 2-norm of ``params``, a float32 (float64 when a weight is) 0-dim tensor on
    their device (NaN/inf propagate); reading it is the caller's choice."""
    if not params:
        return torch.zeros(())
    # in float32 at least: the norm of a large fp16 model exceeds fp16's range though no weight
    # does; float64 weights keep float64 (a norm may not narrow its input's dtype)
    wide = torch.float64 if any(p.dtype == torch.float64 for p in params) else torch.float32
    norms = [
        torch.linalg.vector_norm(p.detach(), dtype=torch.promote_types(p.dtype, torch.float32))
        for p in params
    ]
    dev = norms[0].device
    return torch.linalg.vector_norm(torch.stack([n.to(dev, wide) for n in norms]))


def moved_since(model: torch.nn.Module, state: dict[str, torch.Tensor]) -> float | None:
    """How far the trainable weights moved from a snapshot's (``state``: its model state dict,
    on CPU): ||w - w_snap|| / ||w_snap|| over the floating parameters both hold; None when
    nothing comparable. One pass and a host copy per parameter: for rare decisions only (a
    loss rise is the updates' doing only if the updates changed the weights)."""
    diff = ref = 0.0
    for name, p in model.named_parameters():
        old = state.get(name)
        if not p.requires_grad or old is None or not p.is_floating_point():
            continue
        now = p.detach().to("cpu", torch.float32)
        then = old.to(torch.float32)
        if now.shape != then.shape:
            continue
        diff += float(torch.linalg.vector_norm(now - then)) ** 2
        ref += float(torch.linalg.vector_norm(then)) ** 2
    if not ref > 0 or not math.isfinite(diff):
        return None
    return math.sqrt(diff / ref)


class WeightCheck:
    """Whether the weights were verified since the last applied update, and the verdict."""

    def __init__(self, growth_limit: float) -> None:
        self.growth_limit = growth_limit
        #: an update was applied since the weights were last verified
        self.pending = False

    def applied(self) -> None:
        self.pending = True

    def judge(
        self, params: list[torch.nn.Parameter], reference: float | None
    ) -> tuple[Damage | None, float | None]:
        """(damage, weight norm) for a bad step; (None, None) when nothing was applied since
        the last verification (the weights are those of a step already judged)."""
        if not self.pending:
            return None, None
        self.pending = False
        # host sync: only on a bad step right after an applied update
        norm = float(weight_norm(params))
        if not math.isfinite(norm):
            return "nonfinite-weights", norm
        if reference and norm > self.growth_limit * reference:
            return "exploding-weights", norm
        return None, norm

    def state_dict(self) -> dict[str, object]:
        return {"pending": self.pending}

    def load_state_dict(self, state: dict[str, object]) -> None:
        self.pending = bool(state.get("pending", False))


def _eps_too_small(group: dict[str, object]) -> tuple[float, torch.dtype] | None:
    """(eps, dtype) when a param group's ``eps`` is 0 (or subnormal) in the dtype of one of its
    parameters: where a weight's gradient has been exactly 0 (an unused embedding row, a dead
    unit; or a second moment underflowed in fp16) Adam-family updates divide 0 by 0."""
    eps = group.get("eps")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)):
        return None
    params = group.get("params")
    for p in params if isinstance(params, list) else []:
        if p.is_floating_point() and eps < torch.finfo(p.dtype).tiny:
            return float(eps), p.dtype
    return None


def eps_cause(optimizer: torch.optim.Optimizer) -> str | None:
    """The known cause of non-finite weights, when an optimizer's eps is 0 (or subnormal) in its
    parameters' dtype (pure fp16 weights under Adam's 1e-8, or eps=0 in any dtype); None
    otherwise."""
    for g in optimizer.param_groups:
        found = _eps_too_small(g)
        if found is None:
            continue
        eps, dtype = found
        name = str(dtype).removeprefix("torch.")
        if dtype == torch.float16:
            return (
                f"the parameters are pure fp16 under {type(optimizer).__name__}(eps={eps:g}): "
                f"eps is {float(torch.tensor(eps, dtype=torch.float16)):g} in fp16 and the "
                "second moment underflows to 0, so the update divides 0 by 0"
            )
        return (
            f"{type(optimizer).__name__}(eps={eps:g}) with {name} parameters: wherever a "
            "weight's gradient has been exactly 0 so far (an unused embedding row, a dead unit) "
            "the second moment is 0 and the update divides 0 by 0"
        )
    return None


#: an Adam eps fp16 holds as a normal number (its smallest is 6.1e-5)
FP16_SAFE_EPS = 1e-4
#: PyTorch's default Adam eps, a normal number in float32, bfloat16 and float64
SAFE_EPS = 1e-8


def raise_eps(optimizer: torch.optim.Optimizer) -> list[tuple[float, float]]:
    """Raise ``eps`` in the param groups whose eps their parameters' dtype cannot hold, to
    ``FP16_SAFE_EPS`` with fp16 parameters and ``SAFE_EPS`` otherwise; ``(old, new)`` per group
    changed. It only shrinks the update where the second moment is tiny (where the old eps
    divided by 0)."""
    changed: list[tuple[float, float]] = []
    for g in optimizer.param_groups:
        found = _eps_too_small(g)
        if found is None:
            continue
        eps, dtype = found
        new = FP16_SAFE_EPS if dtype == torch.float16 else SAFE_EPS
        g["eps"] = new
        changed.append((eps, new))
    return changed


def eps_fixes(optimizer: torch.optim.Optimizer) -> tuple[str, ...]:
    """The remedies for :func:`eps_cause`'s cause, best first."""
    fp16 = any(
        (found := _eps_too_small(g)) is not None and found[1] == torch.float16
        for g in optimizer.param_groups
    )
    if fp16:
        return FP16_FIXES
    return (f"Set the optimizer's eps to {SAFE_EPS:g} (PyTorch's default) or larger; 0 is no "
            "safe value for an Adam-family optimizer.",)  # fmt: skip


FP16_FIXES = (
    "Keep float32 master weights: build the model in float32 and run the forward under "
    "torch.autocast(dtype=torch.float16) with a GradScaler (or guard.autocast()).",
    "Or use bf16 (torch.autocast(dtype=torch.bfloat16), or model.to(torch.bfloat16)): its range "
    "is float32's.",
    "Or, keeping fp16 parameters, raise the optimizer's eps to 1e-4 (representable in fp16).",
)
