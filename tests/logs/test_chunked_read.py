"""A table read and replayed in small batches gives exactly the report of one whole batch.

The doctor streams a big CSV in batches of ``table.READ_ROWS`` rows and a JSONL file in blocks of
whole lines of ``table.READ_BYTES`` (polars parses each, arrays are filled in place) and feeds the
detectors' bulk path slices of ``detectors.base.BULK_ROWS`` records, so its memory does not grow
with a batch's temporaries (``bench/doctor_memory.py``). Here the sizes are made tiny (a few rows
or bytes, cutting every run into many uneven pieces) and the report — text and JSON,
findings, change set, summary — must be the same, character for character, as with one batch
(and the same JSON as the per-row Python reader gives). Logs: real ones (ultralytics ``results.csv``, detectron2
``metrics.json``, the ``log_history`` of two real HF trainer states written as JSON lines and as
CSV) and generated ones with loss spikes, NaN/inf, empty cells, eval rows and a restart.
"""

from __future__ import annotations

import csv
import json
import random
from pathlib import Path

import pytest

from stabletrain.detectors import base
from stabletrain.doctor import diagnose
from stabletrain.logs.readers import table
from stabletrain.report import jsonfmt, text

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
WHOLE = 1 << 40


def _report(path: Path) -> tuple[str, str]:
    report = diagnose(path)
    return jsonfmt.render(report), text.render(report, width=120)


def _sizes(monkeypatch: pytest.MonkeyPatch, rows: int, bulk: int) -> None:
    """Read ``rows`` CSV rows, or ``8 * rows`` bytes of JSON lines, at a time; ``bulk`` records
    per ``update_many`` call."""
    monkeypatch.setattr(table, "READ_ROWS", rows)
    monkeypatch.setattr(table, "READ_BYTES", min(8 * rows, 1 << 24))  # (more than any file here)
    monkeypatch.setattr(base, "BULK_ROWS", bulk)


def _three_ways(path: Path, monkeypatch: pytest.MonkeyPatch, rows: int, bulk: int) -> None:
    """Python reader, polars in one batch, polars in small batches with ``bulk``-record
    detector slices: one report."""
    python = _report(path)  # (the files here are under POLARS_MIN_BYTES: csv/json modules)
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    _sizes(monkeypatch, WHOLE, WHOLE)
    whole = _report(path)
    _sizes(monkeypatch, rows, bulk)
    chunked = _report(path)
    assert chunked[0] == whole[0]  # JSON: findings, evidence, change set, summary
    assert chunked[1] == whole[1]
    # the per-row reader: the same report (its JSON compared as objects: polars may list the
    # roles of a JSONL file in another order than the keys first appear)
    assert json.loads(whole[0]) == json.loads(python[0])


def _history_files(state: Path, tmp: Path) -> list[Path]:
    """A real HF ``log_history`` as JSON lines (as HF logs it) and as a CSV export."""
    rows = json.loads(state.read_text())["log_history"]
    j = tmp / "history.jsonl"
    j.write_text("".join(json.dumps(r) + "\n" for r in rows))
    keys = list(dict.fromkeys(k for r in rows for k in r))
    c = tmp / "history.csv"
    with open(c, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)
    return [j, c]


