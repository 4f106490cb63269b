"""SpikeDetector: robust delayed baseline, warm-up, recovery, fixes in the user's keys."""

from __future__ import annotations

import math
import random

import pytest

from stabletrain.detectors.evidence import TOO_FEW
from stabletrain.detectors.spikes import SpikeDetector, robust_stats
from stabletrain.records import ConfigFacts, StepRecord


def _noisy(n: int, base: float = 2.0, seed: int = 0) -> list[float]:
    rng = random.Random(seed)
    return [base + rng.uniform(-0.05, 0.05) for _ in range(n)]


def _feed(det: SpikeDetector, values: list[float], metric: str = "loss") -> list[int]:
    hits = []
    for i, v in enumerate(values):
        if det.update(StepRecord(step=i, **{metric: v})) is not None:
            hits.append(i)
    return hits


def test_robust_stats_hand_computed() -> None:
    med, std = robust_stats([1.0, 2.0, 3.0, 4.0, 100.0])
    assert med == 3.0
    assert std == pytest.approx(1.4826 * 1.0)


def test_single_spike_flagged_and_recovers() -> None:
    values = _noisy(60)
    values[40] = 8.0
    det = SpikeDetector("loss")
    assert _feed(det, values) == [40]
    (f,) = det.finish()
    assert f.id == "loss-spike" and f.severity == "warning"
    assert f.steps == [40]
    assert f.evidence["unrecovered"] == 0 and f.evidence["recovery_steps"] == [1]
    assert f.evidence["worst_peak"] == 8.0
    assert "recovered at step 41" in f.explanation


def test_no_spikes_during_warmup_and_on_smooth_decay() -> None:
    # fast early drop (warm-up) then slow decay: never a spike
    values = [10.0 * math.exp(-i / 5) + 1.0 for i in range(15)] + [
        1.0 - i * 1e-3 for i in range(200)
    ]
    det = SpikeDetector("loss")
    assert _feed(det, values) == []
    assert det.finish() == []


def test_cluster_cannot_raise_its_own_baseline() -> None:
    # 30 steps at 3x: with a naive rolling baseline the cluster would become "normal" after a few
    # steps; the delayed window keeps spikes out, so every step of it is a spike and it never recovers.
    values = _noisy(50) + [6.0 + 0.01 * i for i in range(30)]
    det = SpikeDetector("loss")
    hits = _feed(det, values)
    assert hits == list(range(50, 80))
    (f,) = det.finish()
    assert f.severity == "error" and f.evidence["unrecovered"] == 1
    assert f.evidence["episodes"] == 1


def test_ramp_judged_against_delayed_baseline() -> None:
    # a ramp of +15%/step: each value is close to the previous, but the delay keeps the ramp out
    values = _noisy(40) + [2.0 * 1.15**k for k in range(1, 12)]
    hits = _feed(SpikeDetector("loss", delay=5), values)
    assert hits and hits[0] <= 43


def test_nonfinite_ignored_and_does_not_poison() -> None:
    values = _noisy(40)
    values[30] = float("nan")
    values[31] = float("inf")
    det = SpikeDetector("grad_norm")
    assert _feed(det, values, "grad_norm") == []
    med, std = det.baseline() or (math.nan, math.nan)
    assert math.isfinite(med) and math.isfinite(std)


def test_grad_spike_id_and_fixes_use_user_keys() -> None:
    values = _noisy(50, base=1.0)
    # two steps high: an excursion of the updates (one step out of the blue would be a bad batch)
    values[45], values[46] = 50.0, 40.0
    det = SpikeDetector("grad_norm")
    assert _feed(det, values, "grad_norm") == [45, 46]
    facts = ConfigFacts()
    facts.set("lr", 3e-3, key="optim.lr")
    facts.set("max_grad_norm", 5.0, key="train.max_grad_norm")
    (f,) = det.finish(facts)
    assert f.id == "grad-spike"
    changes = {k: v for fix in f.fixes for k, v in fix.changes.items()}
    assert changes["optim.lr"] == pytest.approx(1.5e-3)
    assert changes["train.max_grad_norm"] == 0.5
    assert "warmup_steps" in changes


def test_state_dict_round_trip_continues_identically() -> None:
    values = _noisy(120, seed=3)
    values[70] = 9.0
    values[100] = 7.0
    a = SpikeDetector("loss")
    _feed(a, values[:80])
    b = SpikeDetector("loss")
    b.load_state_dict(a.state_dict())
    rest = [StepRecord(step=80 + i, loss=v) for i, v in enumerate(values[80:])]
    out_a = [a.update(r) is not None for r in rest]
    out_b = [b.update(r) is not None for r in rest]
    assert out_a == out_b and any(out_a)
    assert a.finish()[0].to_json() == b.finish()[0].to_json()
    assert a.state_dict() == b.state_dict()


