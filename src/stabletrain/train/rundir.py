"""Whether a run may write into its run directory: never over an earlier run by mistake.

A run dir that already holds a run is refused unless the user says what they want (issue 12:
``train A --run-dir R`` then ``train B --run-dir R`` truncated A's log and left A's checkpoint
beside B's config, and a later ``--resume`` loaded A's weights under B's config):

- ``--resume`` continues it, and only with the config it was trained with: the saved
  ``config.yaml`` is compared with the new one and every differing key is named (where it runs,
  how often it logs and checkpoints, and how many epochs/steps it runs may differ);
- ``--overwrite`` replaces it: the files a stabletrain run writes are removed first, nothing else
  (HF's ``--overwrite_output_dir`` is the precedent);
- otherwise: a ConfigError naming the dir and both options.

The check runs on every rank before the process group forms (a rendezvous no rank passes before
all have checked), so rank 0's first write cannot make another rank refuse.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from stabletrain.errors import ConfigError
from stabletrain.logs.runlog import CONFIG_FILE, EVALS_FILE, EVENTS_FILE, META_FILE, STEPS_FILE
from stabletrain.train.checkpoint import CHECKPOINT_FILE
from stabletrain.train.config import TrainConfig, load_config
from stabletrain.train.plot import PLOT_FILE
from stabletrain.train.summary import SUMMARY_FILE

__all__ = ["RUN_FILES", "config_differences", "prepare_run_dir"]

#: What a stabletrain run writes into its run dir (``--overwrite`` removes exactly these).
RUN_FILES = (
    STEPS_FILE, EVALS_FILE, EVENTS_FILE, META_FILE, CONFIG_FILE, CHECKPOINT_FILE, SUMMARY_FILE,
    PLOT_FILE,
)  # fmt: skip
_TB_DIR = "tb"
#: Settings that may change on ``--resume``: where it runs, how often it logs and checkpoints,
#: and how long it goes on (training a finished run for more epochs is a resume).
RESUMABLE_KEYS = frozenset(
    {
        "run.dir", "run.device", "run.tensorboard", "run.log_every", "run.checkpoint_every",
        "train.epochs", "train.max_steps",
    }
)  # fmt: skip


def prepare_run_dir(cfg: TrainConfig, run_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """Refuse to reuse ``run_dir`` by mistake; clear it on ``overwrite``; check ``resume``."""
    if resume and overwrite:
        raise ConfigError("--resume continues a run and --overwrite replaces it: pass one")
    if resume:
        _check_resume(cfg, run_dir)
        return
    previous = _run_files(run_dir)
    if not previous:
        return
    if not overwrite:
        shown = ", ".join(p.name for p in previous[:4]) + (", ..." if len(previous) > 4 else "")
        raise ConfigError(
            f"run dir {run_dir} already holds a run ({shown}): pass --resume to continue it, "
            "--overwrite to replace it, or choose another --run-dir"
        )
    if os.environ.get("RANK", "0") == "0":  # one rank removes; the others only check
        for p in previous:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)


def config_differences(saved: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``key (saved X, now Y)`` for every dotted key whose value differs, RESUMABLE_KEYS aside."""
    a, b = _flatten(saved), _flatten(now)
    out = []
    for key in sorted(a.keys() | b.keys()):
        if key in RESUMABLE_KEYS or key.startswith("run.dir"):
            continue
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            out.append(f"{key} (saved {a.get(key, '<unset>')!r}, now {b.get(key, '<unset>')!r})")
    return out


def _check_resume(cfg: TrainConfig, run_dir: Path) -> None:
    saved_path = run_dir / CONFIG_FILE
    if not saved_path.exists():
        return  # the checkpoint check that follows says what is missing
    try:
        saved = load_config(saved_path)
    except ConfigError as e:
        raise ConfigError(f"--resume: the saved config cannot be read ({e})") from None
    diffs = config_differences(saved.model_dump(mode="json"), cfg.model_dump(mode="json"))
    if diffs:
        shown = "; ".join(diffs[:8]) + (f"; and {len(diffs) - 8} more" if len(diffs) > 8 else "")
        raise ConfigError(
            f"--resume: {run_dir} was trained with a different config: {shown}. Resume with the "
            f"saved settings ({saved_path}) or start a new --run-dir"
        )


def _run_files(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        return []
    names = set(RUN_FILES) | {_TB_DIR}
    found = [run_dir / n for n in sorted(names) if (run_dir / n).exists()]
    found += sorted(run_dir.glob(f".{CHECKPOINT_FILE}.tmp*"))  # left by a crash mid-write
    return found


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{key}."))
        else:
            out[key] = v
    return out
