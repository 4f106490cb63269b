"""Fixtures for detector tests: ``scenarios`` = the scripted runs in scenarios.py."""

from __future__ import annotations

import importlib.util
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
