"""Shared fixtures: deterministic, single-threaded torch; paths to shared real logs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
#: ../shared/real-logs beside the checkout (CI clones with shared/ beside it).
REAL_LOGS = REPO.parent / "shared" / "real-logs"


@pytest.fixture(autouse=True)
def _deterministic_torch() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture
def real_logs() -> Path:
    if not REAL_LOGS.is_dir():
        pytest.skip(f"shared real logs not found at {REAL_LOGS}")
    return REAL_LOGS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available() and os.environ.get("STABLETRAIN_NO_GPU") is None:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
