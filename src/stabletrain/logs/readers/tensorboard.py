"""Read TensorBoard event files: every scalar point, from one file or a directory of them.

tensorboard's ``EventAccumulator`` keeps a 10,000-point reservoir sample per tag by default, so
single-step spikes vanish from long runs; this reader keeps every point. Scalars stored as
``simple_value`` (torch ``SummaryWriter``, HF ``TensorBoardCallback``, Lightning) and as one-element
tensors (TF2 ``tf.summary.scalar``) are both read. Several files in a directory (HF writes eval
metrics into a later file; resumed runs add files) are merged by step, in file-name order (the
name embeds the creation time), later values winning. Tags are mapped with
``stabletrain.logs.readers.fields``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from stabletrain.errors import LogReadError
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import Slot, build_lookup, classify
from stabletrain.logs.readers.tfrecord import Scalar, iter_frames, parse_events
from stabletrain.records import StepRecord


def event_files(path: Path) -> list[Path]:
    """Event files under ``path`` (itself when a file), sorted by name (creation time)."""
    if path.is_file():
        return [path]
    files = [p for p in path.rglob("*") if p.is_file() and "tfevents" in p.name]
    return sorted(files, key=lambda p: (p.name, str(p)))


def read_scalars(
    path: Path, notes: list[str], *, verify_crc: bool = False
) -> tuple[list[Scalar], dict[str, str]]:
    """All scalars of one event file, up to any damage (reported in ``notes``)."""
    try:
        buf = path.read_bytes()
    except OSError as e:
        raise LogReadError(f"{path}: cannot read ({e.strerror or e})") from e
    frames, damage = iter_frames(buf, verify_data=verify_crc)
    out: list[Scalar] = []
    plugins: dict[str, str] = {}
    bad = parse_events(buf, frames, out, plugins)
    if damage:
        notes.append(f"{path.name}: {damage}; {len(frames)} record(s) read before it")
    if bad:
        notes.append(f"{path.name}: {bad} record(s) with an undecodable Event skipped")
    return out, plugins


def read(path: Path, mapping: dict[str, str] | None = None, *, verify_crc: bool = False) -> RunData:
    files = event_files(path)
    if not files:
        raise LogReadError(f"{path}: no TensorBoard event files (events.out.tfevents.*) found")
    data = RunData(path=path, format="tensorboard")
    scalars: list[Scalar] = []
    for f in files:
        got, _plugins = read_scalars(f, data.notes, verify_crc=verify_crc)
        scalars.extend(got)
    if not scalars:
        data.notes.append(f"{path}: event files hold no scalar summaries")
        return data
    tags = sorted({s[0] for s in scalars})
    lookup = build_lookup(tags, mapping)
    data.raw = _records(scalars, lookup, data.notes)
    return data


def _records(scalars: list[Scalar], lookup: dict[str, Slot], notes: list[str]) -> list[StepRecord]:
    """Merge per-tag points into one train and one eval record per step (later points win)."""
    groups: dict[str, list[Scalar]] = {}
    for sc in scalars:
        g = groups.get(sc[0])
        if g is None:
            g = groups[sc[0]] = []
        g.append(sc)
    # per kind: {record field or "m:metric": {step: value}}
    series: dict[str, dict[str, dict[int, float]]] = {"train": {}, "eval": {}}
    walls: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
    overwritten = 0
    for tag, pts in groups.items():
        kind, field, metric = lookup.get(tag) or classify(tag)
        if kind == "skip" or kind == "step":
            continue
        values = {p[1]: p[2] for p in pts}
        if len(values) != len(pts):
            overwritten += _changed_repeats(pts)
        key = field or "m:" + metric
        series[kind].setdefault(key, {}).update(values)
        walls[kind].update({p[1]: p[3] for p in pts})
    if overwritten:
        notes.append(
            f"{overwritten} scalar point(s) logged again with a different value for a step already "
            "seen (resumed run or several writers); the later value was kept"
        )
    out: list[StepRecord] = []
    for kind in ("train", "eval"):
        cols = series[kind]
        fields_ = {k: v for k, v in cols.items() if not k.startswith("m:")}
        metrics_ = {k[2:]: v for k, v in cols.items() if k.startswith("m:")}
        if kind == "train" and not fields_ and not metrics_:
            continue
        steps: set[int] = set()
        for col in cols.values():
            steps.update(col)
        wall = walls[kind]
        for step in sorted(steps):
            kw: dict[str, Any] = {f: col[step] for f, col in fields_.items() if step in col}
            m = {name: col[step] for name, col in metrics_.items() if step in col}
            if kind == "train" and set(kw) <= {"epoch"} and set(m) <= {"hp_metric"}:
                continue  # Lightning's hp_metric placeholder or an epoch-only point
            _fix_types(kw)
            out.append(StepRecord(step=step, kind=kind, wall_time=wall.get(step), metrics=m, **kw))  # type: ignore[arg-type]
    return out


def _changed_repeats(pts: list[Scalar]) -> int:
    seen: dict[int, float] = {}
    n = 0
    for _tag, step, value, _wall in pts:
        old = seen.get(step)
        if old is not None and old != value and not (old != old and value != value):
            n += 1
        seen[step] = value
    return n


def _fix_types(kw: dict[str, Any]) -> None:
    if "skipped" in kw:
        kw["skipped"] = bool(kw["skipped"])
    for k in ("samples", "tokens"):
        if k in kw:
            v = kw[k]
            kw[k] = int(v) if math.isfinite(v) else None
