"""The run log: the contract between the trainer, the guard and the doctor.

A run directory holds (schema in docs/run-log.md)::

    meta.json       {"schema": "stabletrain.runlog", "version": 1, ...}
    config.yaml     the resolved config (written by the trainer)
    steps.jsonl     one StepRecord per optimizer step
    evals.jsonl     one StepRecord (kind="eval") per evaluation
    events.jsonl    actions and warnings: {"step", "event", "severity", "message", "data"}
    tb/             TensorBoard event files, when tensorboard is installed

Every line is flushed as it is written, so a run killed with SIGKILL keeps every completed step.
Only one process writes (rank 0 by default): pass ``enabled=False`` on the others, which makes
every method a no-op — the cure for the seeds' "same epoch printed 4 times".
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import IO, Any

from stabletrain.records import SCHEMA_VERSION, StepRecord

log = logging.getLogger(__name__)

STEPS_FILE = "steps.jsonl"
EVALS_FILE = "evals.jsonl"
EVENTS_FILE = "events.jsonl"
META_FILE = "meta.json"
CONFIG_FILE = "config.yaml"

#: StepRecord fields mirrored to TensorBoard, with their tags.
_TB_TRAIN_TAGS = {
    "loss": "train/loss",
    "grad_norm": "train/grad_norm",
    "clip_coef": "train/clip_coef",
    "lr": "train/lr",
    "loss_scale": "train/loss_scale",
    "accuracy": "train/accuracy",
}
_TB_EVAL_TAGS = {"eval_loss": "eval/loss", "eval_accuracy": "eval/accuracy"}


class RunLog:
    """Writes one run directory. Use as a context manager or call :meth:`close`.

    ``resume=True`` appends to existing files (a resumed run); steps already logged past the
    resume point are kept — readers take the last record for a repeated step.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike[str],
        *,
        enabled: bool = True,
        tensorboard: bool = True,
        resume: bool = False,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.enabled = enabled
        self._files: dict[str, IO[str]] = {}
        self._tb: Any = None
        self._t0 = time.time()
        if not enabled:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        mode = "a" if resume else "w"
        for name in (STEPS_FILE, EVALS_FILE, EVENTS_FILE):
            # line buffering + explicit flush: a crash loses at most the line being written
            self._files[name] = open(self.run_dir / name, mode, buffering=1, encoding="utf-8")  # noqa: SIM115
        meta_path = self.run_dir / META_FILE
        if not (resume and meta_path.exists()):
            info = {
                "schema": "stabletrain.runlog",
                "version": SCHEMA_VERSION,
                "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                **(meta or {}),
            }
            atomic_write_text(meta_path, json.dumps(info, indent=2) + "\n")
        if tensorboard:
            self._tb = _open_tensorboard(self.run_dir / "tb")

    # -- writing ------------------------------------------------------------------------------
    def write_config(self, text: str) -> None:
        """Store the resolved config (YAML text) atomically."""
        if self.enabled:
            atomic_write_text(self.run_dir / CONFIG_FILE, text)

    def log_step(self, record: StepRecord) -> None:
        if not self.enabled:
            return
        if record.wall_time is None:
            record.wall_time = round(time.time() - self._t0, 4)
        self._write(STEPS_FILE, record.to_json())
        self._tb_scalars(record, _TB_TRAIN_TAGS)

    def log_eval(self, record: StepRecord) -> None:
        if not self.enabled:
            return
        record.kind = "eval"
        if record.wall_time is None:
            record.wall_time = round(time.time() - self._t0, 4)
        self._write(EVALS_FILE, record.to_json())
        self._tb_scalars(record, _TB_EVAL_TAGS)
        if self._tb is not None:
            for k, v in record.metrics.items():
                self._tb.add_scalar(f"eval/{k}", v, record.step)

    def log_event(
        self,
        step: int | None,
        event: str,
        message: str,
        *,
        severity: str = "info",
        data: dict[str, Any] | None = None,
    ) -> None:
        """An action or warning: ``event`` is a stable kebab-case name (e.g. ``skip``, ``rollback``)."""
        if not self.enabled:
            return
        line: dict[str, Any] = {
            "step": step,
            "event": event,
            "severity": severity,
            "message": message,
        }
        if data:
            line["data"] = data
        line["wall_time"] = round(time.time() - self._t0, 4)
        self._write(EVENTS_FILE, line)

    def flush(self) -> None:
        for f in self._files.values():
            f.flush()
        if self._tb is not None:
            self._tb.flush()

    def close(self) -> None:
        for f in self._files.values():
            f.close()
        self._files.clear()
        if self._tb is not None:
            self._tb.close()
            self._tb = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------
    def _write(self, name: str, obj: dict[str, Any]) -> None:
        f = self._files[name]
        f.write(json.dumps(obj, allow_nan=False, default=_json_default) + "\n")
        f.flush()

    def _tb_scalars(self, record: StepRecord, tags: dict[str, str]) -> None:
        if self._tb is None:
            return
        for attr, tag in tags.items():
            v = getattr(record, attr)
            if v is not None:
                self._tb.add_scalar(tag, float(v), record.step)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    raise TypeError(f"run log: cannot serialise {type(o).__name__}")


def _open_tensorboard(path: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # tensorboard is an extra
        log.debug("tensorboard not installed; run log written as JSONL only")
        return None
    return SummaryWriter(log_dir=str(path))


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and ``os.replace``."""
    p = Path(path)
    tmp = p.with_name(f".{p.name}.tmp{os.getpid()}")
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, p)
