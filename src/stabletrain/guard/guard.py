"""The guard: the one place where backward → unscale → norm → checks → clip → step happens.

MINIMAL VERSION (foundation issue): non-finite loss/grad skip, fixed max-norm clipping, consecutive
-bad-step abort, init check, run-log records. The guard issue grows this (spikes, rollback, LR
back-off, adaptive clipping, AMP policy, on-device decisions) behind the same API.

Hook timing, for a hand-written loop::

    for batch in guard.batches(loader):
        loss = compute_loss(model, batch)
        outcome = guard.step(loss)      # == guard.backward(loss); guard.optimizer_step()

with gradient accumulation::

    for i, batch in enumerate(guard.batches(loader)):
        guard.backward(compute_loss(model, batch) / accum)
        if (i + 1) % accum == 0:
            guard.optimizer_step()

Frameworks that own backward and the scaler (HF, Lightning, Accelerate) use ``guard.optimizer``,
an optimizer wrapper whose ``step()`` runs the checks.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from stabletrain import measure
from stabletrain.errors import TrainingAborted
from stabletrain.guard.config import GuardConfig
from stabletrain.logs.runlog import RunLog
from stabletrain.records import Finding, StepRecord

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(slots=True)
class StepOutcome:
    """What the guard did on one optimizer step."""

    step: int
    applied: bool
    action: str | None = None
    loss: float | None = None
    grad_norm: float | None = None
    clip_coef: float | None = None
    lr: float | None = None
    loss_scale: float | None = None

    def to_record(self, epoch: float | None = None) -> StepRecord:
        return StepRecord(
            step=self.step,
            epoch=epoch,
            loss=self.loss,
            grad_norm=self.grad_norm,
            clip_coef=self.clip_coef,
            lr=self.lr,
            loss_scale=self.loss_scale,
            skipped=not self.applied,
            action=self.action,
        )


class Guard:
    """Protects every optimizer step of ``model`` trained by ``optimizer``."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
        config: GuardConfig | None = None,
        *,
        run_log: RunLog | None = None,
    ) -> None:
        self.model = model
        self.inner_optimizer = optimizer
        self.scaler = scaler
        self.scheduler = scheduler
        self.config = config or GuardConfig()
        self.run_log = run_log
        self.step_count = 0
        self.consecutive_bad = 0
        self.total_skipped = 0
        self.findings: list[Finding] = []
        self.last_outcome: StepOutcome | None = None
        self._pending_bad_loss: float | None = None
        self._checked = False
        self._wrapper: GuardedOptimizer | None = None

    # -- public API -----------------------------------------------------------------------------
    @property
    def optimizer(self) -> GuardedOptimizer:
        """An optimizer wrapper whose ``step()`` runs the guard's checks (for HF/Lightning/Accelerate)."""
        if self._wrapper is None:
            self._wrapper = GuardedOptimizer(self)
        return self._wrapper

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield the batches of ``loader`` (rollback-requested skips are dropped here)."""
        yield from loader

    def check_model(self) -> list[Finding]:
        """Verify every parameter and buffer is finite; raise TrainingAborted if not."""
        bad = [
            name
            for name, t in [*self.model.named_parameters(), *self.model.named_buffers()]
            if t.is_floating_point() and not bool(torch.isfinite(t).all())  # host sync: once
        ]
        self._checked = True
        if bad:
            finding = Finding(
                id="nonfinite-weights",
                severity="error",
                title=f"{len(bad)} parameter/buffer tensors hold NaN/inf before training",
                explanation="Non-finite weights make every loss NaN. Names: " + ", ".join(bad[:10]),
                source="guard",
            )
            self.findings.append(finding)
            raise TrainingAborted(
                f"model has non-finite values in {', '.join(bad[:5])}: fix the initialisation "
                "or the checkpoint before training",
                [finding],
                step=self.step_count,
            )
        return []

    def backward(self, loss: torch.Tensor) -> bool:
        """Backward of ``loss`` (scaled when a GradScaler is used). False (and no backward) if non-finite."""
        if self.config.check_init and not self._checked:
            self.check_model()
        # host sync: one scalar read per micro-batch; the guard issue moves this on device
        if self.config.enabled and self.config.skip_nonfinite and not bool(torch.isfinite(loss.detach())):
            self._pending_bad_loss = float(loss.detach())
            return False
        if self._loss_value is None:
            self._loss_value = 0.0
        self._loss_value += float(loss.detach())
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        return True

    _loss_value: float | None = None

    def optimizer_step(self) -> StepOutcome:
        """Unscale, measure, decide, clip, step (or skip), advance the scheduler, zero grads."""
        outcome = self._check_and_step(call_inner=True, step_scheduler=True)
        self.inner_optimizer.zero_grad(set_to_none=True)
        return outcome

    def step(self, loss: torch.Tensor) -> StepOutcome:
        """The whole step for one batch: ``backward(loss)`` then ``optimizer_step()``."""
        self.backward(loss)
        return self.optimizer_step()

    # -- the step -------------------------------------------------------------------------------
    def _check_and_step(self, *, call_inner: bool, step_scheduler: bool) -> StepOutcome:
        opt = self.inner_optimizer
        params = [p for g in opt.param_groups for p in g["params"]]
        if self.scaler is not None and self.scaler.is_enabled():
            self.scaler.unscale_(opt)
        grads = measure.grads_of(params)
        norm_t = measure.total_grad_norm(grads)
        norm = float(norm_t)  # host sync: the minimal guard decides on the host
        lr = float(opt.param_groups[0]["lr"])
        scale = float(self.scaler.get_scale()) if self.scaler is not None and self.scaler.is_enabled() else None
        action: str | None = None
        clip_coef: float | None = 1.0
        bad_loss = self._pending_bad_loss
        loss_value = self._loss_value if bad_loss is None else bad_loss
        self._pending_bad_loss = None
        self._loss_value = None

        if self.config.enabled and bad_loss is not None:
            action = "skip_nonfinite_loss"
        elif self.config.enabled and self.config.skip_nonfinite and not math.isfinite(norm):
            action = "skip_nonfinite_grad"

        applied = action is None
        if applied:
            if self.config.clip == "norm" and self.config.max_norm is not None and grads:
                coef = min(1.0, self.config.max_norm / (norm + 1e-6))
                if coef < 1.0:
                    torch._foreach_mul_(grads, coef)
                clip_coef = coef
            if call_inner:
                if self.scaler is not None and self.scaler.is_enabled():
                    self.scaler.step(opt)
                    self.scaler.update()
                    applied = self.scaler.get_scale() >= (scale or 0)  # backed off = skipped
                else:
                    opt.step()
            if step_scheduler and self.scheduler is not None and applied:
                self.scheduler.step()
            self.consecutive_bad = 0
        else:
            clip_coef = None
            if self.scaler is not None and self.scaler.is_enabled():
                self.scaler.update()  # an inf was recorded by unscale_: backs the scale off
            for g in grads:
                g.zero_()
            self.consecutive_bad += 1
            self.total_skipped += 1
            self._event(action or "skip", f"step {self.step_count} skipped: {action}", "warning")
            if self.consecutive_bad >= self.config.max_consecutive_bad:
                self._abort(action or "skip")

        outcome = StepOutcome(
            step=self.step_count,
            applied=applied,
            action=action,
            loss=loss_value,
            grad_norm=norm if grads else None,
            clip_coef=clip_coef,
            lr=lr,
            loss_scale=scale,
        )
        self.last_outcome = outcome
        self.step_count += 1
        return outcome

    def _event(self, event: str, message: str, severity: str) -> None:
        log.warning(message) if severity != "info" else log.info(message)
        if self.run_log is not None:
            self.run_log.log_event(self.step_count, event, message, severity=severity)

    def _abort(self, action: str) -> None:
        finding = Finding(
            id="nonfinite-grad" if action == "skip_nonfinite_grad" else "nonfinite-loss",
            severity="error",
            title=f"{self.consecutive_bad} consecutive steps were skipped",
            explanation=(
                "Every recent step produced a non-finite loss or gradient; the weights are no "
                "longer being updated. Lower the learning rate, enable gradient clipping, or "
                "switch fp16 to bf16/fp32."
            ),
            steps=list(range(self.step_count - self.consecutive_bad + 1, self.step_count + 1)),
            source="guard",
        )
        self.findings.append(finding)
        self._event("abort", finding.title, "error")
        raise TrainingAborted(
            f"stabletrain guard aborted at step {self.step_count}: {finding.title}. "
            f"{finding.explanation}",
            [finding],
            step=self.step_count,
        )

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "step_count": self.step_count,
            "consecutive_bad": self.consecutive_bad,
            "total_skipped": self.total_skipped,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.consecutive_bad = int(state["consecutive_bad"])
        self.total_skipped = int(state["total_skipped"])


class GuardedOptimizer(torch.optim.Optimizer):
    """The guard as an optimizer: ``step()`` measures, decides, clips, then steps or skips.

    For frameworks that run backward and unscaling themselves. It does not advance any scheduler
    (the framework does); ``step_was_skipped`` tells the framework whether it should.
    """

    def __init__(self, guard: Guard) -> None:  # deliberately no super().__init__: a thin proxy
        self._guard = guard
        self.step_was_skipped = False

    @property
    def param_groups(self) -> list[dict[str, Any]]:  # type: ignore[override]
        return self._guard.inner_optimizer.param_groups

    @param_groups.setter
    def param_groups(self, value: list[dict[str, Any]]) -> None:
        self._guard.inner_optimizer.param_groups = value

    @property
    def state(self) -> Any:  # type: ignore[override]
        return self._guard.inner_optimizer.state

    @property
    def defaults(self) -> dict[str, Any]:  # type: ignore[override]
        return self._guard.inner_optimizer.defaults

    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = closure() if closure is not None else None
        outcome = self._guard._check_and_step(call_inner=True, step_scheduler=False)
        self.step_was_skipped = not outcome.applied
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        self._guard.inner_optimizer.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return self._guard.inner_optimizer.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._guard.inner_optimizer.load_state_dict(state_dict)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        self._guard.inner_optimizer.add_param_group(param_group)

    def __repr__(self) -> str:
        return f"GuardedOptimizer({self._guard.inner_optimizer!r})"
