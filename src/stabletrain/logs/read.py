"""``read_run``: read any supported training log into :class:`RunData`, detecting the format.

Detection looks at content, not only the name: a directory is a stabletrain run dir (steps.jsonl /
meta.json), an HF checkpoint (trainer_state.json), a TensorBoard log dir, or a Lightning log dir
(metrics.csv); a file is a TFRecord (valid length CRC), JSON with ``log_history``, JSON lines, CSV,
or text. Readers live in ``stabletrain.logs.readers``; this module only dispatches and cleans.
Every reader reads up to damage and says so in ``notes``; only input that cannot be read at all
raises :class:`~stabletrain.errors.LogReadError` (one line, naming the file).

Honesty: a diagnosis of data that was not understood is worse than none. A file that yields no
record with any reader tried raises "no training records found in X (tried: ...)"; a table whose
columns hold no value of a role the detectors use (loss, grad norm, LR, accuracy, eval loss...)
raises with the columns it has and the ``--map`` that would name them.
"""

from __future__ import annotations

import gc
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain import safe_io
from stabletrain.detectors.columns import TableRecords
from stabletrain.errors import ConfigError, LogReadError
from stabletrain.logs.readers import (
    csvlog,
    hf_state,
    jsonl,
    mlflow_store,
    runlog,
    table,
    tensorboard,
    text,
    wandb_run,
)
from stabletrain.logs.readers.base import RunData, clean_records
from stabletrain.logs.readers.standins import fill_standin_loss
from stabletrain.logs.readers.tfrecord import looks_like_tfrecord

__all__ = ["RunData", "detect_format", "read_run", "read_run_columns"]

log = logging.getLogger(__name__)

#: config files that may lie beside a log. One is used only where it is unambiguously the run's
#: own (:func:`_own_config`); any other is noted as seen and ignored (it may be another run's)
_HPARAMS = ("hparams.yaml", "config.yaml", "training_args.json", "ds_config.json")


def read_run(path: str | os.PathLike[str], *, mapping: dict[str, str] | None = None) -> RunData:
    """Read a run directory or a log file; ``mapping`` = {StepRecord field: the log's name}."""
    return read_run_columns(path, mapping=mapping)[0]


def read_run_columns(
    path: str | os.PathLike[str],
    *,
    mapping: dict[str, str] | None = None,
    config: str | os.PathLike[str] | None = None,
) -> tuple[RunData, dict[str, list[Any]] | None]:
    """``read_run``, and the columns of ``RunData.raw`` ({field: value per record}) when the
    reader built the records from columns (a stabletrain run log with uniform lines), for
    ``detectors.columns.Batch``; None otherwise. ``config``: the config the user gave (no note
    calls it ignored when it lies beside the log)."""
    p = Path(path)
    if not p.exists():
        raise LogReadError(f"{p}: no such file or directory")
    with gc_paused():
        try:
            data, columns = _dispatch(p, mapping, Path(config) if config is not None else None)
            data.path = p
            fill_standin_loss(data)
            _check_understood(p, data, mapping)
            if isinstance(data.raw, TableRecords):
                table.clean(data)
            else:
                data.records = (
                    list(data.raw)
                    if _nothing_to_clean(columns)
                    else clean_records(data.raw, data.notes)
                )
        except (OSError, UnicodeDecodeError) as e:
            raise LogReadError(f"{p}: cannot read ({e})") from e
    return data, columns


#: StepRecord fields the detectors judge a run by; a log holding none of them was not understood
UNDERSTOOD = (
    "loss",
    "grad_norm",
    "lr",
    "loss_scale",
    "clip_coef",
    "accuracy",
    "eval_loss",
    "eval_accuracy",
    "step_time",
    "skipped",
    "action",
)


def _check_understood(p: Path, data: RunData, mapping: dict[str, str] | None) -> None:
    """LogReadError unless ``data`` holds records with a value in an :data:`UNDERSTOOD` field."""
    if not data.raw:
        tried = ", ".join(data.tried or [data.format])
        raise LogReadError(f"no training records found in {p} (tried: {tried})")
    if isinstance(data.raw, TableRecords):
        if any(map(data.raw.table.has_value, UNDERSTOOD)):
            return
    elif any(getattr(r, name) is not None for name in UNDERSTOOD for r in data.raw):
        return
    names = [n for n, role in data.roles.items() if role not in ("step", "skip")]
    if not names:
        names = sorted({k for r in data.raw for k in r.metrics})
    shown = ", ".join(names[:12]) + (" ..." if len(names) > 12 else "")
    example = f"--map loss={names[0]}" if names else "--map loss=COLUMN"
    given = f" (--map given: {mapping})" if mapping else ""
    raise LogReadError(
        f"{p}: read {len(data.raw)} record(s) as {data.format}, but no column is a loss or "
        f"metric stabletrain knows (columns: {shown or 'none'}){given}; name them with --map, "
        f"e.g. {example}"
    )


