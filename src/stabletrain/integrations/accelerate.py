"""The guard in an ``accelerate`` loop: prepare the guard's optimizer wrapper instead of yours.

The pattern (docs/integrations.md, tested in tests/integrations/test_accelerate.py)::

    accelerator = Accelerator(gradient_accumulation_steps=2)
    guard = guard_for_accelerate(accelerator, model, optimizer, run_dir="runs/x/stabletrain")
    model, opt, loader = accelerator.prepare(model, guard.optimizer, loader)
    for batch in loader:
        with accelerator.accumulate(model):
            loss = loss_fn(model, batch)
            guard.record_loss(loss.detach() / accelerator.gradient_accumulation_steps)
            accelerator.backward(loss)
            opt.step()           # at sync steps only: norm -> checks -> clip -> inner step or skip
            opt.zero_grad()
        if accelerator.sync_gradients:
            log_step(guard)      # guard.last_outcome.to_record() -> guard.run_log
            if not guard.optimizer.step_was_skipped:
                scheduler.step()

Accelerate's ``AcceleratedOptimizer`` calls the wrapper's ``step()`` only at the end of an
accumulation window; with fp16 its ``GradScaler`` unscales first (and skips on inf by itself), so
the guard is built without a scaler and sees unscaled gradients. Do not call
``accelerator.clip_grad_norm_``: the guard clips with ``config.max_norm``. Do not prepare the
scheduler either: ``AcceleratedScheduler`` only knows about GradScaler skips, not the guard's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.integrations import immediate, require
from stabletrain.logs.runlog import RunLog

__all__ = ["guard_for_accelerate", "log_step"]


def guard_for_accelerate(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    config: GuardConfig | None = None,
    run_dir: str | Path | None = None,
) -> Guard:
    """A Guard for ``model``/``optimizer`` whose run log (if ``run_dir``) is written by the main process only.

    Call it before ``accelerator.prepare`` and prepare ``guard.optimizer`` in place of ``optimizer``.
    """
    require("accelerate", "hf")
    run_log = None
    if run_dir is not None:
        run_log = RunLog(
            run_dir, enabled=bool(accelerator.is_main_process), meta={"source": "accelerate"}
        )
    return Guard(model, optimizer, config=immediate(config, "Accelerate"), run_log=run_log)


def log_step(guard: Guard, *, epoch: float | None = None) -> None:
    """Write the guard's last outcome to its run log (the guard writes events, the loop writes steps)."""
    if guard.last_outcome is not None and guard.run_log is not None:
        guard.run_log.log_step(guard.last_outcome.to_record(epoch=epoch))
