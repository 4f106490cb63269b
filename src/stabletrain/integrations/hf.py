"""The guard inside ``transformers.Trainer``: ``Trainer(..., callbacks=[StableTrainCallback()])``.

Where the Trainer (transformers 5.x) steps, per optimizer step (after the accumulation window)::

    loss = training_step(...)                     # backward; NaN only hidden from the log by
                                                  # logging_nan_inf_filter, never from the weights
    grad_norm = accelerator.clip_grad_norm_(...)  # unscales fp16 grads; we set max_grad_norm=0,
                                                  # so HF only measures (max_norm=inf) and never clips
    on_pre_optimizer_step
    optimizer.step()                              # AcceleratedOptimizer -> GuardedOptimizer.step():
                                                  # norm -> checks -> clip -> inner step or skip
    on_optimizer_step                             # we mark the AcceleratedOptimizer as skipped ...
    if not accelerator.optimizer_step_was_skipped:
        lr_scheduler.step()                       # ... so the schedule does not advance on a skip
    evaluate → on_evaluate                        # the eval metric → guard.observe_eval

The callback swaps the torch optimizer inside accelerate's ``AcceleratedOptimizer`` for the guard's
``GuardedOptimizer`` at ``on_train_begin`` and takes ``args.max_grad_norm`` as the guard's
``max_norm`` (restored at ``on_train_end``), so gradients are clipped once, by the guard. Records go
to a stabletrain run log (default ``<output_dir>/stabletrain``) on the world process zero only.

Limits: the loss reaches the guard (``guard.record_loss``, for spike detection and the run log)
through a forward hook on the model reading ``outputs.loss``, so a custom ``compute_loss`` that
does not use ``outputs.loss`` leaves the guard without a loss (grad checks still work). DeepSpeed replaces
the optimizer with its engine: the callback then refuses with a clear error.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Any

import torch

from stabletrain.errors import ConfigError
from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard, StepOutcome
from stabletrain.guard.metrics import GuardMetrics
from stabletrain.guard.ranklog import once_per_job
from stabletrain.integrations import immediate, require
from stabletrain.integrations.accelerated_optimizer import mark_skipped, swap_inner
from stabletrain.logs.runlog import RunLog
from stabletrain.records import StepRecord

require("transformers", "hf")
from transformers import TrainerCallback  # noqa: E402

log = once_per_job(logging.getLogger(__name__))

__all__ = ["StableTrainCallback"]


class StableTrainCallback(TrainerCallback):  # type: ignore[misc]
    """Guard every optimizer step of a ``transformers.Trainer`` and write a stabletrain run log."""

    def __init__(self, config: GuardConfig | None = None, run_dir: str | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.guard: Guard | None = None
        self.run_log: RunLog | None = None
        self._accelerated: Any = None
        self._saved_max_grad_norm: float | None = None
        self._hook: Any = None
        self._accum = 1
        self._before: StepOutcome | None = None
        self._pending: StepRecord | None = None
        #: the ``stabletrain/...`` metrics, added to HF's ``logs`` at each ``on_log``
        self.metrics = GuardMetrics()
        self._window: dict[str, float] = {}

    # -- lifecycle --------------------------------------------------------------------------------
    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        model: torch.nn.Module = kw["model"]
        accelerated = kw.get("optimizer")
        inner = getattr(accelerated, "optimizer", None)
        if not isinstance(inner, torch.optim.Optimizer):
            raise ConfigError(
                "StableTrainCallback: the Trainer's optimizer is not an accelerate-wrapped torch "
                f"optimizer (got {type(accelerated).__name__}); DeepSpeed and SageMaker MP are not "
                "supported — run `stabletrain lint ds_config.json` instead (docs/integrations.md)"
            )
        # HF clips before optimizer.step(); the guard must see the raw norm and clip once itself
        self._saved_max_grad_norm = args.max_grad_norm
        max_norm = args.max_grad_norm if args.max_grad_norm and args.max_grad_norm > 0 else None
        config = dataclasses.replace(immediate(self.config, "HF Trainer"), max_norm=max_norm)
        args.max_grad_norm = 0.0
        run_dir = Path(self.run_dir or Path(args.output_dir) / "stabletrain")
        self.run_log = RunLog(
            run_dir,
            enabled=state.is_world_process_zero,
            resume=state.global_step > 0,
            meta={"source": "transformers.Trainer"},
        )
        self.guard = Guard(model, inner, config=config, run_log=self.run_log)
        self.guard.step_count = state.global_step  # resumed runs keep HF's step numbering
        self._accelerated = accelerated
        self._accum = max(1, int(args.gradient_accumulation_steps))
        swap_inner(accelerated, self.guard.optimizer)
        self._hook = model.register_forward_hook(self._capture_loss, with_kwargs=True)

    def on_pre_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        assert self.guard is not None  # set in on_train_begin
        self.guard.step_count = state.global_step  # HF's numbering, also after a guard rollback
        self._before = self.guard.last_outcome

    def on_optimizer_step(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        guard, acc = self.guard, self._accelerated
        assert guard is not None and acc is not None  # set in on_train_begin
        outcome = guard.last_outcome
        if outcome is None or outcome is self._before:
            # fp16: the GradScaler found inf and never called the guard; HF already skips
            outcome = StepOutcome(
                step=state.global_step, applied=False, action="skip_nonfinite_grad"
            )
        mark_skipped(acc, outcome.skipped)  # read by accelerator.optimizer_step_was_skipped
        self._flush()
        self._pending = outcome.to_record(epoch=state.epoch)
        now = self.metrics.update(guard, outcome)
        for key in ("stabletrain/skipped", "stabletrain/clipped"):  # counted over the log window
            now[key] += self._window.get(key, 0.0)
        self._window = now

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kw: Any
    ) -> None:
        if not logs:
            return
        if self._window and not any(k.startswith("eval_") for k in logs):
            # the guard's metrics in the user's loggers: callbacks after this one (TensorBoard,
            # W&B, MLflow ... listed after it) and trainer_state.json's log history
            logs.update(self._window)
            history = state.log_history
            if history and history[-1].get("step") == state.global_step:
                history[-1].update(self._window)
            self._window = {}
        if self.run_log is None:
            return
        numbers = {
            k: float(v)
            for k, v in logs.items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if any(k.startswith("eval_") for k in numbers):
            self.run_log.log_eval(
                StepRecord(
                    step=state.global_step,
                    epoch=state.epoch,
                    eval_loss=numbers.pop("eval_loss", None),
                    eval_accuracy=numbers.pop("eval_accuracy", None),
                    metrics={k: v for k, v in numbers.items() if k != "epoch"},
                )
            )
        elif self._pending is not None:
            # HF's own averaged values ride along (e.g. its NaN-filtered "loss")
            self._pending.metrics.update(
                {f"hf_{k}": v for k, v in numbers.items() if k != "epoch" and "/" not in k}
            )

    def on_evaluate(
        self, args: Any, state: Any, control: Any, metrics: dict[str, Any] | None = None,
        **kw: Any,
    ) -> None:  # fmt: skip
        """The eval metric HF selects the best model by (``metric_for_best_model``, default
        the eval loss) goes to ``guard.observe_eval``: worsening rolls back, a plateau lowers
        the LR."""
        if self.guard is None or not metrics:
            return
        if self._hook is None:
            return  # an evaluate() after training: judge nothing, change no weights
        key = args.metric_for_best_model or "loss"
        key = key if key.startswith("eval_") else f"eval_{key}"
        value = metrics.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            self.guard.observe_eval(float(value), mode="max" if args.greater_is_better else "min")

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self._flush()
        if self._hook is not None:
            self._hook.remove()
            self._hook = None
        if self._accelerated is not None and self.guard is not None:
            swap_inner(self._accelerated, self.guard.inner_optimizer)
        if self._saved_max_grad_norm is not None:
            args.max_grad_norm = self._saved_max_grad_norm
        if self.run_log is not None:
            self.run_log.close()
            self.run_log = None  # an evaluate() after training logs nothing here

    # -- internals --------------------------------------------------------------------------------
    def _capture_loss(
        self, module: torch.nn.Module, args: Any, kwargs: dict[str, Any], output: Any
    ) -> None:
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if self.guard is None or not (module.training and isinstance(loss, torch.Tensor)):
            return
        if not torch.is_grad_enabled():
            return
        # the guard sums micro-batch losses; with num_items_in_batch the model already divided
        # by the whole window's token count, otherwise HF divides by the accumulation steps
        normalised = kwargs.get("num_items_in_batch") is not None
        self.guard.record_loss(loss.detach() if normalised else loss.detach() / self._accum)

    def _flush(self) -> None:
        if self._pending is not None and self.run_log is not None:
            self.run_log.log_step(self._pending)
        self._pending = None