def test_bad_metric_rejected() -> None:
    with pytest.raises(ValueError, match="loss"):
        SpikeDetector("lr")  # type: ignore[arg-type]


def test_grad_norm_swing_of_3x_is_not_a_spike_but_6x_is() -> None:
    # Healthy small-batch runs swing their grad norm 2-3x between steps; only >= 4x is named.
    rng = random.Random(0)
    norms = [1.0 + 0.02 * rng.random() for _ in range(60)]
    swing, spike = SpikeDetector("grad_norm"), SpikeDetector("grad_norm")
    for i, n in enumerate(norms):
        swing.update(StepRecord(step=i, grad_norm=n))
        spike.update(StepRecord(step=i, grad_norm=n))
    assert swing.update(StepRecord(step=60, grad_norm=3.0)) is None
    hit = spike.update(StepRecord(step=60, grad_norm=6.0))
    assert hit is not None and hit.id == "grad-spike" and hit.steps == [60]


def test_isolated_recovered_grad_spike_is_info_recurring_ones_warn() -> None:
    def run(spike_steps: set[int]) -> str:
        det = SpikeDetector("grad_norm")
        for i in range(200):
            det.update(
                StepRecord(step=i, grad_norm=8.0 if i in spike_steps else 1.0 + 0.01 * (i % 3))
            )
        (finding,) = det.finish()
        return finding.severity

    assert run({100}) == "info"
    assert run({60, 100, 140}) == "warning"


def test_loss_sitting_at_zero_has_no_spikes() -> None:
    # an RL objective that is ~0 by construction: 6e-4 above a zero median is not a spike
    det = SpikeDetector("loss")
    for i in range(100):
        assert det.update(StepRecord(step=i, loss=6e-4 if i % 17 == 0 and i > 40 else 0.0)) is None
    assert det.finish() == []


def test_lower_lr_fix_gives_a_value_only_when_the_lr_is_known() -> None:
    from stabletrain.detectors.fixes import lower_lr_fix

    known = ConfigFacts()
    known.set("lr", 3e-4, key="training.learning_rate")
    assert lower_lr_fix(known, 3).changes == {"training.learning_rate": 1e-4}
    unknown = lower_lr_fix(ConfigFacts(), 3)
    # no value from a guessed base; relative to the run's LR (the change set fills it in)
    assert unknown.changes == {} and unknown.relative == {"lr": 1 / 3}


# -- the start of a log: values the live rule cannot judge while it warms up ----------------------
# Shapes taken from shared/real-logs (bigscience chronicles, an HF console paste, trainproof's
# gallery, TRL GRPO): short excerpts are nothing but warm-up for the live rule.


def _records(values: list[float | None], metric: str = "loss", every: int = 1, start: int = 0):
    return [
        StepRecord(step=start + i * every, **{metric: v})
        for i, v in enumerate(values)
        if v is not None
    ]


def _finish(values: list[float | None], metric: str = "loss", every: int = 1, start: int = 0):
    det = SpikeDetector(metric)  # type: ignore[arg-type]
    for r in _records(values, metric, every, start):
        assert det.update(r) is None  # live behaviour: nothing is flagged during warm-up
    return det.finish()


def test_megatron_excerpt_jump_is_an_unrecovered_spike() -> None:
    # bigscience tr1-13B, every 10 iterations: 2.776 2.773 2.768 -> 7.34 8.72 7.65 7.19 6.85
    values = [2.775923, 2.772822, 2.768131, 7.343709, 8.715872, 7.654131, 7.19247, 6.849044]
    (f,) = _finish(values, every=10, start=29020)
    assert f.id == "loss-spike" and f.severity == "error"
    assert f.steps[0] == 29050 and f.evidence["episodes"] == 1  # one episode, not one per line
    assert f.evidence["unrecovered"] == 1
    assert f.evidence["worst_baseline"] == pytest.approx(2.772822)
    assert "the values just before it" in f.explanation


def test_megatron_excerpt_rise_under_1_5x_of_the_highest_is_not_a_spike() -> None:
    # near miss: the same excerpt rising 1.45x — inside the stricter ratio a 3-value baseline needs
    values = [2.775923, 2.772822, 2.768131, 4.02, 4.05, 3.9, 3.8]
    assert _finish(values, every=10, start=29020) == []


