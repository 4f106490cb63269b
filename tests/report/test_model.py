from __future__ import annotations

import json
import math

from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord
from stabletrain.report.model import Report


def _report(*findings: Finding) -> Report:
    recs = [StepRecord(step=i, loss=2.0 - i * 0.1) for i in range(5)]
    recs[3].loss = float("nan")
    return Report(findings=list(findings), facts=ConfigFacts(), source="run", records=recs)


def test_worst_severity_and_fail_threshold() -> None:
    assert _report().worst_severity is None
    r = _report(Finding("a", "info", "x"), Finding("b", "warning", "y"))
    assert r.worst_severity == "warning"
    assert r.fails("warning") and r.fails("info") and not r.fails("error")
    assert not r.fails(None)
    assert [f.id for f in r.problems] == ["b"]


def test_to_json_is_strict_and_has_the_schema() -> None:
    f = Finding(
        "nonfinite-grad",
        "error",
        "inf grad norm",
        steps=[3],
        evidence={"max_grad_norm": float("inf"), "ratio": 2.5},
        fixes=[Fix("clip", {"max_grad_norm": 1.0})],
    )
    data = json.loads(json.dumps(_report(f).to_json(), allow_nan=False))
    (fj,) = data["findings"]
    assert {"id", "severity", "title", "steps", "epochs", "evidence", "explanation", "fix"} <= set(
        fj
    )
    assert fj["evidence"]["max_grad_norm"] == "inf"
    assert fj["fix"] == [{"description": "clip", "changes": {"max_grad_norm": 1.0}, "code": None}]
    assert fj["watch"]
    s = data["summary"]
    assert s["records"] == 5 and s["first_step"] == 0 and s["last_step"] == 4
    assert s["loss"]["nonfinite"] == 1 and math.isclose(s["loss"]["min"], 1.6)
    assert s["counts"] == {"error": 1, "warning": 0, "info": 0}
