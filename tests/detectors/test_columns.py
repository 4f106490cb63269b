from __future__ import annotations

import math
from dataclasses import fields

import numpy as np
import pytest

from stabletrain.detectors.columns import _COLUMN, Batch, Unsupported, as_batch, take
from stabletrain.records import StepRecord


def test_every_field_but_metrics_has_a_column() -> None:
    assert set(_COLUMN) == {f.name for f in fields(StepRecord)} - {"metrics"}
    r = StepRecord(step=3, kind="eval", loss=1.5, rank=2)
    b = Batch([r])
    assert all(b.objects(name) == [getattr(r, name)] for name in _COLUMN)


def test_floats_and_none_masks() -> None:
    recs = [
        StepRecord(step=0, loss=1.5, lr=None),
        StepRecord(step=1, loss=math.nan, lr=2),
        StepRecord(step=2, loss=None, lr=True),
    ]
    b = Batch(recs)
    loss = b.floats("loss")
    assert loss[0] == 1.5 and np.isnan(loss[1:]).all()
    assert b.none("loss").tolist() == [False, False, True]  # NaN is a value, None is not
    assert b.floats("lr")[1:].tolist() == [2.0, 1.0]
    assert b.none("grad_norm").all() and b.none("step") is None
    assert b.finite("loss").tolist() == [0]
    with pytest.raises(ValueError):
        loss[0] = 0.0  # shared by every detector: read-only


def test_values_the_bulk_path_cannot_hold_exactly() -> None:
    with pytest.raises(Unsupported):
        Batch([StepRecord(step=0, lr="3e-4")]).floats("lr")  # type: ignore[arg-type]
    with pytest.raises(Unsupported):
        Batch([StepRecord(step=0, samples=2**60 + 1)]).floats("samples")
    with pytest.raises(Unsupported):
        Batch([StepRecord(step=0.5)]).steps  # type: ignore[arg-type]  # noqa: B018
    with pytest.raises(Unsupported):
        Batch([StepRecord(step=0, epoch=math.nan, loss=1.0)]).epoch_keys()
    b = Batch([StepRecord(step=0, action="skip_spike"), StepRecord(step=1)])
    assert b.none("action").tolist() == [False, True]  # a mask without numbers


def test_train_mask_and_epoch_keys() -> None:
    recs = [
        StepRecord(step=0, epoch=1.9),
        StepRecord(step=1, kind="eval", epoch=-0.5),
        StepRecord(step=2, kind=None, epoch=None),  # type: ignore[arg-type]
    ]
    b = Batch(recs)
    assert b.train.tolist() == [True, False, False]
    assert b.epoch_keys()[:2].tolist() == [int(1.9), int(-0.5)]


def test_take_and_running_max() -> None:
    objs = [10, 11, 12, 13, 14]
    assert take(objs, np.array([1, 2, 3])) == [11, 12, 13]
    assert take(objs, np.array([0, 4])) == [10, 14]
    assert take(objs, np.array([], dtype=np.int64)) == []
    recs = [StepRecord(step=i, lr=v) for i, v in enumerate([None, 2, math.nan, 2.0, 1.0, math.inf])]
    b = Batch(recs)
    got = b.running_max("lr", np.arange(5), 0.0)
    assert got == 2 and type(got) is int  # the first of equal maxima, as the loop keeps it
    assert b.running_max("lr", np.arange(6), 0.0) == math.inf
    assert b.running_max("lr", np.array([0, 2]), 0.5) == 0.5


def test_as_batch_shares_columns_of_the_same_records() -> None:
    recs = [StepRecord(step=i, loss=1.0) for i in range(3)]
    b = Batch(recs)
    assert as_batch(b) is b
    assert as_batch(list(recs), like=b) is b
    assert as_batch([StepRecord(step=i, loss=1.0) for i in range(3)], like=b) is not b
    assert as_batch(iter(recs)).records == recs
