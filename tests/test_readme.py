"""The README's examples run: the guard snippet executes on a real tiny model with a NaN batch."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from stabletrain.cli import build_parser

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()


def test_guard_snippet_runs_and_skips_a_nan_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # the snippet writes its run log under runs/
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", README, re.S) if "guard.step" in b)
    model = torch.nn.Linear(8, 2)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
    x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
    x[20] = float("nan")  # the pipeline hands over one corrupted sample
    loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]

    def compute_loss(
        model: torch.nn.Module, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> torch.Tensor:
        return F.cross_entropy(model(batch[0]), batch[1])

    ns = {
        "model": model,
        "optimizer": optimizer,
        "scheduler": scheduler,
        "loader": loader,
        "compute_loss": compute_loss,
    }
    exec(snippet, ns)
    guard = ns["guard"]
    assert guard.last_outcome is not None
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert guard.total_skipped == 1
    steps = (tmp_path / "runs" / "my-run" / "steps.jsonl").read_text().splitlines()
    assert len(steps) == 4  # the doctor has the hand loop's steps


def test_cli_commands_in_readme_parse() -> None:
    parser = build_parser()
    for line in re.findall(r"^stabletrain (?:doctor|lint|train) .*$", README, re.M):
        argv = line.split("#")[0].split()[1:]
        parser.parse_args(argv)
