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


#: what a CPU Lightning Trainer on a tiny loader warns about (not the code under test)
LIGHTNING_NOISE = (
    "ignore:.*does not have many workers.*",
    "ignore:.*log_every_n_steps.*",
    "ignore:.*GPU available but not used.*",
    "ignore:.*TPU available but not used.*",
    "ignore:.*LeafSpec.*is deprecated:FutureWarning",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "lightning" in item.keywords:
            for noise in LIGHTNING_NOISE:
                item.add_marker(pytest.mark.filterwarnings(noise))
    if torch.cuda.is_available() and os.environ.get("STABLETRAIN_NO_GPU") is None:
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)
