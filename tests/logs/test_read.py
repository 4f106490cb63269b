"""``read_run_columns`` and the run-log reader's column-wise build; ``gc_paused``.

The run-log reader builds records from columns when every line holds only StepRecord fields, and
hands those columns to the doctor; both must be exactly what the one-record-per-line build gives.
"""

from __future__ import annotations

import gc
import json
import math
from pathlib import Path

from stabletrain.detectors.columns import Batch
from stabletrain.logs.read import gc_paused, read_run, read_run_columns
from stabletrain.logs.readers import runlog
from stabletrain.logs.readers.base import clean_records
from stabletrain.records import StepRecord

FIELDS = [
    "step",
    "kind",
    "epoch",
    "loss",
    "grad_norm",
    "clip_coef",
    "lr",
    "loss_scale",
    "skipped",
    "action",
    "accuracy",
    "eval_loss",
    "eval_accuracy",
    "samples",
    "tokens",
    "wall_time",
    "step_time",
    "rank",
]


def _write(d: Path, steps: list[dict], evals: list[dict] | None = None) -> Path:
    d.mkdir(parents=True)
    (d / "meta.json").write_text(json.dumps({"schema": "stabletrain.runlog", "version": 1}))
    (d / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in steps))
    (d / "evals.jsonl").write_text("".join(json.dumps(r) + "\n" for r in evals or []))
    return d


def _line_by_line(rows: list[dict]) -> list[StepRecord]:
    return [StepRecord(**r) for r in rows]


def _assert_columns(data_raw: list[StepRecord], columns: dict) -> None:
    assert sorted(columns) == sorted(FIELDS)
    for f in FIELDS:
        values = [getattr(r, f) for r in data_raw]
        assert len(columns[f]) == len(values)
        assert all(a is b for a, b in zip(columns[f], values, strict=True)), f


