from __future__ import annotations

import json
import math

import stabletrain
from stabletrain.records import ConfigFacts, Finding, StepRecord


def test_public_all_is_sorted_and_importable() -> None:
    assert stabletrain.__all__ == sorted(stabletrain.__all__)
    for name in ("ConfigFacts", "Finding", "StepRecord", "StableTrainError"):
        assert getattr(stabletrain, name) is not None


def test_step_record_json_round_trip_keeps_nonfinite() -> None:
    rec = StepRecord(step=7, loss=float("nan"), grad_norm=float("inf"), lr=1e-3, metrics={"x": 2.0})
    line = json.dumps(rec.to_json(), allow_nan=False)  # strict JSON: NaN must be encoded
    back = StepRecord.from_json(json.loads(line))
    assert back.step == 7 and back.lr == 1e-3 and back.metrics == {"x": 2.0}
    assert back.loss is not None and math.isnan(back.loss)
    assert back.grad_norm == float("inf")


def test_config_facts_remember_user_key() -> None:
    facts = ConfigFacts(source="cfg.yaml")
    facts.set("max_grad_norm", 4.0, key="training.gradient_clip_value")
    assert facts.get("max_grad_norm") == 4.0
    assert facts.key("max_grad_norm") == "training.gradient_clip_value"
    assert facts.key("lr") == "lr" and "lr" not in facts
    assert facts.facts["max_grad_norm"].where() == "cfg.yaml:training.gradient_clip_value"


def test_finding_json_encodes_nonfinite_evidence() -> None:
    f = Finding(id="nonfinite-grad", severity="error", title="t", evidence={"norm": float("inf")})
    assert json.dumps(f.to_json(), allow_nan=False)


def test_config_facts_number_is_a_float_never_a_bool() -> None:
    from stabletrain.records import ConfigFacts

    facts = ConfigFacts()
    facts.set("lr", 3e-4)
    facts.set("max_grad_norm", 0)
    facts.set("fp16", True)
    facts.set("schedule", "cosine")
    assert facts.number("lr") == 3e-4 and facts.number("max_grad_norm") == 0.0
    assert facts.number("max_grad_norm", positive=True) is None  # 0 disables clipping
    assert facts.number("fp16") is None and facts.number("schedule") is None
    assert facts.number("missing") is None
    facts.set("lr", float("inf"))
    assert facts.number("lr") is None
