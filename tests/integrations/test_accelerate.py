"""The documented accelerate pattern on a real run: an MLP on digits with one NaN row, GA=2.

The loop is accelerate's own (backward, step, zero_grad); the guard comes in with two lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

accelerate = pytest.importorskip("accelerate")

from stabletrain.guard.config import GuardConfig  # noqa: E402
from stabletrain.integrations.accelerate import guard_for_accelerate  # noqa: E402
from stabletrain.records import StepRecord  # noqa: E402

pytestmark = pytest.mark.hf

BATCH, ACCUM, BAD_ROW = 16, 2, 40  # row 40 is in micro-batch 2 -> optimizer step 1


def _data() -> torch.utils.data.TensorDataset:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    xt = torch.tensor(x[:256], dtype=torch.float32) / 16.0
    xt[BAD_ROW] = float("nan")
    return torch.utils.data.TensorDataset(xt, torch.tensor(y[:256]))


def _run(tmp_path: Path, *, guarded: bool) -> tuple[torch.nn.Module, Path]:
    accelerator = accelerate.Accelerator(
        gradient_accumulation_steps=ACCUM, cpu=True, log_with="tensorboard", project_dir=tmp_path
    )
    accelerator.init_trackers("tb")  # the user's own logger
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0 / (1 + s))
    loader = torch.utils.data.DataLoader(_data(), batch_size=BATCH, shuffle=False)
    run_dir = tmp_path / "stabletrain"
    if guarded:
        guard = guard_for_accelerate(
            accelerator, model, optimizer, scheduler=scheduler,
            config=GuardConfig(max_norm=0.1), run_dir=run_dir,
        )  # fmt: skip
        model, opt, loader = accelerator.prepare(model, guard.optimizer, loader)
    else:
        model, opt, loader = accelerator.prepare(model, optimizer, loader)
    for x, y in loader:
        with accelerator.accumulate(model):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad()
        if not guarded and accelerator.sync_gradients:
            scheduler.step()
    if guarded:
        guard.close()
    accelerator.end_training()
    return model, run_dir


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def test_without_guard_nan_row_poisons_weights(tmp_path: Path) -> None:
    model, _ = _run(tmp_path, guarded=False)
    assert not _finite(model)


def test_guarded_optimizer_skips_once_per_window(tmp_path: Path) -> None:
    model, run_dir = _run(tmp_path, guarded=True)
    assert _finite(model)
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    records = [StepRecord.from_json(json.loads(x)) for x in lines]
    assert [r.step for r in records] == list(range(256 // (BATCH * ACCUM)))  # one per window
    assert [r.step for r in records if r.skipped] == [BAD_ROW // (BATCH * ACCUM)]
    lrs = [r.lr for r in records]
    assert lrs[1] == lrs[2]  # the schedule waited for the skipped step
    assert any(r.clip_coef is not None and r.clip_coef < 1.0 for r in records)
    assert all(r.loss is not None and 0 < r.loss < 5 for r in records if not r.skipped)
    # the loss came through accelerator.backward, counted once: the window's mean (~ln 10)
    assert records[0].loss is not None and 2.0 < records[0].loss < 2.6
    # the guard's metrics reached the user's tracker through accelerator.log, step by step
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = EventAccumulator(str(next((tmp_path / "tb").rglob("events.out.tfevents.*")).parent))
    tb.Reload()
    skipped = {e.step: e.value for e in tb.Scalars("stabletrain/skipped")}
    assert skipped == {r.step: float(bool(r.skipped)) for r in records}
    assert {"stabletrain/grad_norm", "stabletrain/clip_rate", "stabletrain/skips",
            "stabletrain/rollbacks", "stabletrain/lr"} <= set(tb.Tags()["scalars"])  # fmt: skip