@pytest.mark.parametrize(
    "name", ["ultralytics_gallstone_seg/results.csv", "detectron2_maskrcnn/metrics.json"]
)
def test_real_fixture_tables(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _three_ways(FIXTURES / name, monkeypatch, rows=2, bulk=3)


@pytest.mark.parametrize("run", ["hf_grpo_zero_loss", "hf_quality_lrqa_plateau"])
def test_real_hf_history_as_jsonl_and_csv(
    run: str, real_logs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for f in _history_files(real_logs / run / "trainer_state.json", tmp_path):
        _three_ways(f, monkeypatch, rows=7, bulk=5)


def _generated(path: Path, seed: int, n: int = 1200) -> None:
    """A decaying loss with spikes, a NaN/inf stretch, empty cells, eval rows every 100 steps and
    a restart from a checkpoint (steps logged again)."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    steps = list(range(n // 2)) + list(range(n // 2 - 150, n))  # the restart at n/2 - 150
    for k, s in enumerate(steps):
        loss: object = round(3.0 * 0.999**s + rng.gauss(0, 0.02), 5)
        if rng.random() < 0.01:
            loss = round(float(loss) * rng.uniform(5, 20), 5)  # a spike
        if (700 <= s < 705 and k > n // 2) or s == 40:
            # (one in polars' schema sample: the JSONL column is then text, parsed per value)
            loss = "nan" if s % 2 else "inf"
        row: dict[str, object] = {"step": s, "epoch": s // 400, "loss": loss}
        if rng.random() < 0.9:
            row["grad_norm"] = round(rng.lognormvariate(0, 0.4), 5)
        row["lr"] = 3e-4 * min(1.0, (s + 1) / 100)
        rows.append(row)
        if s % 100 == 99:
            rows.append({"step": s, "eval_loss": round(2.0 * 0.999**s, 5), "eval_accuracy": 0.5})
    if path.suffix == ".jsonl":
        # NaN/inf as strings: polars refuses bare NaN literals (that file goes line by line)
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return
    keys = ["step", "epoch", "loss", "grad_norm", "lr", "eval_loss", "eval_accuracy"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, keys)
        w.writeheader()
        w.writerows(rows)


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
@pytest.mark.parametrize("seed", range(2))
def test_generated_runs_with_spikes_nan_and_a_restart(
    suffix: str, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    f = tmp_path / f"metrics{suffix}"
    _generated(f, seed)
    report = diagnose(f)
    ids = {x.id for x in report.findings}
    assert {"run-restart", "nonfinite-loss"} <= ids, ids  # the file holds what it should
    sizes = _spy_batches(monkeypatch)
    _three_ways(f, monkeypatch, rows=64 + seed, bulk=50 + 7 * seed)
    assert len(sizes) > 10  # polars read it (the per-row reader fills no batches)
    _sizes(monkeypatch, 1, 1)  # a JSON line per block, one record per update_many call
    one = _report(f)
    _sizes(monkeypatch, WHOLE, WHOLE)
    assert one == _report(f)


def _spy_batches(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The row counts of the batches the streamed reads hand ``table.Filler`` from now on."""
    sizes: list[int] = []
    add = table.Filler.add

    def counting(self: table.Filler, columns: dict[str, table.Column], n: int) -> bool:
        sizes.append(n)
        return add(self, columns, n)

    monkeypatch.setattr(table.Filler, "add", counting)
    return sizes


@pytest.mark.parametrize("suffix", [".csv", ".jsonl"])
def test_the_batches_are_really_small(
    suffix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streamed read hands the filler batches of a few rows (so the tests above cut)."""
    f = tmp_path / f"metrics{suffix}"
    _generated(f, 0, n=300)
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    _sizes(monkeypatch, 7, 5)
    sizes = _spy_batches(monkeypatch)
    data = diagnose(f)
    assert data.findings
    assert len(sizes) > 40 and max(sizes) <= 7, sizes[:10]


@pytest.mark.parametrize("long_first", [True, False])
def test_jsonl_whose_first_lines_mislead_the_row_estimate(
    long_first: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """First lines unlike the rest — longer (a key they have and the rest lack), or shorter (keys
    that first appear after polars' schema sample: the file is read again) — read as the per-row
    reader reads them, in small blocks."""
    long = {f"extra_metric_{k}": 0.125 for k in range(12)}
    rows = [
        {"step": i, "loss": round(3.0 / (1 + i), 6), **(long if (i < 1000) == long_first else {})}
        for i in range(4000)
    ]
    f = tmp_path / "log.jsonl"
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    python = _report(f)
    monkeypatch.setattr(table, "POLARS_MIN_BYTES", 0)
    sizes = _spy_batches(monkeypatch)
    _sizes(monkeypatch, 64, 100)
    polars = _report(f)
    assert sizes, "polars did not read it"
    assert json.loads(polars[0]) == json.loads(python[0])
    assert polars[1] == python[1]
