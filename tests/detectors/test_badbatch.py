"""Bad batch vs instability (issue 13), on real runs of the reference trainer, guard off.

- the demo's unstable-digits config feeds a NaN batch at step 30 into a run whose loss and grad
  norm are falling: the cause is the data (``bad-batch``), not the LR;
- SGD at lr 2.0 without clipping spikes for many steps and then overflows: an instability, with no
  ``bad-batch`` and the LR fix kept.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from stabletrain.detectors.nonfinite import NonFiniteDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run


@pytest.fixture(scope="module")
def demo_off(tmp_path_factory: pytest.TempPathFactory, reference_run: Callable[..., Path]) -> Path:
    """The demo's guard-off run (configs/unstable-digits.yaml), cut after the first NaN batch."""
    run = tmp_path_factory.mktemp("unstable") / "off"
    reference_run("unstable-digits.yaml", run, "guard.preset=off", "train.max_steps=33")
    return run


def test_demo_guard_off_cause_is_the_injected_bad_batch(demo_off: Path) -> None:
    report = diagnose(demo_off)
    ids = [f.id for f in report.findings]
    assert "bad-batch" in ids, ids
    bad = next(f for f in report.findings if f.id == "bad-batch")
    assert bad.steps == [30]  # data.corrupt.nan_batches: [30, 75]
    assert bad.severity == "error"  # the applied update poisoned the weights
    # the cause comes first in its chain, before the NaN it caused
    assert ids.index("bad-batch") < ids.index("nonfinite-loss")
    nan = next(f for f in report.findings if f.id == "nonfinite-loss")
    assert "bad-batch" in nan.related
    # the data cause's fixes: check the data, let the guard skip; never the LR
    for f in (bad, nan):
        keys = {k for fix in f.fixes for k in fix.changes} | {
            k for fix in f.fixes for k in fix.relative
        }
        assert not keys & {"optim.lr", "lr", "train.max_grad_norm"}, f.fixes
    assert any(fix.changes.get("guard.preset") == "default" for fix in bad.fixes)
    assert "30" in bad.fixes[0].description


def test_guarded_run_skipped_bad_batches_are_named(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    run = tmp_path / "guarded"
    reference_run("unstable-digits.yaml", run, "train.max_steps=80")
    report = diagnose(run)
    bad = next(f for f in report.findings if f.id == "bad-batch")
    assert bad.steps == [30, 75]
    assert bad.severity == "warning"  # skipped, the run went on
    assert not any("guard.preset" in fix.changes for fix in bad.fixes)  # already on
    # the 1e6-scaled batch at step 50 (skipped as a spike): one step, no lead-up — data too
    spike = next(f for f in report.findings if f.id == "loss-spike")
    assert spike.evidence["bad_batch_steps"] == [50]
    assert not any("lr" in fix.relative or fix.changes for fix in spike.fixes)


def test_one_scaled_batch_without_guard_is_a_bad_batch_spike(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    """No NaN: a batch blown up by 1e6 is applied (clipped at 1.0) and the run goes on."""
    run = tmp_path / "scaled"
    reference_run(
        "unstable-digits.yaml", run, "guard.preset=off", "data.corrupt.nan_batches=[]",
        "data.corrupt.scale_batches=[50]", "optim.lr=1e-3", "train.max_steps=70",
    )  # fmt: skip
    report = diagnose(run)
    spike = next(f for f in report.findings if f.id == "loss-spike")
    assert spike.evidence["bad_batch_steps"] == [50], spike.explanation
    assert "bad batch" in spike.explanation
    assert not any("lr" in fix.relative or "optim.lr" in fix.changes for fix in spike.fixes)
    assert any(fix.changes.get("guard.preset") == "default" for fix in spike.fixes)


def test_nan_after_a_lead_up_stays_an_instability(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    run = tmp_path / "sgd"
    reference_run(
        "digits-cnn.yaml", run, "guard.preset=off", "optim.name=sgd", "optim.lr=2.0",
        "train.max_grad_norm=null", "train.epochs=3",
    )  # fmt: skip
    report = diagnose(run)
    ids = [f.id for f in report.findings]
    assert "nonfinite-loss" in ids or "nonfinite-grad" in ids, ids
    assert "bad-batch" not in ids
    nan = next(f for f in report.findings if f.id in ("nonfinite-grad", "nonfinite-loss"))
    assert "spiking" in nan.explanation or "rose" in nan.explanation
    assert any("lr" in fix.relative or "optim.lr" in fix.changes for fix in nan.fixes)


def test_onset_state_round_trips_mid_run(demo_off: Path) -> None:
    records = list(read_run(demo_off).records)
    whole = NonFiniteDetector()
    for r in records:
        whole.update(r)
    first = NonFiniteDetector()
    for r in records[:25]:
        first.update(r)
    second = NonFiniteDetector()
    second.load_state_dict(first.state_dict())
    for r in records[25:]:
        second.update(r)
    assert second.state_dict() == whole.state_dict()
    assert [f.to_json() for f in second.finish()] == [f.to_json() for f in whole.finish()]
