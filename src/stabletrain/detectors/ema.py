"""An exponential moving average ``e <- 0.9 * e + 0.1 * v`` over a whole column at numpy speed,
with exactly the floats the record-by-record recurrence gives — and the "jumped above it" test
the warm-up detector makes against it.

The recurrence is sequential in floating point: the EMA after a million values depends on the
rounding of every step, and the doctor's bulk path must leave a detector in the state the live
path (one record at a time) would (``tests/detectors/test_bulk.py``). A Python loop over a
million values costs ~0.3 s, most of a 1M-row diagnosis's budget. So:

1. **Approximate in blocks.** Within a block of 256 values the EMA is a fixed linear map of the
   block (a 256x256 lower-triangular matrix of powers of 0.9) plus 0.9^(i+1) x the EMA before
   the block; only the block ends are chained in Python. The result is within ~1e-13 x M of the
   exact sequential floats (M = the largest magnitude involved; both are within that of the real
   EMA), so with the margin ``1e-9 * M`` every comparison whose outcome the margin cannot change
   is decided exactly. If any is within the margin, everything falls back to the exact loop.
2. **The final state, exactly, by coupling from the past.** The floating-point step
   ``e -> fl(fl(0.9e) + fl(0.1v))`` is monotone in ``e``. Start two trajectories ``2048``
   values before the end, from the approximation minus and plus the margin (which bracket the
   exact EMA there); run both exactly to the end. If they meet, the exact trajectory — squeezed
   between them — met them too, and that is the exact final value. If not (a column spanning
   hundreds of orders of magnitude), the exact loop runs.

Either way the marks and the returned EMA are the ones the exact loop gives; the fallback keeps
the guarantee when the shortcut's assumptions do not hold.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from itertools import accumulate

import numpy as np

__all__ = ["ema_jumps"]

_BLOCK = 256
_TAIL = 2048
_MARGIN = 1e-9
_K = np.arange(_BLOCK)
_POW = np.tril(0.9 ** (_K[:, None] - _K[None, :]).astype(np.float64)) * 0.1  # v_k -> e_i
_CARRY = 0.9 ** (_K + 1.0)  # EMA before the block -> e_i


def _step(e: float, v: float) -> float:
    return 0.9 * e + 0.1 * v


def _exact(ema: float | None, values: Sequence[float]) -> np.ndarray:
    """The EMA after each value, by the record-by-record recurrence (the first value starts it
    when there is no EMA yet)."""
    n = len(values)
    first = values[0] if ema is None else _step(ema, values[0])
    return np.fromiter(accumulate(values[1:], _step, initial=first), dtype=np.float64, count=n)


def _approximate(e0: float, v: np.ndarray) -> np.ndarray:
    """The EMA after each of ``v`` starting from ``e0``, by blocks (see the module docstring)."""
    n = int(v.size)
    m = -(-n // _BLOCK)
    blocks = np.zeros(m * _BLOCK)
    blocks[:n] = v
    inner = blocks.reshape(m, _BLOCK) @ _POW.T  # each block's own contribution
    starts = np.empty(m)  # the EMA before each block
    carry_end = float(_CARRY[-1])
    e = e0
    for b, end in enumerate(inner[:, -1].tolist()):
        starts[b] = e
        e = end + carry_end * e
    return (inner + starts[:, None] * _CARRY).ravel()[:n]


def ema_jumps(
    ema: float | None,
    approx: np.ndarray,
    exact: Callable[[slice], list[float]],
    js: np.ndarray,
    n0: int,
    severe: np.ndarray,
    *,
    scale: float,
    offset: float,
    positive: bool,
) -> float | None:
    """Mark ``severe[js[i]]`` where value ``i`` jumped above its EMA — ``v > scale * e + offset``
    (and ``scale * e > 0`` when ``positive``), ``e`` the EMA before it, once more than 5 records
    were seen (``js + n0 + 1 > 5``) — and return the EMA after the last value.

    ``approx``: the values as float64, each within one ulp of the exact value (``np.log`` for
    ``math.log``); ``exact(sl)``: the exact Python floats of a slice, as the live path computes
    them. The marks and the returned EMA are exactly those of the record-by-record recurrence.
    """
    if approx.size == 0:
        return ema
    seen = js + n0 + 1 > 5
    fast = _fast(ema, approx, exact, seen, scale, offset, positive)
    if fast is None:  # the shortcut cannot vouch for a mark or the final EMA: the exact loop
        values = exact(slice(None))
        after = _exact(ema, values)
        v = np.asarray(values, dtype=np.float64)
        hit, final = _jumps(v, _before(ema, after), seen, scale, offset, positive), float(after[-1])
    else:
        hit, final = fast
    severe[js[hit]] = True
    return final


def _before(ema: float | None, after: np.ndarray) -> np.ndarray:
    """The EMA before each value (NaN before the first when there was none)."""
    prev = np.empty(after.size)
    prev[0] = np.nan if ema is None else ema
    prev[1:] = after[:-1]
    return prev


def _jumps(
    v: np.ndarray, prev: np.ndarray, seen: np.ndarray, scale: float, offset: float, positive: bool
) -> np.ndarray:
    """Where a value jumped above the EMA before it (see :func:`ema_jumps`)."""
    hit = v > scale * prev + offset
    if positive:
        hit &= scale * prev > 0
    return hit & seen


def _fast(
    ema: float | None,
    approx: np.ndarray,
    exact: Callable[[slice], list[float]],
    seen: np.ndarray,
    scale: float,
    offset: float,
    positive: bool,
) -> tuple[np.ndarray, float] | None:
    """The marks and the final EMA by the blocked approximation and coupling from the past;
    None when a comparison lies within the margin or the trajectories do not meet."""
    n = int(approx.size)
    if n <= _TAIL:
        return None
    e0 = float(approx[0]) if ema is None else _step(ema, float(approx[0]))
    after = np.concatenate(([e0], _approximate(e0, approx[1:])))
    big = float(np.max(np.abs(approx)))
    margin = _MARGIN * max(big, abs(e0), abs(ema or 0.0), 1e-300) * (1 + abs(scale))
    if not np.all(np.isfinite(after)) or not np.isfinite(margin):
        return None
    prev = _before(ema, after)
    unsure = np.abs(approx - (scale * prev + offset)) <= margin
    if positive:
        unsure |= np.abs(scale * prev) <= margin
    if np.any(unsure[1:] & seen[1:]) or (ema is not None and unsure[0] and seen[0]):
        return None
    final = _final_exactly(after, exact, n, margin)
    if final is None:
        return None
    return _jumps(approx, prev, seen, scale, offset, positive), final


def _final_exactly(
    after: np.ndarray, exact: Callable[[slice], list[float]], n: int, margin: float
) -> float | None:
    """The exact EMA after the last value, if two trajectories bracketing it ``_TAIL`` values
    before the end meet; else None."""
    start = n - _TAIL
    tail = exact(slice(start + 1, n))
    lo, hi = float(after[start]) - margin, float(after[start]) + margin
    for v in tail:
        lo, hi = _step(lo, v), _step(hi, v)
    return lo if lo == hi else None
