"""LossEnds (detectors/lossends.py): both ends of a scripted run, fed record by record and in
bulk to the same state, with hand-computed medians."""

from __future__ import annotations

import math

from stabletrain.detectors.base import feed
from stabletrain.detectors.lossends import KEEP, LossEnds, classes
from stabletrain.records import ConfigFacts, StepRecord


def test_ends_medians_non_finite_and_eval_by_both_paths() -> None:
    recs = [StepRecord(step=i, loss=float(i)) for i in range(50)]
    recs.insert(10, StepRecord(step=10, kind="eval", eval_loss=0.5))
    recs.append(StepRecord(step=50, loss=math.nan))
    one, bulk = LossEnds(), LossEnds()
    for r in recs:
        one.update(r)
    feed(bulk, recs)
    assert one.state_dict() == bulk.state_dict()
    assert one.medians() == (9.5, 39.5)  # 0..19 and 30..49
    assert (one.n_loss, one.n_nonfinite, one.first_bad, one.ends_nonfinite) == (50, 1, 50, True)
    assert one.eval_loss == 0.5 and one.last_step == 50 and len(one.first) == KEEP
    again = LossEnds()
    again.load_state_dict(one.state_dict())
    assert again.state_dict() == one.state_dict()
    assert LossEnds().medians() is None


def test_classes_prefers_a_class_count_then_a_vocabulary() -> None:
    facts = ConfigFacts()
    assert classes(facts) is None
    facts.set("vocab_size", 95)
    assert classes(facts) == (95, True)
    facts.set("num_classes", 10)
    assert classes(facts) == (10, False)
