"""The guard in an ``accelerate`` loop: two lines, as for the other frameworks.

The pattern (docs/integrations.md, tested in tests/integrations/test_accelerate.py)::

    accelerator = Accelerator(gradient_accumulation_steps=2)
    guard = guard_for_accelerate(accelerator, model, optimizer, scheduler=scheduler,
                                 run_dir="runs/x/stabletrain")
    model, opt, loader = accelerator.prepare(model, guard.optimizer, loader)
    for batch in loader:                      # the loop stays as accelerate documents it
        with accelerator.accumulate(model):
            loss = loss_fn(model, batch)
            accelerator.backward(loss)        # also hands the loss to the guard
            opt.step()                        # at sync steps: norm -> checks -> clip -> step or skip
            opt.zero_grad()

What the adapter takes over from the loop: the loss reaches the guard through
``accelerator.backward`` (wrapped on this accelerator object only; don't also call
``guard.record_loss``); the scheduler passed here is stepped by the guard after each applied
update (a skipped step holds the schedule), so don't prepare it or step it yourself; the guard
writes every step and event to ``run_dir`` (main process only); guard metrics go to
``accelerator.log`` (``stabletrain/...``) when trackers are configured (``log_with=...``).

Accelerate's ``AcceleratedOptimizer`` calls the wrapper's ``step()`` only at the end of an
accumulation window; with fp16 its ``GradScaler`` unscales first (and skips on inf by itself, the
guard not called and the schedule held), so the guard is built without a scaler and sees unscaled
gradients. Do not call ``accelerator.clip_grad_norm_``: the guard clips with ``config.max_norm``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import torch

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.guard.metrics import GuardMetrics
from stabletrain.guard.outcome import StepOutcome
from stabletrain.integrations import immediate, require

require("accelerate", "hf")

__all__ = ["guard_for_accelerate", "log_step"]


def guard_for_accelerate(
    accelerator: Any,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    *,
    scheduler: Any = None,
    config: GuardConfig | None = None,
    run_dir: str | Path | None = None,
) -> Guard:
    """A Guard for ``model``/``optimizer`` in ``accelerator``'s loop. Call it before
    ``accelerator.prepare`` and prepare ``guard.optimizer`` in place of ``optimizer`` (and not
    ``scheduler``: the guard steps it after applied updates)."""
    guard = Guard(model, optimizer, config=immediate(config, "Accelerate"), run_dir=run_dir)
    metrics = GuardMetrics()

    def after_step(outcome: StepOutcome) -> None:
        if scheduler is not None and outcome.applied:
            scheduler.step()  # a skipped update holds the schedule
        if accelerator.trackers:  # the user's trackers (log_with=...), main process only
            accelerator.log(metrics.update(guard, outcome), step=outcome.step)

    guard.optimizer.after_step = after_step
    backward = accelerator.backward

    @functools.wraps(backward)
    def backward_and_record(loss: torch.Tensor, **kwargs: Any) -> Any:
        # the window's loss, as accelerate scales it (DeepSpeed divides in its own backward)
        guard.record_loss(loss.detach() / max(1, accelerator.gradient_accumulation_steps))
        return backward(loss, **kwargs)

    accelerator.backward = backward_and_record
    return guard


def log_step(guard: Guard, *, epoch: float | None = None) -> None:
    """Write the guard's last outcome to its run log when the guard does not write its steps
    itself (it does with ``run_dir``: then this does nothing)."""
    if guard.logs_steps:
        return
    if guard.last_outcome is not None and guard.run_log is not None:
        guard.run_log.log_step(guard.last_outcome.to_record(epoch=epoch))
