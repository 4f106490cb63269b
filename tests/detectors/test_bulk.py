"""Every detector's bulk path (``update_many``) against its per-record path (``update``).

The doctor replays logs through ``update_many``; the guard calls ``update``. The two must leave a
detector in the same state — same ``state_dict()`` (compared as JSON, so 3 and 3.0 differ) — and
give the same findings, on real logs, the scripted seed scenarios, and fuzzed runs full of what
real logs hold: missing values, NaN/inf, ints, rewinds, duplicate lines, evals, loss-scale drops,
zero LRs. Records are fed in random chunks, mixed with single ``update`` calls, so state carried
between batches is checked too.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from stabletrain.detectors.base import feed
from stabletrain.detectors.bins import Bins, LogHistogram, buckets
from stabletrain.detectors.columns import Batch, Unsupported
from stabletrain.detectors.registry import default_detectors
from stabletrain.detectors.spikes import SpikeDetector
from stabletrain.logs.read import read_run
from stabletrain.records import ConfigFacts, StepRecord


def _state(d: object) -> str:
    return json.dumps(d.state_dict(), sort_keys=True, default=repr)  # type: ignore[attr-defined]


def _findings(d: object, facts: ConfigFacts | None) -> str:
    return json.dumps([f.to_json() for f in d.finish(facts)], default=repr)  # type: ignore[attr-defined]


def _name(d: object) -> str:
    return type(d).__name__ + "/" + str(getattr(d, "metric", ""))


def assert_same(
    records: Sequence[StepRecord],
    facts: ConfigFacts | None = None,
    *,
    chunks: int | None = None,
    bulk_only: bool = False,
) -> None:
    """Per-record vs bulk on ``records`` for every detector. ``chunks``: seed of a random split
    into batches and single updates (None: one batch). ``bulk_only``: call ``update_many``
    directly, so a fallback to ``update`` (Unsupported) fails the test."""
    for one, many in zip(default_detectors(), default_detectors(), strict=True):
        for r in records:
            one.update(r)
        if chunks is None:
            if bulk_only and hasattr(many, "update_many"):
                many.update_many(Batch(records))
            else:
                feed(many, records)
        else:
            rng = random.Random(chunks)
            i = 0
            while i < len(records):
                if rng.random() < 0.2:
                    many.update(records[i])
                    i += 1
                else:
                    k = rng.choice([1, 2, 7, 64, 500, 20_000])
                    feed(many, records[i : i + k])
                    i += k
        assert _state(one) == _state(many), _name(one)
        assert _findings(one, facts) == _findings(many, facts), _name(one)


# -- fuzzed runs -------------------------------------------------------------------------------
def fuzz_run(seed: int, n: int, *, ints: bool = False, scaled: bool = False) -> list[StepRecord]:
    """A noisy run with everything a log may hold (see the module docstring)."""
    rng = random.Random(seed)

    def value(x: float) -> float | int | None:
        r = rng.random()
        odd: list[float | int | None] = [None, math.nan, math.inf, 0.0, -0.0, -x]
        if r < 0.06:
            return odd[int(r / 0.01)]
        if ints and r < 0.08:
            return int(x * 10)
        return x

    recs: list[StepRecord] = []
    step, scale = 0, 65536.0
    for _ in range(n):
        if rng.random() < 0.01 and step > 30:
            step -= rng.randint(1, 30)  # a resumed run logs steps again
        kind = "eval" if rng.random() < 0.03 else "train"
        loss = 2.0 * math.exp(-step / 300) + 0.1 + rng.gauss(0, 0.02)
        loss *= 5 if rng.random() < 0.01 else 1
        g = abs(0.5 + rng.gauss(0, 0.1)) * (30 if rng.random() < 0.01 else 1)
        lr = 0.0 if rng.random() < 0.02 else 1e-3 * min(1.0, (step + 1) / 100)
        if rng.random() < 0.05:
            scale = scale / 2 if rng.random() < 0.6 else scale * 2
        train = kind == "train"
        recs.append(
            StepRecord(
                step=step,
                kind=kind,
                epoch=rng.choice([None, step / 50]) if rng.random() < 0.1 else step // 50,
                loss=value(loss) if train else None,
                grad_norm=value(g) if train else None,
                clip_coef=rng.choice([None, 1.0, min(1.0, 1.0 / g), math.nan]) if train else None,
                lr=value(lr) if rng.random() > 0.05 else None,
                loss_scale=scale if scaled and rng.random() > 0.1 else None,
                skipped=rng.choice([None, False, True]) if rng.random() < 0.1 else None,
                action="skip_spike" if rng.random() < 0.02 else None,
                accuracy=value(rng.random()) if rng.random() < 0.2 else None,
                eval_loss=value(loss * 1.1) if not train else None,
                eval_accuracy=rng.random() if not train and rng.random() < 0.5 else None,
                wall_time=value(step * 0.1) if rng.random() > 0.1 else None,
                step_time=value(0.1) if rng.random() < 0.3 else None,
                rank=rng.choice([None, 0, 1]),
            )
        )
        if rng.random() < 0.05:
            recs.append(recs[-1])  # the same line logged twice
        step += 1
    return recs


@pytest.mark.parametrize("seed", range(8))
def test_fuzzed_runs(seed: int) -> None:
    recs = fuzz_run(seed, 4000, ints=seed % 2 == 1, scaled=seed % 4 >= 2)
    assert_same(recs, chunks=seed)


def test_long_float_run_in_one_batch() -> None:
    """Long enough for the spike detectors' bulk stretches and the bins' coarsening."""
    recs = fuzz_run(99, 30_000, scaled=True)
    assert_same(recs, bulk_only=True)


# -- scripted and real logs ------------------------------------------------------------------
def test_seed_scenarios(scenarios) -> None:
    for build in (scenarios.clean_run, scenarios.seed000, scenarios.seed001):
        recs, facts = build()
        assert_same(recs, facts)
        assert_same(recs, facts, chunks=1)
    recs, facts = scenarios.seed003()
    assert_same(recs, facts, chunks=2)
    clean, raw, facts = scenarios.seed004()
    assert_same(clean, facts)
    assert_same(raw, facts, chunks=3)


def _real_runs(root: Path) -> list[Path]:
    out = []
    for d in sorted(root.iterdir()):
        files = sorted(p for p in d.iterdir() if p.name != "SOURCE.txt")
        out += files if d.name in ("trainproof_gallery",) or len(files) == 1 else [d]
    return out


def test_real_logs(real_logs: Path) -> None:
    runs = 0
    for path in _real_runs(real_logs):
        try:
            data = read_run(path)
        except Exception:  # a format the readers do not take whole (a dir of pastes)
            continue
        runs += 1
        assert_same(data.records, data.facts)
        assert_same(data.raw, data.facts, chunks=runs)
    assert runs >= 15


# -- hard cases, one by one ------------------------------------------------------------------
def test_flat_and_zero_series() -> None:
    """A loss at exactly 0 (GRPO) with signed zeros: numpy's sort may order -0.0 and 0.0 either
    way, the cached median must still be the one robust_stats gives. A constant grad norm: MAD
    0, so every change is a candidate and the bulk path goes record by record."""
    rng = random.Random(0)
    zeros = [StepRecord(step=i, loss=rng.choice([0.0, -0.0])) for i in range(3000)]
    one, many = SpikeDetector("loss"), SpikeDetector("loss")
    for start in range(0, len(zeros), 97):  # the state after every batch, not only the last
        part = zeros[start : start + 97]
        for r in part:
            one.update(r)
        many.update_many(Batch(part))
        assert _state(one) == _state(many), start
    flat = [StepRecord(step=i, grad_norm=1.0 + (i % 2), loss=2.0) for i in range(3000)]
    assert_same(flat, bulk_only=True)


def test_spike_then_recovery_in_a_bulk_stretch() -> None:
    recs = [StepRecord(step=i, loss=1.0 + 0.01 * math.sin(i)) for i in range(3000)]
    recs[1500] = StepRecord(step=1500, loss=9.0)
    recs[2400] = StepRecord(step=2400, loss=30.0)
    one, many = SpikeDetector("loss"), SpikeDetector("loss")
    for r in recs:
        one.update(r)
    many.update_many(Batch(recs))
    assert _state(one) == _state(many)
    assert [e["recovered_at"] for e in many.episodes] == [1501, 2401]


def test_int_values_fall_back_exactly() -> None:
    recs = [StepRecord(step=i, loss=3 if i % 7 else 2.5, grad_norm=i % 5) for i in range(500)]
    with pytest.raises(Unsupported):
        SpikeDetector("loss").update_many(Batch(recs))
    assert_same(recs)


def test_strings_in_a_column_fall_back() -> None:
    recs = [StepRecord(step=i, loss=1.0, lr="3e-4" if i == 7 else 3e-4) for i in range(50)]  # type: ignore[arg-type]
    with pytest.raises(Unsupported):
        Batch(recs).floats("lr")
    one = default_detectors()[-1]  # SlowSteps does not read the LR: it stays in bulk
    feed(one, recs)


def test_sparse_steps_coarsen_like_add() -> None:
    """Steps so far apart that one halving leaves more than max_bins blocks."""
    steps = [i * 1000 + (i % 3) for i in range(300)] + [5, 3, 1_000_000]
    a, b = Bins(max_bins=8, block=4), Bins(max_bins=8, block=4)
    for s in steps:
        a.add(s, None, 1.0 + s % 7)
    recs = [StepRecord(step=s, grad_norm=1.0 + s % 7) for s in steps]
    batch = Batch(recs)
    batch.check_bins()
    b.add_many(batch, batch.finite("grad_norm"), batch.floats("grad_norm"))
    assert a.state_dict() == b.state_dict()


def test_bucket_edges_use_math_log() -> None:
    edge = [math.exp(k * math.log(1.02)) for k in range(-500, 500)]
    near = edge + [math.nextafter(x, 0) for x in edge] + [math.nextafter(x, math.inf) for x in edge]
    import numpy as np

    want = [math.floor(math.log(x) / math.log(1.02)) for x in near]
    assert buckets(np.array(near)).tolist() == want
    h, g = LogHistogram(), LogHistogram()
    for x in [*near, 0.0, -1.0, math.nan, math.inf]:
        h.add(x)
    g.add_many(np.array([*near, 0.0, -1.0, math.nan, math.inf]))
    assert h.state() == g.state()


def test_duplicates_across_batches_and_heavy_repeats() -> None:
    base = [StepRecord(step=i, loss=1.0 / (i + 1)) for i in range(300)]
    raw = [r for r in base for _ in range(4)]  # four ranks, no rank guard
    assert_same(raw, chunks=5)
    assert_same(raw, bulk_only=True)


# -- hostile values: data, never a crash (issue 12, item 3) ----------------------------------
#: a value beyond float range (a 400-digit integer) is the readers' to turn into inf: records hold floats
_HOSTILE: list[float] = [math.inf, -math.inf, math.nan, 1e300, -1e300, 1e308, -0.0, 5e-324]


@pytest.mark.parametrize("field", ["epoch", "loss", "grad_norm", "lr", "loss_scale", "step_time",
                                   "wall_time", "accuracy", "clip_coef", "eval_loss"])  # fmt: skip
def test_non_finite_and_huge_values_are_data_not_a_crash(field: str) -> None:
    recs = fuzz_run(7, 600)
    rng = random.Random(field)
    hostile = []
    for r in recs:
        if rng.random() < 0.2:
            r = StepRecord(
                **{**{f: getattr(r, f) for f in r.__slots__}, field: rng.choice(_HOSTILE)}
            )  # type: ignore[attr-defined]
        hostile.append(r)
    hostile += [StepRecord(step=10**30, loss=1.0), StepRecord(step=-5, epoch=math.inf)]
    assert_same(hostile, chunks=3)
    for d in default_detectors():
        for r in hostile:
            d.update(r)
        json.dumps([f.to_json() for f in d.finish(None)], default=repr)
