"""Gradient clipping: fixed max-norm, adaptive z-score, percentile, and AGC.

Pure functions first (they work without a Guard), then small stateful clippers that hold the
statistics adaptive modes need, each with ``state_dict``/``load_state_dict``.

- Fixed max-norm: ``coef = min(1, max_norm / (norm + eps))`` — the global-norm rule of
  ``torch.nn.utils.clip_grad_norm_``, computed as a tensor so it stays on the device.
- Z-score (ZClip, Kumar et al. 2025): EMA mean/variance of the grad norm; a norm more than
  ``z_thr`` EMA stds above the mean is clipped *harder the bigger the outlier* (to
  ``mean + z_thr**2 / z * std``, the reciprocal rule). Unlike ZClip's reference, the EMA is fed
  only finite values the guard did not flag as spikes, so a NaN or a burst cannot poison it.
- Percentile (AutoClip, Seetharaman et al. 2020): clip at the p-th percentile of recent norms.
- AGC (Brock et al. 2021, NFNets): unit-wise, ``‖g_i‖ ≤ λ · max(‖w_i‖, eps)`` per output unit.

Limits: the statistics of adaptive clippers are host floats, fed the norms the guard reads. On the
immediate path they give a host max-norm each step (``max_norm``); on the sync-free path they
give a device expression of the norm (``ceiling``) whose statistics are refreshed at each read.
AGC and the fixed rule are fully on-device.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import torch

ZERO_EPS = 1e-6


def clip_coef(norm: torch.Tensor, max_norm: float | torch.Tensor) -> torch.Tensor:
    """``min(1, max_norm / (norm + 1e-6))`` as a tensor (NaN norm → NaN coef; caller decides)."""
    return torch.clamp(max_norm / (norm + ZERO_EPS), max=1.0)


def apply_coef_(grads: list[torch.Tensor], coef: torch.Tensor) -> None:
    """Multiply every grad in place by a 0-dim ``coef`` (no host sync)."""
    if grads:
        torch._foreach_mul_(grads, coef.to(grads[0].device))


def zscore_target(norm: float, mean: float, std: float, z_thr: float) -> float | None:
    """The norm to clip to, or None when ``norm`` is within ``z_thr`` stds of the mean.

    Reciprocal rule: an outlier at z is clipped to ``mean + z_thr**2 / z * std``, so a 10σ
    outlier is pulled further in than a 3σ one.
    """
    if std <= 0 or not math.isfinite(norm):
        return None
    z = (norm - mean) / std
    if z <= z_thr:
        return None
    return mean + (z_thr * z_thr / z) * std


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated ``q``-th percentile (0-100) of non-empty ``values``."""
    xs = sorted(values)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@torch.no_grad()
def agc_(params: list[torch.nn.Parameter], clip: float, eps: float = 1e-3) -> None:
    """Adaptive gradient clipping, unit-wise (per output row/filter), in place, on device."""
    for p in params:
        if p.grad is None:
            continue
        g, w = p.grad, p.detach()
        dims = tuple(range(1, g.ndim)) if g.ndim > 1 else None
        w_norm = torch.linalg.vector_norm(w, dim=dims, keepdim=True).clamp_(min=eps)
        g_norm = torch.linalg.vector_norm(g, dim=dims, keepdim=True)
        max_norm = w_norm * clip
        scale = torch.where(g_norm > max_norm, max_norm / g_norm.clamp(min=ZERO_EPS), 1.0)
        g.mul_(scale.to(g.dtype))


class ZScoreClipper:
    """EMA mean/variance of clean grad norms → a per-step max norm (see :func:`zscore_target`)."""

    def __init__(self, z_thr: float = 2.5, alpha: float = 0.97, warmup: int = 25) -> None:
        self.z_thr, self.alpha, self.warmup = z_thr, alpha, warmup
        self.mean = 0.0
        self.var = 0.0
        self.n = 0
        self._warm: list[float] = []

    @property
    def warming_up(self) -> bool:
        """True until ``warmup`` clean norms were observed (no statistics to clip with yet)."""
        return self.n < self.warmup

    def max_norm(self, norm: float) -> float | None:
        """The norm to clip ``norm`` to this step, or None (no adaptive clip yet / not needed)."""
        if self.n < self.warmup:
            return None
        return zscore_target(norm, self.mean, math.sqrt(self.var), self.z_thr)

    def ceiling(self, norm: torch.Tensor) -> torch.Tensor | float:
        """``max_norm`` as a device expression of ``norm`` (``inf``: no adaptive clip)."""
        std = math.sqrt(self.var)
        if self.n < self.warmup or std <= 0:
            return math.inf
        over = norm.double() - self.mean
        # z > z_thr  →  mean + z_thr**2 / z * std  ==  mean + (z_thr * std)**2 / (norm - mean)
        c = (self.z_thr * std) ** 2
        return torch.where(over > self.z_thr * std, self.mean + c / over, math.inf)

    def observe(self, norm: float) -> None:
        """Feed one *clean* (finite, non-spike) post-clip norm."""
        if not math.isfinite(norm):
            return  # never poison the statistics
        self.n += 1
        if self.n <= self.warmup:
            self._warm.append(norm)
            if self.n == self.warmup:
                self.mean = sum(self._warm) / len(self._warm)
                self.var = sum((x - self.mean) ** 2 for x in self._warm) / len(self._warm)
                self._warm = []
            return
        delta = norm - self.mean
        self.mean += (1 - self.alpha) * delta
        self.var = self.alpha * (self.var + (1 - self.alpha) * delta * delta)

    def state_dict(self) -> dict[str, Any]:
        return {"mean": self.mean, "var": self.var, "n": self.n, "warm": list(self._warm)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mean, self.var = float(state["mean"]), float(state["var"])
        self.n, self._warm = int(state["n"]), [float(x) for x in state["warm"]]


class PercentileClipper:
    """AutoClip: clip at the ``q``-th percentile of the last ``window`` clean norms."""

    def __init__(self, q: float = 90.0, window: int = 500, warmup: int = 25) -> None:
        self.q, self.window, self.warmup = q, window, warmup
        self.history: deque[float] = deque(maxlen=window)
        self._cached: float | None = None
        self._stale = 0

    @property
    def warming_up(self) -> bool:
        """True until ``warmup`` clean norms were observed."""
        return len(self.history) < self.warmup

    def max_norm(self, norm: float) -> float | None:
        if len(self.history) < self.warmup:
            return None
        # re-sorting 500 floats each step would cost more than the step on tiny models
        if self._cached is None or self._stale >= 10:
            self._cached, self._stale = percentile(list(self.history), self.q), 0
        return self._cached if norm > self._cached else None

    def ceiling(self, norm: torch.Tensor) -> torch.Tensor | float:
        """The percentile as the sync-free path's ceiling (``inf`` while warming up)."""
        if len(self.history) < self.warmup:
            return math.inf
        self.max_norm(math.inf)  # refresh the cached percentile when stale
        return self._cached if self._cached is not None else math.inf

    def observe(self, norm: float) -> None:
        if math.isfinite(norm):
            self.history.append(norm)
            self._stale += 1

    def state_dict(self) -> dict[str, Any]:
        return {"history": list(self.history), "cached": self._cached, "stale": self._stale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = deque((float(x) for x in state["history"]), maxlen=self.window)
        self._cached, self._stale = state["cached"], int(state["stale"])
