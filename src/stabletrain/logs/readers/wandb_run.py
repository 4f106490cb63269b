"""Read a Weights & Biases run from its transaction log, ``run-<id>.wandb``: offline runs
(``wandb/offline-run-*``) and synced ones (``wandb/run-*``) keep every ``wandb.log`` call there.

wandb >= 0.19 no longer ships a Python reader of these files (its Go core writes them), so the
framing is read here and each record is decoded with the package's own protobuf schema
(``wandb.proto.wandb_internal_pb2.Record``, imported lazily: reading a W&B run needs
``pip install wandb``). The framing is LevelDB's log format: a 7-byte file header
(``:W&B``, magic 0xBEE1, version 0), then 32 KiB blocks of chunks, each with a 7-byte header
(CRC-32 of type + data, little-endian length, type FULL/FIRST/MIDDLE/LAST); a block's tail too
short for a header is zero padding.

``history`` records become rows (``_step`` or the record's step; ``_runtime``/``_timestamp`` are
bookkeeping), ``config`` records the run's settings (facts, by the generic key table). A damaged
chunk (CRC mismatch, a record cut short by a killed run) ends the read with a note saying how
much was read.
"""

from __future__ import annotations

import json
import math
import struct
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain import safe_io
from stabletrain.errors import LogReadError
from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import build_lookup

_HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
_BLOCK = 32768
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4
_BOOKKEEPING = ("_runtime", "_timestamp", "_step", "_wandb")


def run_file(p: Path) -> Path | None:
    """The ``.wandb`` file of a run folder (or of ``wandb/latest-run``), or ``p`` itself."""
    if p.is_file():
        return p if p.suffix == ".wandb" else None
    if not p.is_dir():
        return None
    files = sorted(p.glob("run-*.wandb"))
    if files:
        return files[-1]
    latest = p / "latest-run"
    if latest.is_dir():
        return run_file(latest)
    runs = sorted(p.glob("*run-*/run-*.wandb"))
    if len(runs) > 1:
        shown = ", ".join(r.parent.name for r in runs[:6]) + (" ..." if len(runs) > 6 else "")
        raise LogReadError(f"{p}: {len(runs)} W&B runs ({shown}); pass the run folder to read")
    return runs[0] if runs else None


def read(path: Path, mapping: dict[str, str] | None = None) -> RunData:
    f = run_file(path)
    if f is None:
        raise LogReadError(f"{path}: no W&B run file (run-<id>.wandb) found")
    try:
        from wandb.proto import wandb_internal_pb2 as pb
    except ImportError as e:
        raise LogReadError(
            f"{f}: reading a W&B run needs the wandb package (pip install wandb)"
        ) from e
    dialect = "wandb-offline" if "offline-run" in str(f.resolve()) else "wandb"
    data = RunData(path=path, format="wandb", dialect=dialect)
    rows: list[dict[str, Any]] = []
    steps: list[int] = []
    config: dict[str, Any] = {}
    n_records = 0
    for raw in _records(f, data.notes):
        rec = pb.Record()  # type: ignore[attr-defined]
        try:
            rec.ParseFromString(raw)
        except Exception:  # protobuf's DecodeError: a chunk that is not a Record
            data.notes.append(f"{f.name}: an undecodable record skipped")
            continue
        n_records += 1
        kind = rec.WhichOneof("record_type")
        if kind == "history":
            row = {_key(it): _value(it) for it in rec.history.item}
            step = row.get("_step")
            if not isinstance(step, (int, float)) or isinstance(step, bool):
                step = rec.history.step.num
            if not (math.isfinite(step) and abs(step) < table.STEP_LIMIT):
                continue  # a step that is no number
            steps.append(int(step))
            rows.append(row)
        elif kind in ("config", "run"):  # the run record carries the config given to init
            for it in (rec.config if kind == "config" else rec.run.config).update:
                config[_key(it)] = _value(it)
    data.lines_total = n_records
    data.lines_understood = len(rows)
    if not rows:
        data.tried = ["wandb"]
        return data
    names = [k for k in dict.fromkeys(k for r in rows for k in r) if not k.startswith(_BOOKKEEPING)]
    cols = {k: table.floats([r.get(k) for r in rows]) for k in names}
    table.to_run(data, np.array(steps, dtype=np.int64), cols, build_lookup(names, mapping))
    data.facts.format = "generic-log"
    if config:
        from stabletrain.configs.keys import extract

        plain = {k: v.get("value", v) if isinstance(v, dict) else v for k, v in config.items()}
        extract({k: v for k, v in plain.items() if not k.startswith("_")}, data.facts, str(f))
    return data


def _key(item: Any) -> str:
    return "/".join(item.nested_key) if item.nested_key else str(item.key)


def _value(item: Any) -> Any:
    """The item's value: ``value_json`` (what wandb writes), else the typed field newer schemas
    have (``number``, ``integer``...); None for anything else."""
    if item.value_json:
        try:
            return json.loads(item.value_json)  # NaN, Infinity: Python's json reads them
        except ValueError:
            return None
    which = item.WhichOneof("value") if item.DESCRIPTOR.oneofs_by_name.get("value") else None
    return getattr(item, which) if which in ("number", "integer", "boolean", "text") else None


def _records(f: Path, notes: list[str]) -> list[bytes]:
    """The records of a LevelDB-framed log, up to the first damage (said in ``notes``)."""
    buf = safe_io.read_bytes(f)
    if not buf.startswith(_HEADER[:4]):
        raise LogReadError(f"{f}: not a W&B run file (no ':W&B' header)")
    out: list[bytes] = []
    pos = len(_HEADER)
    part: list[bytes] = []
    damage = None
    while pos < len(buf):
        room = _BLOCK - pos % _BLOCK
        if room < 7:
            pos += room  # zero padding at the end of a block
            continue
        if pos + 7 > len(buf):
            damage = "a chunk header cut short"
            break
        crc, length, kind = struct.unpack_from("<IHB", buf, pos)
        if kind == 0 and length == 0 and crc == 0:
            pos += room  # a zeroed tail: the rest of the block is empty
            continue
        body = buf[pos + 7 : pos + 7 + length]
        if len(body) < length:
            damage = "a record cut short (a run killed mid-write)"
            break
        if zlib.crc32(body, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != crc:
            damage = f"a CRC mismatch at byte {pos}"
            break
        pos += 7 + length
        if kind == _FULL:
            out.append(body)
        elif kind == _FIRST:
            part = [body]
        elif kind == _MIDDLE:
            part.append(body)
        elif kind == _LAST:
            part.append(body)
            out.append(b"".join(part))
            part = []
        else:
            damage = f"an unknown chunk type {kind} at byte {pos}"
            break
    if damage:
        notes.append(
            f"{f.name}: {damage}; {len(out)} record(s) read before it, "
            f"{len(buf) - pos} of {len(buf)} bytes not read"
        )
    return out