def test_console_paste_spike_on_third_row_recovers() -> None:
    # gemma issue paste: 5.63, 5.30, then 153318.95, then back to 5.75
    (f,) = _finish([5.6332, 5.3049, 153318.95, 5.7517, 5.6231, 5.0968, 5.8938])
    assert f.steps == [2] and f.evidence["recovery_steps"] == [1]
    # judged against only 2 values before it, but 27,000x above them: a jump no noise explains
    # needs no spread (spikes.evident_jump), so a warning, not a note
    assert f.severity == "warning" and TOO_FEW not in f.title


def test_console_paste_small_jump_on_third_row_is_a_note() -> None:
    # near miss: the same paste with a 10x jump: against 2 values an anecdote (evidence.too_few)
    (f,) = _finish([5.6332, 5.3049, 53.0, 5.7517, 5.6231, 5.0968, 5.8938])
    assert f.severity == "info" and TOO_FEW in f.title
    assert f.evidence["evidence_records"] == 2 and f.evidence["evidence_min_records"] == 3


def test_one_value_is_no_baseline() -> None:
    # near miss: a jump on the second line has a single value before it: not judged
    assert _finish([1.3982, 3.3023, 3.1, 3.2]) == []


def test_trainer_state_blow_up_at_fifth_row_never_recovers() -> None:
    # trainproof gallery fp16_nan (every 5 steps): 1.45 1.40 1.09 1.24 3.10 8.78 15.1 ... 7.2
    values = [1.4475, 1.3994, 1.0919, 1.2424, 3.1048, 8.7795, 15.0977, 11.2648, 12.5833]
    values += [9.0 - 0.04 * i for i in range(40)]
    (f,) = _finish(values, every=5, start=5)
    assert f.severity == "error" and f.steps[0] == 25 and f.evidence["unrecovered"] == 1


def test_healthy_twin_start_is_clean() -> None:
    # near miss: trainproof gallery healthy, same model and logging: noisy but no jump
    values = [1.5248, 1.5833, 1.1671, 1.235, 1.2683, 1.1787, 1.2273, 1.168, 1.0654, 1.1154]
    values += [1.1275, 1.2917, 1.1913, 1.106, 1.1338, 1.2063, 1.0771, 1.0578, 1.1841, 1.1581]
    assert _finish(values, every=5, start=5) == []
    # a fast early fall (a loss starting at ln(vocab)) is never a rise
    assert _finish([10.83, 9.1, 8.2, 7.9, 7.1, 6.64, 6.9, 6.5]) == []


def test_paired_grad_norms_with_zeros_are_not_spikes() -> None:
    # TRL GRPO: each grad norm logged twice, zeros where all completions got the same reward
    norms = [0.0, 0.0, 0.0631, 0.0632, 0.0181, 0.0182, 0.0884, 0.0883, 0.2067, 0.2072]
    norms += [0.0805, 0.0795, 0.0, 0.0, 0.1651, 0.165, 0.0, 0.0, 0.0846, 0.0845]
    assert _finish(norms, metric="grad_norm") == []


def test_sustained_grad_burst_warns_even_when_it_recovers() -> None:
    # bigscience tr8-104B-wide: 231817 89608 -> 1.49M 3.27M 1.84M 1.37M, back to 20610 later
    norms = [231817.368, 89608.482, 1490753.218, 3273877.676, 1839649.51, 1369067.435, 20609.78]
    (f,) = _finish(norms, metric="grad_norm")
    assert f.id == "grad-spike" and f.severity == "warning"
    assert f.evidence["episodes"] == 1 and f.evidence["unrecovered"] == 0
    # 2 values before it, but 4 records high: a level shift is its own evidence, not a note
    assert TOO_FEW not in f.title
    # a 2-record loss jump after 2 values: an anecdote, a note; after 3 values, a warning
    (f,) = _finish([2.0, 2.1, 9.0, 9.5, 2.1, 2.0, 2.05])
    assert f.severity == "info" and TOO_FEW in f.title
    (f,) = _finish([2.05, 2.0, 2.1, 9.0, 9.5, 2.1, 2.0, 2.05])
    assert f.severity == "warning" and TOO_FEW not in f.title


def test_early_state_round_trip() -> None:
    values = [2.775923, 2.772822, 2.768131, 7.343709, 8.715872, 2.7, 2.71]
    recs = _records(values)
    a = SpikeDetector("loss")
    for r in recs[:2]:
        a.update(r)
    b = SpikeDetector("loss")
    b.load_state_dict(a.state_dict())
    for r in recs[2:]:
        a.update(r)
        b.update(r)
    assert a.state_dict() == b.state_dict()
    assert [f.to_json() for f in a.finish()] == [f.to_json() for f in b.finish()]


