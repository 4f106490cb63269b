from __future__ import annotations

import random

from stabletrain.records import Finding
from stabletrain.report import chain


def _f(fid: str, sev: str = "warning", steps: list[int] | None = None, src: str = "log") -> Finding:
    return Finding(fid, sev, fid, steps=steps or [], source=src)  # type: ignore[arg-type]


def test_amp_chain_is_ordered_cause_to_effect_whatever_the_input_order() -> None:
    # seed 004: init scale 2**16 → scale collapse → inf grads → loss stuck at chance
    fs = [
        _f("duplicate-logging", "warning", [1]),
        _f("chance-level", "error", [1]),
        _f("nonfinite-grad", "error", [1, 2, 3]),
        _f("loss-scale-collapse", "warning", [1]),
        _f("loss-scale-init-high", "warning", src="config"),
    ]
    for seed in range(5):
        random.Random(seed).shuffle(fs)
        ordered = [f.id for f in chain.order([_f(f.id, f.severity, f.steps, f.source) for f in fs])]
        assert ordered == [
            "loss-scale-init-high",
            "loss-scale-collapse",
            "nonfinite-grad",
            "chance-level",
            "duplicate-logging",
        ]


def test_grad_spike_one_step_before_loss_spike_is_its_cause() -> None:
    loss, grad = _f("loss-spike", steps=[101]), _f("grad-spike", steps=[100])
    out = chain.order([loss, grad])
    assert [f.id for f in out] == ["grad-spike", "loss-spike"]
    assert loss.related == ["grad-spike"] and grad.related == ["loss-spike"]


def test_grad_spike_long_before_loss_spike_is_not_linked() -> None:
    loss, grad = _f("loss-spike", steps=[500]), _f("grad-spike", steps=[100])
    chain.order([loss, grad])
    assert loss.related == [] and grad.related == []


def test_effect_before_cause_in_time_is_not_linked() -> None:
    nan_loss, overflow = _f("nonfinite-loss", steps=[5]), _f("fp16-overflow", steps=[50])
    chain.order([nan_loss, overflow])
    assert nan_loss.related == []


def test_errors_chain_first() -> None:
    out = chain.order([_f("slow-steps", "warning", [1]), _f("lr-zero", "error", [9])])
    assert [f.id for f in out] == ["lr-zero", "slow-steps"]
