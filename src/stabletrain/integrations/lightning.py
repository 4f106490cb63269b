"""The guard inside Lightning: ``lightning.pytorch.Trainer(callbacks=[StableTrainCallback()])``.

Where Lightning 2.x steps with automatic optimization (per optimizer step)::

    precision.optimizer_step(optimizer, closure)
      optimizer.step(closure)          # GuardedOptimizer.step(): runs the closure first ...
        closure()                      #   training_step, backward (DDP all-reduces grads here),
                                       #   scaler.unscale_, on_before_optimizer_step, (no) clipping
        guard checks + clip + step     # ... then norm -> checks -> clip -> inner step or skip
    update_lr_schedulers("step")
    on_train_batch_end                 # we write the run-log record here
    ... validation loop → on_validation_end   # callback_metrics[monitor] → guard.observe_eval

The callback replaces each ``trainer.strategy.optimizers`` entry by the guard's
``GuardedOptimizer`` at ``on_fit_start`` (after the strategy created and wrapped them, before a
checkpoint's optimizer state is restored, which goes through the proxy), and takes
``Trainer(gradient_clip_val=...)`` as the guard's ``max_norm`` so gradients are clipped once.

Rank consistency under ``strategy="ddp"``: a NaN batch on one rank makes the all-reduced gradient
NaN on every rank, and the guard reduces its norm/flags across ranks when ``torch.distributed`` is
initialised, so all ranks skip the same step. The run log is written by global rank zero only.

Limits: Lightning steps ``interval="step"`` schedulers after a skipped step as it does after an
AMP-overflow skip (no hook sits between the two); manual optimization (``automatic_optimization
= False``) calls ``optimizer.step()`` itself and is guarded the same way, but its loss is not logged.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from pathlib import Path
from typing import Any

import torch

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.guard.metrics import GuardMetrics
from stabletrain.guard.ranklog import once_per_job
from stabletrain.integrations import immediate, require
from stabletrain.logs.runlog import RunLog

require("lightning", "lightning")
from lightning.pytorch import Callback  # noqa: E402

log = once_per_job(logging.getLogger(__name__))

__all__ = ["StableTrainCallback"]


class StableTrainCallback(Callback):  # type: ignore[misc]
    """Guard every optimizer step of a Lightning ``Trainer`` and write a stabletrain run log."""

    def __init__(
        self,
        config: GuardConfig | None = None,
        run_dir: str | None = None,
        *,
        monitor: str = "val_loss",
        mode: str = "min",
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        #: the logged validation metric passed to ``guard.observe_eval`` (and how it improves)
        self.monitor, self.mode = monitor, mode
        self.guards: list[Guard] = []
        self.run_log: RunLog | None = None
        self._saved_clip: float | None = None
        self._losses: list[float] = []
        self._logged: object = None  # the last outcome written (identity: rollbacks keep the count)
        #: the ``stabletrain/...`` metrics logged each step (``pl_module.log_dict``)
        self.metrics = GuardMetrics()
        self.skipped_steps: list[int] = []
        """Steps this rank skipped (identical on every rank: the decision is global)."""

    @property
    def guard(self) -> Guard:
        """The guard of the (first) optimizer."""
        return self.guards[0]

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        clip = trainer.gradient_clip_val
        self._saved_clip = clip
        config = immediate(self.config, "Lightning")
        if clip and trainer.gradient_clip_algorithm in (None, "norm"):  # None means "norm"
            config = dataclasses.replace(config, max_norm=float(clip))
            trainer.gradient_clip_val = None  # the guard clips, once, with the global norm
        # beside the Lightning logger's own files, in its versioned dir (lightning_logs/
        # version_N): one run log per run, never overwritten by the next (trainer.log_dir is
        # broadcast from rank 0, so every rank calls it)
        log_dir = trainer.log_dir or trainer.default_root_dir
        run_dir = Path(self.run_dir or Path(log_dir) / "stabletrain")
        self.run_log = RunLog(
            run_dir,
            enabled=trainer.is_global_zero,
            resume=trainer.global_step > 0 or trainer.ckpt_path is not None,
            meta={"source": "lightning", "world_size": trainer.world_size},
        )
        self.guards = [
            Guard(pl_module, opt, config=config, run_log=self.run_log)
            for opt in trainer.strategy.optimizers
        ]
        trainer.strategy.optimizers = [g.optimizer for g in self.guards]

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        # a resumed run: continue the step numbering of the checkpoint
        for g in self.guards:
            g.step_count = trainer.global_step

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if isinstance(loss, torch.Tensor):
            self._losses.append(float(loss.detach()))
        guard = self.guard
        outcome = guard.last_outcome
        if outcome is None or outcome is self._logged:
            return  # inside a gradient-accumulation window: no optimizer step yet
        self._logged = outcome
        if outcome.skipped:
            self.skipped_steps.append(outcome.step)
        record = outcome.to_record(epoch=trainer.current_epoch)
        if self._losses:
            record.loss = math.fsum(self._losses) / len(self._losses)
        self._losses = []
        if self.run_log is not None:
            self.run_log.log_step(record)
        # the guard's metrics in the user's Lightning logger (metrics.csv / TensorBoard / W&B),
        # named as in every adapter; identical on every rank, so no sync_dist is needed
        pl_module.log_dict(self.metrics.update(guard, outcome), on_step=True, on_epoch=False)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        """The monitored metric goes to ``guard.observe_eval`` (not during the sanity check)."""
        if not self.guards or trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            return  # not logged this validation (log it with self.log(monitor, ...))
        for g in self.guards:
            g.observe_eval(float(value), mode=self.mode)

    def on_exception(self, trainer: Any, pl_module: Any, exception: BaseException) -> None:
        # e.g. TrainingAborted: the run log must still be closed (and flushed) for the doctor
        if self.run_log is not None:
            self.run_log.close()

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.guards:
            trainer.strategy.optimizers = [g.inner_optimizer for g in self.guards]
        if self._saved_clip is not None:
            trainer.gradient_clip_val = self._saved_clip
        if self.run_log is not None:
            self.run_log.close()
