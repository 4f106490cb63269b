"""Shared helpers for the trainer tests: tiny in-process runs through the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

from stabletrain.cli import main

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "configs"


def train(
    config: str, run_dir: Path, *overrides: str, resume: bool = False, overwrite: bool = False
) -> int:
    argv = ["train", str(CONFIGS / config), "--run-dir", str(run_dir), "--no-progress"]
    argv += [a for o in ("run.tensorboard=false", *overrides) for a in ("--set", o)]
    return main(argv + ["--resume"] * resume + ["--overwrite"] * overwrite)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def losses_by_step(run_dir: Path) -> dict[int, float]:
    """The latest logged loss per step (a resumed run re-logs the steps after its checkpoint)."""
    return {r["step"]: r["loss"] for r in read_jsonl(run_dir / "steps.jsonl")}