def _nothing_to_clean(columns: dict[str, list[Any]] | None) -> bool:
    """Whether the reader's columns show train records only, steps strictly increasing: no
    rewind, no repeat, no eval to merge — ``clean_records`` would return them as they are (and
    its pass over every record costs 0.3 s per million)."""
    if columns is None:
        return False
    kinds, steps = columns["kind"], columns["step"]
    if kinds.count("train") != len(kinds):
        return False
    arr = np.array(steps)
    return arr.dtype == np.int64 and bool((arr[1:] > arr[:-1]).all())


@contextmanager
def gc_paused() -> Iterator[None]:
    """No cyclic garbage collection inside: a log is millions of small objects without cycles
    (records, their dicts), which every collection would walk again and again.

    On the way out, what was allocated inside goes straight to the oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``), as if it had survived the young collections:
    otherwise the first allocation after re-enabling walks all of it (0.3 s per million
    records). Skipped when the process froze objects itself (unfreezing would thaw them).
    """
    was_enabled = gc.isenabled()
    frozen_before = gc.get_freeze_count()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            if frozen_before == 0:
                gc.freeze()
                gc.unfreeze()
            gc.enable()


def detect_format(path: str | os.PathLike[str]) -> str:
    """The reader family a path would be read with (``stabletrain``, ``tensorboard``...)."""
    return _kind(Path(path))[0]


def _kind(p: Path) -> tuple[str, Path, Any]:
    """(reader, the file or dir it reads, a pre-parsed JSON object or None)."""
    if p.is_dir():
        if (p / "steps.jsonl").exists() or _is_runlog_meta(p / "meta.json"):
            return "stabletrain", p, None
        if mlflow_store.is_file_store(p):
            return "mlflow", p, None
        if wandb_run.run_file(p) is not None:
            return "wandb", p, None
        if (p / "trainer_state.json").exists():
            return "hf-trainer-state", p / "trainer_state.json", None
        if tensorboard.event_files(p):
            return "tensorboard", p, None
        csvs = sorted(p.rglob("metrics.csv"))
        if csvs:
            return "csv", csvs[-1], None
        logs = _candidate_logs(p)
        if len(logs) == 1:
            return _kind(logs[0])
        if logs:
            names = ", ".join(f.name for f in logs[:8]) + (" ..." if len(logs) > 8 else "")
            raise LogReadError(f"{p}: {len(logs)} log files ({names}); pass the one to read")
        raise LogReadError(
            f"{p}: no run log found (steps.jsonl, trainer_state.json, TensorBoard events, "
            "metrics.csv, or one .log/.txt/.out/.jsonl/.csv file); pass the log file itself"
        )
    # regular files only, within the size cap (a FIFO, /dev/zero or a 50 GB file: one line)
    with safe_io.open_regular(p) as f:
        head = f.read(4096)
    if "tfevents" in p.name or looks_like_tfrecord(head):
        return "tensorboard", p, None
    if mlflow_store.is_sqlite(head):
        return "mlflow", p, None
    if p.suffix == ".wandb" or head.startswith(b":W&B"):
        return "wandb", p, None
    if not head.strip():
        raise LogReadError(f"{p}: empty file")
    if b"\x00" in head:
        raise LogReadError(f"{p}: binary file that is not a TensorBoard event file")
    start = head.lstrip()[:1]
    if start == b"{" or start == b"[":
        first = head.lstrip().split(b"\n", 1)[0]
        # one object per line is JSON lines: parsing the whole file as one document would only
        # fail, after holding all of it (a million lines: 1.3 GB)
        lines = first.rstrip().endswith(b"}") and b"\n{" in head.lstrip()
        obj = None
        if not lines:
            try:
                obj = safe_io.parse_json(safe_io.read_text(p, errors="replace"), source=str(p))
            except ValueError:
                obj = None
        if hf_state.is_trainer_state(obj):
            return "hf-trainer-state", p, obj
        if (
            start == b"{"
            and (obj is None or isinstance(obj, dict))
            and first.rstrip().endswith(b"}")
        ):
            if b'"step"' in head and (p.name.startswith(("steps", "evals")) or b'"v"' in head):
                return "stabletrain", p, None
            if first.startswith(b'{"') or first.startswith(b'{ "'):
                return "jsonl", p, None
    first_line = head.split(b"\n", 1)[0].decode("utf-8", "replace")
    if p.suffix == ".csv" or (
        first_line.count(",") >= 1
        and not first_line.lstrip().startswith(("{", "#", "step", "iter"))
        and all(c.strip() and not c.strip()[0].isdigit() for c in first_line.split(","))
    ):
        return "csv", p, None
    return "text", p, None


#: files beside a pasted log that describe it rather than hold it
_NOT_LOGS = ("readme", "source", "license", "notes", "changelog")


