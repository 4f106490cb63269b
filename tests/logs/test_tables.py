"""Tables read into columns (CSV, JSONL exports) and the dispatcher's honesty.

- A table becomes the same records as splitting each row with ``fields.records_from_row`` and
  cleaning them with ``base.clean_records`` (the per-row path the columns replaced), and the
  detectors judge the columns exactly as they judge those records.
- Exports users have: W&B chart CSVs, TensorBoard's "Download CSV", ultralytics ``results.csv``
  and detectron2 ``metrics.json`` (real files in tests/fixtures/logs, see their SOURCE.txt).
- Honesty: no records, or no column of a known role, is an error naming the file (exit 2), never
  a clean verdict; FIFOs, devices and garbage event files are one line, exit 2.
"""

from __future__ import annotations

import csv
import json
import math
import os
import random
from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.detectors.columns import Batch, TableRecords
from stabletrain.detectors.registry import replay
from stabletrain.doctor import diagnose
from stabletrain.errors import LogReadError
from stabletrain.logs.read import read_run
from stabletrain.logs.readers.base import clean_records
from stabletrain.logs.readers.fields import build_lookup, records_from_row, step_of

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _random_csv(path: Path, seed: int, n: int = 300) -> None:
    """A Lightning-like sparse CSV: train rows, eval rows, rewinds, NaN/inf, empty cells."""
    rng = random.Random(seed)
    header = ["step", "epoch", "train_loss", "grad_norm", "lr-AdamW", "val_loss", "val_acc", "f1"]
    rows, step = [], 0
    for _ in range(n):
        step += rng.choice([1, 1, 1, 2, 0, -5])  # repeats and rewinds, as resumed runs log
        step = max(step, 0)
        cells = [str(step), str(step // 50)]
        if rng.random() < 0.8:
            loss = rng.choice([f"{rng.uniform(0.1, 3):.4f}"] * 8 + ["nan", "inf", ""])
            cells += [loss, f"{rng.uniform(0.5, 5):.3f}", rng.choice(["0.001", ""]), "", "", ""]
        else:
            cells += ["", "", "", f"{rng.uniform(0.5, 2):.3f}", rng.choice(["0.5", ""]), "0.3"]
        rows.append(cells)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _per_row(path: Path) -> list:
    """The records the per-row path builds from a CSV (the reference for the columns)."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    header = rows[0]
    lookup = build_lookup(header, None)
    raw = []
    for cells in rows[1:]:
        row = dict(zip(header, cells, strict=True))
        tr, ev = records_from_row(row, step_of(row, lookup) or 0, lookup)
        raw += [r for r in (tr, ev) if r is not None]
    return clean_records(raw, [])


@pytest.mark.parametrize("seed", range(6))
def test_columns_give_the_per_row_records(tmp_path: Path, seed: int) -> None:
    f = tmp_path / "metrics.csv"
    _random_csv(f, seed)
    data = read_run(f)
    assert isinstance(data.records, TableRecords)
    got, want = list(data.records), _per_row(f)
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert repr(a) == repr(b)  # repr: NaN == NaN, and 3 vs 3.0 differ
    # the detectors judge the arrays exactly as they judge the records
    as_columns = replay(Batch(data.records), None)
    as_records = replay(want, None)
    assert [f.to_json() for f in as_columns] == [f.to_json() for f in as_records]


def test_a_table_without_a_known_column_is_an_error_naming_the_columns(tmp_path: Path) -> None:
    f = tmp_path / "opt.csv"
    f.write_text("iteration,objective\n" + "".join(f"{i},nan\n" for i in range(50)))
    with pytest.raises(LogReadError, match=r"columns: objective.*--map loss=objective"):
        read_run(f)
    data = read_run(f, mapping={"loss": "objective"})
    assert len(data.train) == 50 and all(math.isnan(r.loss or 0.0) for r in data.train)


def test_no_records_is_an_error_that_says_what_was_tried(tmp_path: Path) -> None:
    f = tmp_path / "empty.csv"
    f.write_text("step,loss\n")
    with pytest.raises(
        LogReadError, match=r"no training records found in .*empty\.csv \(tried: csv"
    ):
        read_run(f)


def test_wandb_chart_export(tmp_path: Path) -> None:
    f = tmp_path / "wandb_export_2024-05-01.csv"
    cols = ["Step"] + [
        f'"{run} - train/loss{band}"'
        for run in ("run-a", "run-b")
        for band in ("", "__MIN", "__MAX")
    ]
    lines = [",".join(cols)]
    for s in range(40):
        a = 2.0 / (s + 1) if s != 30 else float("nan")
        lines.append(",".join([str(s * 10), f"{a},{a * 0.9},{a * 1.1}", f"{a},{a},{a}"]))
    f.write_text("\n".join(lines) + "\n")
    data = read_run(f)
    assert data.dialect == "wandb-export" and data.roles["run-a - train/loss"] == "loss"
    assert data.roles["run-a - train/loss__MIN"] == "skip"
    assert [r.step for r in data.train][:3] == [0, 10, 20] and math.isnan(data.train[30].loss or 0)
    assert any("2 runs" in n and "'run-a'" in n for n in data.notes)
    assert "nonfinite-loss" in {x.id for x in diagnose(f).findings}


@pytest.mark.parametrize(
    ("name", "field"),
    [
        ("run-version_0-tag-train_loss.csv", "loss"),
        ("run-validation-tag-epoch_loss.csv", "eval_loss"),
        ("run-train-tag-epoch_loss.csv", "loss"),
    ],
)
def test_tensorboard_download_csv(tmp_path: Path, name: str, field: str) -> None:
    f = tmp_path / name
    f.write_text(
        "Wall time,Step,Value\n" + "".join(f"{1.7e9 + i},{i},{2.0 / (i + 1)}\n" for i in range(20))
    )
    data = read_run(f)
    assert data.dialect == "tensorboard-csv"
    recs = data.evals if field == "eval_loss" else data.train
    assert len(recs) == 20 and getattr(recs[3], field) == 0.5


def test_tensorboard_csv_of_an_unknown_tag_asks_for_a_mapping(tmp_path: Path) -> None:
    f = tmp_path / "run-a-tag-objective.csv"
    f.write_text("Wall time,Step,Value\n1.7e9,0,1.0\n1.7e9,1,0.5\n")
    with pytest.raises(LogReadError, match=r"--map loss=Value"):
        read_run(f)
    data = read_run(f, mapping={"loss": "Value"})
    assert [r.loss for r in data.train] == [1.0, 0.5] and data.roles["Value"] == "loss"


def test_ultralytics_results_csv() -> None:
    data = read_run(FIXTURES / "ultralytics_gallstone_seg" / "results.csv")
    assert data.dialect == "ultralytics" and len(data.train) == 10 and len(data.evals) == 10
    first = data.train[0]
    assert first.step == 1 and first.epoch == 1.0 and first.lr == 0.000546249
    assert first.loss == pytest.approx(1.49295 + 2.32854 + 2.62821 + 1.20624)
    assert data.evals[0].eval_loss == pytest.approx(1.2426 + 1.63945 + 3.58494 + 1.13346)
    assert data.evals[-1].metrics["val_mAP50(B)"] == 0.94646
    assert any("train/box_loss + train/seg_loss" in n for n in data.notes)


def test_detectron2_metrics_json(tmp_path: Path) -> None:
    src = FIXTURES / "detectron2_maskrcnn" / "metrics.json"
    data = read_run(src.parent)  # the output folder: its metrics.json
    assert data.dialect == "detectron2" and [r.step for r in data.train] == [19, 39, 59, 79, 299]
    assert data.train[0].loss == 2.0359768134658225 and data.train[0].lr == 1.60675e-05
    assert data.train[0].step_time == 18.091251156496583
    # an evaluation line (what DefaultTrainer's EvalHook writes) is an eval record
    f = tmp_path / "metrics.json"
    f.write_text(src.read_text() + json.dumps({"bbox/AP": 41.2, "iteration": 299}) + "\n")
    data = read_run(f)
    assert [(r.step, r.metrics) for r in data.evals] == [(299, {"bbox/AP": 41.2})]


def test_nonfinite_epoch_is_data_not_a_crash(tmp_path: Path) -> None:
    j = tmp_path / "log.jsonl"
    j.write_text(
        "".join(
            json.dumps({"step": i, "loss": 1.0 / (i + 1), "epoch": i / 10}) + "\n"
            for i in range(30)
        ).replace('"epoch": 2.0', '"epoch": Infinity')
    )
    c = tmp_path / "log.csv"
    c.write_text(
        "step,epoch,loss\n" + "".join(f"{i},{'inf' if i == 5 else i},1.0\n" for i in range(30))
    )
    for f in (j, c):
        data = read_run(f)
        assert any(r.epoch == math.inf for r in data.records)
        diagnose(f)  # no exception
        assert main(["doctor", str(f), "--format", "json", "--fail-on", "never"]) == 0


def _exit_2(path: Path, capsys: pytest.CaptureFixture[str], *needles: str) -> None:
    assert main(["doctor", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err, err
    for n in needles:
        assert n in err, err


def test_unreadable_inputs_exit_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "events.out.tfevents.123.host"
    garbage.write_bytes(random.Random(0).randbytes(1000))
    _exit_2(garbage, capsys, garbage.name)
    empty = tmp_path / "e" / "events.out.tfevents.1.host"
    empty.parent.mkdir()
    empty.write_bytes(b"")
    _exit_2(empty, capsys, "no training records")
    _exit_2(empty.parent, capsys, "no training records")
    fifo = tmp_path / "train.log"
    os.mkfifo(fifo)
    _exit_2(fifo, capsys, "FIFO")
    zero = tmp_path / "zero.log"
    zero.symlink_to("/dev/zero")
    _exit_2(zero, capsys, "character device")
    header_only = tmp_path / "h.csv"
    header_only.write_text("step,loss\n")
    _exit_2(header_only, capsys, "no training records found", "h.csv")


def test_partly_corrupt_event_file_says_how_much_was_read(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    w = SummaryWriter(str(tmp_path))
    for s in range(20):
        w.add_scalar("train/loss", 1.0 / (s + 1), s)
    w.close()
    f = next(tmp_path.glob("events.*"))
    blob = f.read_bytes()
    f.write_bytes(blob[: len(blob) // 2] + b"\x07" * 64)
    data = read_run(f)
    assert 0 < len(data.train) < 20
    size = f"{len(blob) // 2 + 64:,}-byte file"
    assert any("record(s) read before it" in n and size in n for n in data.notes), data.notes


def _jsonl(path: Path, seed: int) -> None:
    rng = random.Random(seed)
    lines = []
    for i in range(400):
        row: dict[str, object] = {"global_step": i, "loss": round(rng.uniform(0.1, 3), 4)}
        if rng.random() < 0.5:
            row["grad_norm"] = rng.choice([1.5, 2, "nan", "inf"])
        if i > 150 and i % 50 == 0:  # keys first seen after polars' schema sample
            row = {"global_step": i, "eval_loss": 1.0 / i, "eval_f1": 0.5}
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("seed", range(3))
def test_polars_and_python_paths_read_the_same(
    tmp_path: Path, seed: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stabletrain.logs.readers import table

    c, j = tmp_path / "metrics.csv", tmp_path / "log.jsonl"
    _random_csv(c, seed)
    _jsonl(j, seed)
    python = [list(read_run(f).records) for f in (c, j)]
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    fast = [list(read_run(f).records) for f in (c, j)]
    assert [list(map(repr, r)) for r in fast] == [list(map(repr, r)) for r in python]
    assert any(r.kind == "eval" and r.metrics == {"eval_f1": 0.5} for r in fast[1])


def test_huge_and_infinite_numbers_are_data(tmp_path: Path) -> None:
    big = "9" * 400
    j = tmp_path / "log.jsonl"
    j.write_text("".join(f'{{"step": {i}, "loss": {big if i == 7 else 1.0}}}\n' for i in range(20)))
    c = tmp_path / "log.csv"
    c.write_text("step,loss\n" + "".join(f"{i},{big if i == 7 else 1.0}\n" for i in range(20)))
    state = tmp_path / "trainer_state.json"
    rows = [{"step": i, "loss": 1.0, "epoch": "Infinity" if i == 3 else i / 10} for i in range(20)]
    state.write_text(
        json.dumps({"log_history": rows}).replace('"Infinity"', "Infinity"), encoding="utf-8"
    )
    for f in (j, c):
        assert read_run(f).records[7].loss == math.inf
        assert main(["doctor", str(f), "--format", "json", "--fail-on", "never"]) == 0
    assert read_run(state).records[3].epoch == math.inf
    assert main(["doctor", str(state), "--format", "json", "--fail-on", "never"]) == 0


def test_yolov5_results_csv_with_padded_cells(tmp_path: Path) -> None:
    # YOLOv5's train.py writes every name and value padded to 20 characters ('%20s' / '%20.5g')
    keys = ["epoch", "train/box_loss", "train/obj_loss", "train/cls_loss", "metrics/precision"]
    keys += ["metrics/recall", "metrics/mAP_0.5", "metrics/mAP_0.5:0.95", "val/box_loss"]
    keys += ["val/obj_loss", "val/cls_loss", "x/lr0", "x/lr1", "x/lr2"]
    lines = [",".join(f"{k:>20}" for k in keys)]
    for e in range(5):
        vals = [
            e,
            0.1 / (e + 1),
            0.03,
            0.02,
            0.5,
            0.4,
            0.3,
            0.2,
            0.05,
            0.02,
            0.01,
            0.07,
            0.001,
            0.001,
        ]
        lines.append(",".join(f"{v:>20.5g}" for v in vals))
    f = tmp_path / "results.csv"
    f.write_text("\n".join(lines) + "\n")
    data = read_run(f)
    assert data.dialect == "ultralytics" and [r.step for r in data.train] == [0, 1, 2, 3, 4]
    assert data.train[1].loss == pytest.approx(0.05 + 0.03 + 0.02) and data.train[1].lr == 0.07
    assert data.evals[0].eval_loss == pytest.approx(0.08)


def test_steps_and_sums_out_of_range_are_data(tmp_path: Path) -> None:
    f = tmp_path / "log.csv"
    f.write_text("step,loss\n1e300,1.0\n" + "".join(f"{i},1.0\n" for i in range(1, 30)))
    data = read_run(f)  # (warnings are errors here: no cast of 1e300 to int64)
    assert [r.step for r in data.train][:2] == [1, 2] and any("malformed" in n for n in data.notes)
    u = tmp_path / "results.csv"
    src = (FIXTURES / "ultralytics_gallstone_seg" / "results.csv").read_text().splitlines()
    cells = src[1].split(",")
    cells[2], cells[3] = "Infinity", "-Infinity"  # train/box_loss + train/seg_loss
    u.write_text("\n".join([src[0], ",".join(cells), *src[2:]]) + "\n")
    data = read_run(u)
    assert math.isnan(data.train[0].loss or 0.0)
    assert main(["doctor", str(u), "--format", "json", "--fail-on", "never"]) == 0


def test_table_views_hold_what_records_would() -> None:
    import numpy as np

    from stabletrain.detectors.columns import Table, Unsupported, Values

    v = Values(np.array([1.0, 2.0, 3.0, 4.0]), np.array([False, True, False, False]))
    assert [v[0], v[1], v[-1]] == [1.0, None, 4.0] and v[1:3] == [None, 3.0]
    assert v.take(np.array([0, 1, 3])) == [1.0, None, 4.0]
    assert v.count(None) == 1 and None in v and 3.0 in v and list(v) == [1.0, None, 3.0, 4.0]
    ints = Values(np.array([3.0, math.inf]), None, lambda x: int(x) if math.isfinite(x) else x)
    assert type(ints[0]) is int and ints[1] == math.inf
    t = Table(
        np.array([5, 6]),
        np.array([True, False]),
        {"loss": (np.array([0.5, 0.0]), np.array([False, True]))},
        {"f1": (np.array([0.0, 0.7]), np.array([True, False]))},
    )
    recs = TableRecords(t)
    assert (
        repr(recs[-1]) == repr(recs[1])
        and recs[1].kind == "eval"
        and recs[1].metrics == {"f1": 0.7}
    )
    with pytest.raises(IndexError):
        recs[2]
    b = Batch(recs)
    assert b.none("grad_norm") is not None and b.none("grad_norm").all()  # a field it lacks
    assert b.none("action").all() and list(b.objects("kind")) == ["train", "eval"]
    with pytest.raises(Unsupported):
        b.floats("kind")
    assert b.floats("loss")[1] != b.floats("loss")[1]  # NaN where None


def test_jsonl_types_and_keys_changing_after_the_schema_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stabletrain.logs.readers import table

    f = tmp_path / "log.jsonl"
    rows = [{"step": i, "loss": 1} for i in range(1500)]
    rows += [{"step": 1500 + i, "loss": 2.5, "eval_loss": 0.3} for i in range(10)]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    python = list(map(repr, read_run(f).records))
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    fast = read_run(f).records
    assert list(map(repr, fast)) == python
    assert fast[-2].loss == 2.5 and fast[-1].eval_loss == 0.3
