"""``ema_jumps`` gives exactly the marks and EMA of the record-by-record recurrence the warm-up
detector's ``update`` runs — on the shortcut path and on each of its fall-backs."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stabletrain.detectors import ema as ema_module
from stabletrain.detectors.ema import ema_jumps


def _naive(ema, values, n0, scale, offset, positive):
    """The live path: one value at a time, as ``WarmupDetector._classify`` does it."""
    marks = []
    for i, v in enumerate(values):
        seen = n0 + i + 1 > 5
        jumped = ema is not None and v > scale * ema + offset and (not positive or scale * ema > 0)
        marks.append(bool(seen and jumped))
        ema = v if ema is None else 0.9 * ema + 0.1 * v
    return marks, ema


def _bulk(ema, values, n0, scale, offset, positive, log=False):
    x = np.asarray(values, dtype=np.float64)
    js = np.arange(x.size)
    severe = np.zeros(x.size, dtype=bool)
    if log:
        approx = np.log(x)
        exact = lambda sl: list(map(math.log, x[sl].tolist()))  # noqa: E731
    else:
        approx = x
        exact = lambda sl: x[sl].tolist()  # noqa: E731
    out = ema_jumps(
        ema, approx, exact, js, n0, severe, scale=scale, offset=offset, positive=positive
    )
    return severe.tolist(), out


rng = np.random.default_rng(7)
n = 20_000
decay = (3.0 * np.exp(-np.arange(n) / 4000) + 0.05) * rng.lognormal(0, 0.3, n)
decay[[500, 9000, 15000]] *= 8.0  # real spikes: marks to find
huge_range = np.where(rng.random(n) < 0.5, 1e300, 1e-300) * rng.random(n)
near_zero = rng.normal(0, 1e-3, n)
CASES = {
    "decaying loss with spikes": decay.tolist(),
    "hundreds of orders of magnitude": huge_range.tolist(),
    "signs around zero": near_zero.tolist(),
    "short column": decay[:300].tolist(),
}


@pytest.mark.parametrize("name", list(CASES))
@pytest.mark.parametrize("ema", [None, 0.7])
def test_loss_rule_matches_the_recurrence_exactly(name: str, ema: float | None) -> None:
    values = CASES[name]
    want_marks, want_ema = _naive(ema, values, 0, 2.0, 0.0, True)
    got_marks, got_ema = _bulk(ema, values, 0, 2.0, 0.0, True)
    assert got_marks == want_marks
    assert got_ema == want_ema  # the same float, not a close one
    if name.startswith("decaying"):
        assert sum(want_marks) >= 3


def test_log_rule_with_numpy_log_decides_like_math_log() -> None:
    g = np.abs(rng.normal(1.0, 0.2, n)) + 1e-3  # grad norms around 1: logs around 0
    g[[4000, 12000]] = 50.0
    values = g.tolist()
    logs = [math.log(v) for v in values]
    want_marks, want_ema = _naive(None, logs, 3, 1.0, math.log(4.0), False)
    got_marks, got_ema = _bulk(None, values, 3, 1.0, math.log(4.0), False, log=True)
    assert got_marks == want_marks and got_ema == want_ema
    assert sum(want_marks) == 2


def _on_the_edge() -> list[float]:
    """The decaying column with value 10,000 exactly twice the EMA before it."""
    values = decay.tolist()
    e = None
    for v in values[:10_000]:
        e = v if e is None else 0.9 * e + 0.1 * v
    values[10_000] = 2.0 * e
    return values


def test_a_value_on_the_edge_falls_back_and_stays_exact() -> None:
    values = _on_the_edge()
    want = _naive(None, values, 0, 2.0, 0.0, True)
    assert _bulk(None, values, 0, 2.0, 0.0, True) == want
    assert want[0][10_000] is False  # equal to the edge is not above it


def test_a_real_looking_column_takes_the_fast_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The shortcut is what makes a 1M-row diagnosis fast: an ordinary column must not fall
    back to the exact loop."""
    calls = []
    real = ema_module._exact  # the exact loop: only the fall-back runs it
    monkeypatch.setattr(ema_module, "_exact", lambda *a: calls.append(1) or real(*a))
    want = _naive(None, decay.tolist(), 0, 2.0, 0.0, True)
    assert _bulk(None, decay.tolist(), 0, 2.0, 0.0, True) == want
    assert calls == []
    _bulk(None, _on_the_edge(), 0, 2.0, 0.0, True)  # a comparison the margin cannot decide
    assert calls == [1]
