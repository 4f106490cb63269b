from __future__ import annotations

import json
import math
from pathlib import Path

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


def test_config_facts_number_of_an_integer_beyond_float_range_is_none() -> None:
    """JSON integers have no bound: a fact of 10**400 is not a number the detectors can use (it
    raised OverflowError from math.isfinite, bench/fuzz.py --seed 1)."""
    facts = ConfigFacts()
    facts.set("max_steps", 10**400)
    assert facts.number("max_steps") is None and facts.number("max_steps", positive=True) is None
    facts.set("max_steps", 10**20)
    assert facts.number("max_steps", positive=True) == 1e20


def test_doctor_reads_a_log_whose_max_steps_is_beyond_float_range(tmp_path: Path) -> None:
    from stabletrain.cli import main

    huge = "9" * 400
    lines = [
        json.dumps({"loss": 1.4 - 0.01 * i, "global_step/max_steps": f"{i + 1}/{huge}"})
        for i in range(30)
    ]
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(lines) + "\n")
    assert main(["doctor", str(log), "--format", "json"]) in (0, 1)
