from __future__ import annotations

import json

from stabletrain.detectors.bins import Bins, LogHistogram
from stabletrain.detectors.fixes import make_fix, nice, precision_value, user_key
from stabletrain.records import ConfigFacts


def test_histogram_quantiles_within_two_percent() -> None:
    h = LogHistogram()
    for i in range(1, 1001):
        h.add(float(i))
    assert abs(h.quantile(0.5) / 500.5 - 1) < 0.02
    assert abs(h.quantile(0.9) / 900.1 - 1) < 0.02
    assert abs(h.fraction_above(750.0) - 0.25) < 0.02
    h.add(float("nan"))
    assert h.n == 1000


def test_step_bins_coarsen_and_keep_totals() -> None:
    b = Bins(max_bins=8, block=4)
    for s in range(1000):
        b.add(s, None, 1.0)
    assert len(b.bins) <= 8 and sum(x.count for x in b.ordered()) == 1000
    c = Bins()
    c.load_state_dict(json.loads(json.dumps(b.state_dict())))
    assert [x.state() for x in c.ordered()] == [x.state() for x in b.ordered()]


def test_fix_uses_user_keys_and_format_defaults() -> None:
    f = ConfigFacts(format="deepspeed")
    f.set("lr", 1e-3, key="optimizer.params.lr")
    fix = make_fix(f, "x", lr=5e-4, max_grad_norm=1.0)
    assert fix.changes == {"optimizer.params.lr": 5e-4, "gradient_clipping": 1.0}
    assert user_key(None, "max_grad_norm") == "max_grad_norm"
    f.set("precision", "fp16", key="fp16.enabled")
    assert precision_value(f, "bf16") is False
    g = ConfigFacts(format="stabletrain")
    g.set("precision", "fp16", key="train.precision")
    assert precision_value(g, "bf16") == "bf16"


def test_nice_rounding() -> None:
    assert nice(3.47) == 3.5 and nice(2e-5 * 0.5) == 1e-5 and nice(5e-4 * 0.6) == 3e-4
