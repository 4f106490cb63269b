"""Fixtures for detector tests: ``scenarios`` = the scripted runs in scenarios.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest


def _load() -> ModuleType:
    # --import-mode=importlib puts no test dir on sys.path: load the helper module by path.
    spec = importlib.util.spec_from_file_location(
        "detector_scenarios", Path(__file__).with_name("scenarios.py")
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


_SCENARIOS = _load()


@pytest.fixture
def scenarios() -> ModuleType:
    return _SCENARIOS


CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _reference_run(config: str, run_dir: Path, *overrides: str) -> Path:
    """Train ``configs/<config>`` with the reference trainer into ``run_dir`` (no TensorBoard,
    no progress bar; ``overrides`` as ``--set`` values) and return the run dir."""
    from stabletrain.cli import main

    argv = ["train", str(CONFIGS / config), "--run-dir", str(run_dir), "--no-progress"]
    for o in ("run.tensorboard=false", *overrides):
        argv += ["--set", o]
    main(argv)
    return run_dir


@pytest.fixture(scope="session")
def reference_run() -> Callable[..., Path]:
    """``reference_run(config, run_dir, *overrides) -> run_dir``: a real reference-trainer run."""
    return _reference_run