@pytest.mark.parametrize("metric", ["loss", "grad_norm"])
def test_limit_is_the_threshold_is_spike_applies(metric: str) -> None:
    """The guard's sync-free path compares on the device against ``limit()``; the live and
    replay paths call ``is_spike``. The two forms of the same three rules must agree."""
    rng = random.Random(0)
    for base in (0.001, 0.5, 3.0, 40.0):
        det = SpikeDetector(metric, warmup=20, delay=0)  # type: ignore[arg-type]
        for step in range(60):
            det.update(StepRecord(step=step, **{metric: base * (1 + 0.05 * rng.random())}))
        lim = det.limit()
        assert math.isfinite(lim)
        # is_spike on the same fresh statistics limit() computes
        assert det.base.refreshed() == det.base.fresh()
        for eps in (1e-6, 1e-3, 0.1):
            assert det.is_spike(lim * (1 + eps))[0], (base, eps)
            assert not det.is_spike(lim * (1 - eps))[0], (base, eps)
    warming = SpikeDetector(metric)  # type: ignore[arg-type]
    assert warming.limit() == math.inf


def _loss_spike_severity(tmp_path, losses: list[float]) -> str | None:
    from stabletrain.doctor import diagnose

    log = tmp_path / "log.txt"
    log.write_text("".join(f"{{'loss': {v}, 'learning_rate': 0.0002, 'epoch': 0.09}}\n"
                           for v in losses))  # fmt: skip
    found = [f for f in diagnose(log).findings if f.id == "loss-spike"]
    return found[0].severity if found else None


def test_a_jump_by_orders_of_magnitude_needs_no_spread(tmp_path) -> None:
    """gemma_pytorch#24 (HF fp16): the third logged loss is 153318.95 after 5.63 and 5.30. Two
    earlier values give no spread, but a 27,000x jump is no noise: a warning, not a note. A
    1.5-10x jump against two values stays a note; a near-zero loss swinging 1e-4 -> 0.05 too."""
    nan = float("nan")
    tail = [5.75, 5.62, nan, 5.10, nan, 5.89, 6.13, 5.91, 5.41, 5.24, nan, nan, 5.46]
    assert _loss_spike_severity(tmp_path, [5.63, 5.30, 153318.95, *tail]) in {"warning", "error"}
    assert _loss_spike_severity(tmp_path, [5.63, 5.30, 53.0, *tail]) in {"info", None}
    rl = [1e-4, 2e-4, 0.05, 1e-4, 3e-4, 2e-4, 1e-4, 2e-4, 1e-4, 3e-4, 2e-4, 1e-4]
    assert _loss_spike_severity(tmp_path, rl) in {"info", None}


def test_a_grad_spike_on_the_last_record_is_undecided_not_unrecovered() -> None:
    """Two recovered grad spikes and a third on the log's final record: nothing came after the
    third to recover on, so it is not counted as unrecovered and does not turn the isolated,
    recovered spikes into a warning (which would confirm an LR cut on no evidence)."""
    values = _noisy(100)
    values[40] = values[70] = values[99] = 20.0
    det = SpikeDetector("grad_norm")
    assert _feed(det, values, "grad_norm") == [40, 70, 99]
    (f,) = det.finish()
    assert f.evidence["unrecovered"] == 0 and f.evidence["recovery_steps"] == [1, 1, None]
    assert f.severity == "info"
    assert "the log ends at it" in f.explanation
    # the same spike one record before the end recovers on the last one
    values[99], values[98] = values[98], 20.0
    det = SpikeDetector("grad_norm")
    _feed(det, values, "grad_norm")
    (f,) = det.finish()
    assert f.evidence["unrecovered"] == 0 and f.severity == "warning"  # three decided spikes
    # a grad-norm jump no noise explains (1000x) on the last record keeps its weight: a pasted
    # log ends at the spike it reports (unsloth#5207: 7.79 then 11140)
    values[98], values[99] = values[99], 2000.0
    det = SpikeDetector("grad_norm")
    _feed(det, values, "grad_norm")
    (f,) = det.finish()
    assert f.evidence["unrecovered"] == 1 and f.severity == "warning"
    # a loss spike on the last record keeps its weight: logs end where runs blow up
    det = SpikeDetector("loss")
    _feed(det, [*_noisy(99), 20.0])
    (f,) = det.finish()
    assert f.evidence["unrecovered"] == 1 and f.severity == "error"
