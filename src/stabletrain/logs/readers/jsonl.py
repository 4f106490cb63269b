"""Read generic JSON-lines metric logs into columns: one object per line (detectron2's
``metrics.json``, ms-swift's ``logging.jsonl``, HF-style dicts, any ``{"step": .., "loss": ..}``).

Each key is a column mapped with ``stabletrain.logs.readers.fields``; the step comes from
``step``/``global_step``/``iteration`` or ms-swift's ``"global_step/max_steps": "8270/11043"``,
else the line number (said in the notes). Dialects:

- detectron2 ``metrics.json``: ``iteration``, ``total_loss``, ``lr``, ``time`` (seconds per
  iteration: the step time); evaluation lines carry ``bbox/AP``, ``segm/AP50``... and become eval
  records; ``eta_seconds`` is bookkeeping.
- ms-swift: the step and ``max_steps`` from ``global_step/max_steps``.

Reading: polars parses a file of ``table.POLARS_MIN_BYTES`` or more into typed columns. Its
schema comes from the first lines, so a key that first appears later (an eval line) would be
dropped: the number of ``"key":`` pairs in the raw bytes is counted and compared with the cells
read, and on any difference the file is parsed again with the schema inferred from every line.
Lines polars refuses (``NaN``/``Infinity`` literals, a half-written last line), and every smaller
file, go through ``json.loads`` line by line, which skips damaged lines with a note.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup, percent_shares
from stabletrain.logs.readers.runlog import read_json_lines
from stabletrain.logs.readers.table import Column

_SWIFT_STEP = "global_step/max_steps"
_D2_EVAL = ("bbox/", "segm/", "keypoints/", "sem_seg/", "panoptic_seg/")
_CHUNK = 1 << 24
_SCHEMA_ROWS = 1000


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    data = RunData(path=path, format="jsonl")
    data.facts.format = "generic-log"  # no framework known: fixes use stabletrain's keys
    got = _polars(path) if path.stat().st_size >= table.POLARS_MIN_BYTES else None
    if got is None:
        rows = read_json_lines(path, data.notes)
        names = list(dict.fromkeys(k for r in rows for k in r))
        cols = {k: table.floats([r.get(k) for r in rows]) for k in names}
        swift = [r.get(_SWIFT_STEP) for r in rows] if _SWIFT_STEP in names else None
        total = len(rows)
        shares = percent_shares(rows)  # fairseq's "clip": "100%" (a threshold has no %)
    else:
        names, cols, swift, total = got
        shares = {}
    lookup = build_lookup(names, mapping)
    lookup.update({k: v for k, v in shares.items() if k not in (mapping or {}).values()})
    step: np.ndarray | None = None
    if swift is not None:
        data.format, data.dialect = "ms-swift-jsonl", "ms-swift"
        data.facts.format = "ms-swift"  # its arguments: HF TrainingArguments' plus torch_dtype
        step = _swift_steps(swift, data)
        lookup[_SWIFT_STEP] = ("skip", None, _SWIFT_STEP)
    elif "total_loss" in names and "iteration" in names:
        data.dialect = "detectron2"
        data.facts.format = "detectron2"
        for k in names:
            if k.startswith(_D2_EVAL):
                lookup[k] = ("eval", None, k)
        if "time" in lookup and not (mapping and "time" in mapping.values()):
            lookup["time"] = ("train", "step_time", "time")
        if "eta_seconds" in lookup:
            lookup["eta_seconds"] = ("skip", None, "eta_seconds")
    n = total
    if step is None:  # the first step-like key with a finite value wins, as step_of does
        step = table.first_steps((cols[k][0] for k in names if lookup[k][0] == "step"), n)
    missing = np.isnan(step)
    per_epoch = _epoch_steps(cols, lookup, n) if missing.all() else None
    if per_epoch is not None:
        step = per_epoch
        data.notes.append(f"{path.name}: one line per epoch and no step; steps are the epochs")
    elif missing.any():  # (so ``step`` is a new array, not a column)
        step[missing] = np.flatnonzero(missing)
        data.notes.append(
            f"{path.name}: {int(missing.sum())} line(s) without a step; steps are line numbers"
        )
    table.to_run(data, step.astype(np.int64), cols, lookup)
    data.lines_total = data.lines_understood = total
    return data


def _epoch_steps(cols: dict[str, Column], lookup: dict[str, Any], n: int) -> np.ndarray | None:
    """The epoch column as the steps of a log with one line per epoch and no step key (DeiT's and
    DETR's ``log.txt``): a whole, finite epoch on every line and never the same on two lines in
    a row. Line numbers would hide a second run appended to the file (epochs 0-9 then 0-50 read
    as steps 0-60); the epochs show the counter going back. None when the log is not such a log
    (several lines per epoch, fractional HF epochs, lines without one)."""
    key = next((k for k, slot in lookup.items() if slot[1] == "epoch" and k in cols), None)
    if key is None or n < 2:
        return None
    values = cols[key][0]
    if not (np.isfinite(values).all() and (values == np.round(values)).all()):
        return None
    if (np.abs(values) >= table.STEP_LIMIT).any() or (values[1:] == values[:-1]).any():
        return None
    return values.astype(np.float64)


def _swift_steps(values: list[Any], data: RunData) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        cur, _, tot = str(v).partition("/")
        try:
            if abs(int(cur)) < table.STEP_LIMIT:
                out[i] = int(cur)
            if tot and "max_steps" not in data.facts:
                data.facts.set("max_steps", int(tot), key=_SWIFT_STEP, file=str(data.path))
        except ValueError:
            continue
    return out


def _polars(
    path: Path,
) -> tuple[list[str], dict[str, Column], list[Any] | None, int] | None:
    """(keys, columns, ms-swift step strings or None, lines) via polars, parsed in blocks of
    whole lines (``table.READ_BYTES``) into arrays; None when polars cannot read the file as it
    is (the caller parses it line by line)."""
    pl = table.import_polars()
    if pl is None:  # (a dependency; without it every file takes the slow path)
        return None
    lines, colons = _lines_and_colons(path)
    try:
        # the schema of the first lines, given: a third faster than letting polars infer it; a
        # later line that does not fit it shows in the count of cells and is read again
        got = _stream(pl, path, pl.read_ndjson(_head(path), n_rows=_SCHEMA_ROWS).schema, lines)
        # fewer cells than "key": pairs: a key the first lines did not have (or explicit nulls:
        # read again too, which costs time, never a value). Every cell has its colon, so as many
        # colons as cells settles it without the slower count of pairs.
        if got is not None and got[3] != colons and got[3] != _count(path, b'":'):
            schema = pl.scan_ndjson(path, infer_schema_length=None).collect_schema()
            got = _stream(pl, path, schema, lines)
    except Exception:  # polars raises many kinds; json.loads line by line decides
        return None
    if got is None:
        return None
    names, cols, swift, _cells, rows = got
    if swift is not None:
        cols[_SWIFT_STEP] = (np.full(rows, np.nan), np.ones(rows, dtype=bool))
    return names, cols, swift, rows


def _stream(
    pl: Any, path: Path, schema: Any, lines: int
) -> tuple[list[str], dict[str, Column], list[Any] | None, int, int] | None:
    """(keys, columns, ms-swift steps, cells holding a value, rows) of the file parsed with
    ``schema`` block by block (polars would map the whole file into memory); None for no key,
    nested values (``from_json``'s rules, line by line) or more rows than ``lines``."""
    from stabletrain.logs.readers.csvlog import polars_column

    names = list(schema.names())
    if not names or any(dt.is_nested() for dt in schema.dtypes()):
        return None
    numeric = [k for k in names if k != _SWIFT_STEP]
    swift: list[Any] | None = [] if _SWIFT_STEP in names else None
    filler, cells = table.Filler(lines), 0
    for block in _blocks(path):
        batch = pl.read_ndjson(io.BytesIO(block), schema=schema)
        cells += sum(len(batch) - batch.get_column(k).null_count() for k in names)
        if swift is not None:
            swift += batch.get_column(_SWIFT_STEP).to_list()
        if not filler.add({k: polars_column(batch.get_column(k)) for k in numeric}, len(batch)):
            return None
    return names, filler.columns(numeric), swift, cells, filler.filled


def _head(path: Path) -> io.BytesIO:
    """The file's first ``_SCHEMA_ROWS`` lines."""
    with open(path, "rb") as f:
        return io.BytesIO(b"".join(itertools.islice(f, _SCHEMA_ROWS)))


def _blocks(path: Path) -> Iterator[bytes]:
    """The file in blocks of whole lines, ``table.READ_BYTES`` or the next line end after it
    (a JSON line holds no raw newline); the last line may lack its newline."""
    carry = b""
    with open(path, "rb") as f:
        while chunk := f.read(table.READ_BYTES):
            buf = carry + chunk
            cut = buf.rfind(b"\n") + 1
            carry = buf[cut:]
            if cut:
                yield buf[:cut]
    if carry:
        yield carry


def _lines_and_colons(path: Path) -> tuple[int, int]:
    """(lines, a last one without a newline counted; colons) in the file, read in chunks."""
    lines = colons = 0
    last = b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            lines += chunk.count(b"\n")
            colons += chunk.count(b":")
            last = chunk[-1:]
    return lines + (1 if last not in (b"\n", b"") else 0), colons


def _count(path: Path, pattern: bytes) -> int:
    """Occurrences of ``pattern`` in the file, read in chunks."""
    count, carry = 0, b""
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            buf = carry + chunk
            count += buf.count(pattern)
            carry = buf[-(len(pattern) - 1) :]
    return count