def test_uniform_lines_give_the_line_by_line_records_and_their_columns(tmp_path: Path) -> None:
    steps = [
        {"step": s, "epoch": s // 10, "loss": 2.0 - s / 100, "grad_norm": 1.0 + s, "lr": 3e-4}
        for s in range(40)
    ]
    evals = [
        {"step": 19, "kind": "eval", "eval_loss": 1.5},
        {"step": 39, "kind": "eval", "eval_loss": 1.2},
    ]
    data, columns = read_run_columns(_write(tmp_path / "run", steps, evals))
    assert data.raw == _line_by_line(steps + evals)
    assert columns is not None
    _assert_columns(data.raw, columns)
    assert read_run(tmp_path / "run").records == data.records


def test_lines_with_different_fields_are_built_the_same(tmp_path: Path) -> None:
    """A guard-written log: skipped steps carry "skipped"/"action", others do not."""
    steps = [{"step": s, "loss": 1.0, "grad_norm": 2.0} for s in range(20)]
    steps[7] = {"step": 7, "loss": 1.0, "skipped": True, "action": "skip_spike"}
    steps[9]["kind"] = "train"
    data, columns = read_run_columns(_write(tmp_path / "run", steps))
    assert data.raw == _line_by_line(steps)
    assert columns is not None
    _assert_columns(data.raw, columns)


def test_string_values_and_foreign_keys_give_no_columns(tmp_path: Path) -> None:
    nan = [{"step": s, "loss": "nan" if s == 3 else 1.0} for s in range(10)]
    data, columns = read_run_columns(_write(tmp_path / "a", nan))
    assert columns is None and math.isnan(data.raw[3].loss or 0.0)
    foreign = [{"step": s, "loss": 1.0, "tokens_per_s": 5.0} for s in range(10)]
    data, columns = read_run_columns(_write(tmp_path / "b", foreign))
    assert columns is None and data.raw[0].metrics == {"tokens_per_s": 5.0}


def test_cleaning_is_skipped_only_when_there_is_nothing_to_clean(tmp_path: Path) -> None:
    in_order = [{"step": s, "loss": 1.0} for s in range(10)]
    data, columns = read_run_columns(_write(tmp_path / "a", in_order))
    assert data.records == clean_records(data.raw, []) and data.records is not data.raw
    rewound = in_order[:6] + [{"step": s, "loss": 2.0} for s in range(3, 10)]
    data, columns = read_run_columns(_write(tmp_path / "b", rewound))
    assert columns is not None and [r.step for r in data.records] == list(range(10))
    assert data.records[3].loss == 2.0 and "replaced by later records" in data.notes[0]


def test_records_from_rows_takes_the_column_build_only_for_plain_rows() -> None:
    rows = [{"step": 1, "loss": 2.0}, {"step": 2}, {"loss": 3.0}]  # the last has no step
    notes: list[str] = []
    out = runlog.records_from_rows(rows, Path("steps.jsonl"), notes, strings=False)
    assert out == [StepRecord(step=1, loss=2.0), StepRecord(step=2)]
    assert notes == ["steps.jsonl: 1 line(s) without a usable 'step' skipped"]


def test_other_formats_have_no_columns(tmp_path: Path) -> None:
    p = tmp_path / "log.csv"
    p.write_text("step,loss\n1,2.0\n2,1.5\n")
    data, columns = read_run_columns(p)
    assert columns is None and len(data.records) == 2


def test_batch_uses_the_readers_columns(tmp_path: Path) -> None:
    steps = [{"step": s, "loss": 1.0 / (s + 1)} for s in range(5)]
    data, columns = read_run_columns(_write(tmp_path / "run", steps))
    batch = Batch(data.raw, columns)
    assert batch.objects("loss") is columns["loss"]
    assert batch.floats("loss").tolist() == [1.0 / (s + 1) for s in range(5)]


def test_gc_paused_restores_the_collector_and_promotes_what_it_made() -> None:
    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        made = [{"i": [i]} for i in range(1000)]
    assert gc.isenabled()
    young = {id(o) for o in gc.get_objects(generation=0)}
    assert not any(id(d) in young for d in made)  # moved to the oldest generation
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # left as it was
    finally:
        gc.enable()


def test_gc_paused_leaves_frozen_objects_frozen() -> None:
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            _ = [[i] for i in range(100)]
        assert gc.get_freeze_count() == frozen
    finally:
        gc.unfreeze()


_MEGATRON = (
    " iteration      100/  1000 | consumed samples:  3200 | lm loss: 2.512E+00 | loss scale: "
    "4096.0 | grad norm: 1.234 | number of skipped iterations:   0 |\n"
)


def test_a_folder_with_one_pasted_log_and_its_notes_reads_the_log(tmp_path: Path) -> None:
    """How logs travel in bug reports: the log plus a SOURCE.txt / README saying where from."""
    (tmp_path / "SOURCE.txt").write_text("https://github.com/example/issue/1\n")
    (tmp_path / "README.md").write_text("# notes\n")
    (tmp_path / "train.log").write_text(_MEGATRON + _MEGATRON.replace("100/", "110/"))
    data = read_run(tmp_path)
    assert [r.step for r in data.records] == [100, 110]
    assert data.records[0].loss == 2.512 and data.records[0].loss_scale == 4096.0


def test_a_folder_with_several_logs_names_them(tmp_path: Path) -> None:
    import pytest

    from stabletrain.errors import LogReadError

    for name in ("a_trainer_state.json", "b_trainer_state.json"):
        (tmp_path / name).write_text('{"log_history": []}')
    with pytest.raises(LogReadError, match=r"2 log files \(a_trainer_state.json, b_trainer"):
        read_run(tmp_path)


def test_a_folder_whose_only_log_is_pasted_in_markdown_reads_it(tmp_path: Path) -> None:
    """Notes with the log pasted in (FT.md beside SOURCE.txt) are read when nothing else is a log;
    beside a real log file the Markdown is only notes."""
    (tmp_path / "SOURCE.txt").write_text("https://github.com/example/issue/1\n")
    (tmp_path / "FT.md").write_text("## run\n```\n" + _MEGATRON + "```\n")
    assert [r.step for r in read_run(tmp_path).records] == [100]
    (tmp_path / "train.log").write_text(_MEGATRON.replace("100/", "110/"))
    assert [r.step for r in read_run(tmp_path).records] == [110]
