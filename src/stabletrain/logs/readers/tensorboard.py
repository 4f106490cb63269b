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

from stabletrain import safe_io
from stabletrain.errors import LogReadError
from stabletrain.logs.readers import table
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import Slot, build_lookup, classify
from stabletrain.logs.readers.tfrecord import Scalar, scan
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
    buf = safe_io.read_bytes(path)
    out, plugins, n_frames, damage, bad = scan(buf, verify_data=verify_crc)
    if damage:
        notes.append(
            f"{path.name}: {damage}; {n_frames} record(s) read before it, of a "
            f"{len(buf):,}-byte file"
        )
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
    data.facts.format = data.dialect = writer_of(tags)
    data.roles = table.roles(lookup)
    data.lines_total = data.lines_understood = len(scalars)  # scalar points read
    return data


#: tags only HF's TensorBoardCallback writes (it prefixes every log key with train/ or eval/)
_HF_TAGS = frozenset(
    {"train/learning_rate", "train/epoch", "train/total_flos", "train/train_runtime"}
)


def writer_of(tags: list[str]) -> str:
    """Which framework wrote these tags, for fixes in its config keys (``ConfigFacts.format``).

    HF Trainer: ``train/learning_rate``, ``train/epoch``...; Lightning: its ``hp_metric``
    placeholder or ``LearningRateMonitor``'s ``lr-<Optimizer>`` tags. Else a plain
    ``SummaryWriter``: ``generic-log`` (stabletrain's own keys).
    """
    if _HF_TAGS & set(tags):
        return "hf-tensorboard"
    if any(t == "hp_metric" or t.startswith("lr-") for t in tags):
        return "lightning-tensorboard"
    return "generic-log"


def _records(scalars: list[Scalar], lookup: dict[str, Slot], notes: list[str]) -> list[StepRecord]:
    """Merge per-tag points into one train and one eval record per step (later points win)."""
    # per kind: {record field or "m:metric": {step: value}}; one dict per tag, filled in one pass
    series: dict[str, dict[str, dict[int, float]]] = {"train": {}, "eval": {}}
    walls: dict[str, dict[int, float]] = {"train": {}, "eval": {}}
    target: dict[str, tuple[dict[int, float], dict[int, float]] | None] = {}
    for tag in {sc[0] for sc in scalars}:
        kind, field, metric = lookup.get(tag) or classify(tag)
        if kind == "skip" or kind == "step":
            target[tag] = None
            continue
        col = series[kind].setdefault(field or "m:" + metric, {})
        target[tag] = (col, walls[kind])
    kept = 0
    for tag, step, value, wall in scalars:
        t = target[tag]
        if t is not None:
            t[0][step] = value
            t[1][step] = wall
            kept += 1
    if kept != sum(len(c) for cols in series.values() for c in cols.values()):
        overwritten = _changed_repeats(scalars)
        if overwritten:
            notes.append(
                f"{overwritten} scalar point(s) logged again with a different value for a step "
                "already seen (resumed run or several writers); the later value was kept"
            )
    out: list[StepRecord] = []
    for kind in ("train", "eval"):
        cols = series[kind]
        fields_ = {k: v for k, v in cols.items() if not k.startswith("m:")}
        metrics_ = {k[2:]: v for k, v in cols.items() if k.startswith("m:")}
        if not fields_ and not metrics_:
            continue
        steps: set[int] = set()
        for col in cols.values():
            steps.update(col)
        wall_of = walls[kind]
        only = next(iter(fields_.items())) if len(fields_) == 1 and not metrics_ else None
        for step in sorted(steps):
            if only is not None:  # the common single-series file: no per-step dict building
                kw: dict[str, Any] = {only[0]: only[1][step]}
                m: dict[str, float] = {}
            else:
                kw = {f: col[step] for f, col in fields_.items() if step in col}
                m = {name: col[step] for name, col in metrics_.items() if step in col}
                if kind == "train" and set(kw) <= {"epoch"} and set(m) <= {"hp_metric"}:
                    continue  # Lightning's hp_metric placeholder or an epoch-only point
            _fix_types(kw)
            rec = StepRecord(step=step, wall_time=wall_of.get(step), metrics=m, **kw)
            rec.kind = "eval" if kind == "eval" else "train"
            out.append(rec)
    return out


def _changed_repeats(scalars: list[Scalar]) -> int:
    seen: dict[tuple[str, int], float] = {}
    n = 0
    for tag, step, value, _wall in scalars:
        old = seen.get((tag, step))
        if old is not None and old != value and not (old != old and value != value):
            n += 1
        seen[tag, step] = value
    return n


def _fix_types(kw: dict[str, Any]) -> None:
    if "skipped" in kw or "samples" in kw or "tokens" in kw:
        _fix_rare(kw)


def _fix_rare(kw: dict[str, Any]) -> None:
    if "skipped" in kw:
        kw["skipped"] = bool(kw["skipped"])
    for k in ("samples", "tokens"):
        if k in kw:
            v = kw[k]
            kw[k] = int(v) if math.isfinite(v) else None
