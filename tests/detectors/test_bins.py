from __future__ import annotations

import json

from stabletrain.detectors.bins import Bins, LogHistogram


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