def _candidate_logs(d: Path) -> list[Path]:
    """The files of ``d`` that may be a training log: text logs, JSONL, CSV, HF trainer states;
    not the README/SOURCE notes that travel with a pasted log. A Markdown file (a log pasted
    into notes or an issue) is a candidate only when nothing else in ``d`` is."""
    out, markdown = [], []
    for f in sorted(d.iterdir()):
        if not f.is_file() or f.stem.lower().startswith(_NOT_LOGS):
            continue
        if f.suffix in (".jsonl", ".log", ".txt", ".out", ".csv") or (
            f.suffix == ".json" and ("trainer_state" in f.name or f.name == "metrics.json")
        ):
            out.append(f)
        elif f.suffix.lower() == ".md":
            markdown.append(f)
    return out or markdown


def _is_runlog_meta(p: Path) -> bool:
    try:
        return json.loads(p.read_text(encoding="utf-8")).get("schema") == "stabletrain.runlog"
    except (OSError, ValueError, AttributeError):
        return False


def _dispatch(
    p: Path, mapping: dict[str, str] | None, given: Path | None = None
) -> tuple[RunData, dict[str, list[Any]] | None]:
    kind, target, obj = _kind(p)
    where = target if target.is_dir() else target.parent
    if kind == "stabletrain":
        data, columns = runlog.read_columns(target, mapping)
        why = "the run dir's own config.yaml"
        _own_config(where, data, "config.yaml", why, given, read=not p.is_dir())
        return data, columns
    if kind == "hf-trainer-state":
        data = hf_state.read(target, mapping, obj)
        _note_siblings(target.parent, data, "trainer_state.json")
        why = "the HF checkpoint's training_args.json, beside its trainer_state.json"
        _own_config(where, data, "training_args.json", why, given)
        pickled = where / "training_args.bin"
        if data.config_from is None and given is None and pickled.is_file():
            data.notes.append(
                f"{pickled} not read (a pickle is never loaded); to judge the run by its "
                "settings, save TrainingArguments.to_json_string() and pass it with --config"
            )
    elif kind == "tensorboard":
        data = tensorboard.read(target, mapping)
        why = "the Lightning version dir's hparams.yaml, beside its event files"
        _own_config(where, data, "hparams.yaml", why, given)
    elif kind == "csv":
        data = csvlog.read(target, mapping)
        lightning = target.name == "metrics.csv"  # a Lightning CSVLogger version dir
        why = "the Lightning version dir's hparams.yaml, beside its metrics.csv"
        _own_config(where, data, "hparams.yaml" if lightning else None, why, given)
    elif kind == "jsonl":
        data = jsonl.read(target, mapping)
    elif kind == "mlflow":
        data = mlflow_store.read(target, mapping)
    elif kind == "wandb":
        data = wandb_run.read(target, mapping)
    else:
        data = text.read(target, mapping)
    if kind in ("jsonl", "text"):
        _own_config(where, data, None, "", given)
    if not data.raw and kind in ("csv", "jsonl") and target.is_file():
        # a .csv or JSON-looking file with no row we could use may still be a console log
        fallback = text.read(target, mapping)
        fallback.tried = [data.format, fallback.format]
        if fallback.raw:
            fallback.notes.insert(0, f"{target.name}: read as a text log (no {kind} rows)")
        return (fallback if fallback.raw else _tried(data, fallback)), None
    return data, None


def _tried(first: RunData, second: RunData) -> RunData:
    first.tried = [first.format, second.format]
    return first


def _note_siblings(d: Path, data: RunData, used: str) -> None:
    if tensorboard.event_files(d) if d.is_dir() else False:
        data.notes.append(f"{d}: TensorBoard files also present; read {used} (it has the facts)")


def _own_config(
    d: Path, data: RunData, own: str | None, why: str, given: Path | None, *, read: bool = True
) -> None:
    """Settings from the config file ``own`` in ``d`` (the run's own: a run dir's config.yaml, a
    Lightning version dir's hparams.yaml, an HF checkpoint's training_args.json), recorded in
    ``data.config_from`` with ``why``; ``read=False`` when the reader has read it already.

    Any other config file beside the log is *not* used — a config.yaml next to a plain CSV may
    be another run's (a log at lr 1e-3 was judged by a sibling's lr 5e-3) — and a note says it
    was seen and how to use it.
    """
    from stabletrain.configs.read import read_config

    for name in _HPARAMS:
        f = d / name
        if not f.is_file():
            continue
        if name != own:
            if given is not None and _same_file(f, given):
                continue
            data.notes.append(
                f"{f} beside the log was seen and not used (nothing ties it to this run); "
                f"to use it: --config {f}"
            )
            continue
        if read:
            try:
                data.facts = data.facts.merged(read_config(f))
            except ConfigError as e:
                data.notes.append(f"{f.name} not usable: {e}")
                continue
        elif data.facts.source != str(f):  # the reader could not use it (its note says why)
            continue
        data.config_from = f"{why}: {f}"


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False
