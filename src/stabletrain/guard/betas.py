"""Adam betas whose update has no bound: given in the wrong order, repaired before the first step.

Adam's step is ``m_hat / sqrt(v_hat)``; Kingma & Ba's analysis bounds it only when
``gamma = beta1**2 / sqrt(beta2) < 1``: the second moment must forget no faster than the square
of the first. ``betas=(0.999, 0.9)`` -- the usual pair in the wrong order -- gives gamma 1.05: the
first moment remembers gradients long after the second has forgotten their size, stale
directions are pushed at full step, and the fault matrix's GPT (round 5, ``betas_swapped``) ends
at the unigram level on every seed. Every pair people use on purpose is far inside the bound
((0.9, 0.999): 0.81, (0.9, 0.95): 0.83, (0.9, 0.9): 0.85, (0, 0.99): 0, (0.5, 0.9): 0.26), so a
pair outside it with ``beta1 > beta2`` is read as swapped: the guard swaps it back before the
first update (the optimizer has no state yet), and says so with the line to change. A pair
outside the bound that is not simply swapped is only reported. Reads only ``param_groups``.
"""

from __future__ import annotations

import math

import torch


def unbounded_betas(optimizer: torch.optim.Optimizer) -> list[tuple[int, float, float]]:
    """(param group index, beta1, beta2) of each group whose ``betas`` break
    ``beta1**2 < sqrt(beta2)`` (optimizers without ``betas``: none)."""
    found: list[tuple[int, float, float]] = []
    for i, group in enumerate(optimizer.param_groups):
        betas = group.get("betas")
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            continue
        b1, b2 = betas
        if isinstance(b1, torch.Tensor) or isinstance(b2, torch.Tensor):
            b1, b2 = float(b1), float(b2)
        if not isinstance(b1, (int, float)) or not isinstance(b2, (int, float)):
            continue
        if 0.0 <= b2 <= 1.0 and b1 * b1 >= math.sqrt(b2):
            found.append((i, float(b1), float(b2)))
    return found


def swapped(found: list[tuple[int, float, float]]) -> bool:
    """Every unbounded pair is a usable pair in the wrong order (beta1 > beta2, and the pair
    read the other way round is inside the bound)."""
    return bool(found) and all(b1 > b2 and b2 * b2 < math.sqrt(b1) for _, b1, b2 in found)


def swap_betas(optimizer: torch.optim.Optimizer, found: list[tuple[int, float, float]]) -> None:
    """Put each listed group's betas in the right order (before any state exists)."""
    for i, b1, b2 in found:
        optimizer.param_groups[i]["betas"] = (b2, b1)
