"""Step functions the guard benchmarks compare against, written from the papers' descriptions.

- ``none``: backward, optimizer step (the scaler's own inf-skip when one is used), no clipping.
- ``clip``: ``torch.nn.utils.clip_grad_norm_(max_norm=1.0)``, the usual hand-written loop.
- ``zclip``: ZClip (Kumar et al. 2025, "ZClip: Adaptive Spike Mitigation for LLM Pre-Training"):
  EMA mean and variance of the global grad norm; after a warm-up that seeds them, a norm whose
  z-score exceeds ``z_thresh`` is clipped to ``mean + z_thresh * std``. As in the paper's method,
  the EMA is updated with the *clipped* norm, and nothing filters non-finite norms, so a NaN
  gradient poisons the statistics (the issue names this; we keep it to measure it).
- ``autoclip``: AutoClip (Seetharaman et al. 2020, "AutoClip: Adaptive Gradient Clipping for
  Source Separation Networks"): clip to the p-th percentile (p=10) of every grad norm seen so far,
  the current one included. Non-finite norms enter the history too, as in the paper's recipe.
- ``skipclip``: the plain loop a careful user writes by hand: skip the backward of a non-finite
  loss, skip the update when the clipped grad norm is non-finite, else ``clip_grad_norm_(1.0)``.
- ``guard``: :class:`stabletrain.Guard` with the ``default`` preset.

Every stepper has ``batches(iterable)`` (identity except for the guard, which drops the batches a
rollback asked to skip) and ``step(loss)``: backward, clip, optimizer step, scheduler step,
zero_grad; ``step`` is ``backward(loss)`` then ``optimizer_step()``, the two halves a loop with
gradient accumulation calls apart. ``observe_eval(value)`` passes an eval loss to the guard when
it has ``Guard.observe_eval`` (a no-op elsewhere). Limits: single process, one param group's
worth of bookkeeping, not tuned per task.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Iterable, Iterator
from typing import Any, Literal, Protocol, TypeVar

import torch
import yaml
from torch import nn

import stabletrain

Method = Literal["none", "clip", "zclip", "autoclip", "skipclip", "guard"]
METHODS: tuple[Method, ...] = ("none", "clip", "zclip", "autoclip", "guard")
#: the ``guard`` method's preset and GuardConfig fields set over it (bench options)
GUARD_PRESET: dict[str, Any] = {"name": "default"}
GUARD_OVERRIDES: dict[str, Any] = {}


def add_guard_options(ap: argparse.ArgumentParser) -> None:
    """``--guard-preset`` and ``--guard-set FIELD=VALUE`` for a bench script's guard method."""
    ap.add_argument("--guard-preset", default="default", help="the guard method's preset")
    ap.add_argument(
        "--guard-set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="a GuardConfig field over the preset (YAML value), repeatable",
    )


def apply_guard_options(args: argparse.Namespace) -> None:
    """Set the guard method's preset and overrides from ``add_guard_options``' arguments."""
    GUARD_PRESET["name"] = args.guard_preset
    for item in args.guard_set:
        key, _, value = item.partition("=")
        GUARD_OVERRIDES[key] = yaml.safe_load(value)


T = TypeVar("T")


class Stepper(Protocol):
    def batches(self, loader: Iterable[T]) -> Iterator[T]: ...

    def backward(self, loss: torch.Tensor) -> None: ...

    def optimizer_step(self) -> None: ...

    def step(self, loss: torch.Tensor) -> None: ...

    def observe_eval(self, value: float) -> None: ...


def _grad_norm(params: list[nn.Parameter]) -> torch.Tensor:
    grads = [p.grad for p in params if p.grad is not None]
    return torch.nn.utils.get_total_norm(grads, norm_type=2.0)


class PlainStepper:
    """Backward → (unscale) → optional clip → step → scheduler → zero_grad."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
    ) -> None:
        self.params = [p for p in model.parameters() if p.requires_grad]
        self.optimizer = optimizer
        self.scaler = scaler
        self.scheduler = scheduler

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        yield from loader

    def clip(self) -> None:
        """No clipping; subclasses override."""

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def optimizer_step(self) -> None:
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
            self.clip()
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.clip()
            self.optimizer.step()
        self.end_step()

    def end_step(self) -> None:
        if self.scheduler is not None:
            self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)

    def step(self, loss: torch.Tensor) -> None:
        self.backward(loss)
        self.optimizer_step()

    def observe_eval(self, value: float) -> None:
        """Only the guard reads eval metrics."""


class ClipStepper(PlainStepper):
    max_norm = 1.0

    def clip(self) -> None:
        torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)


class SkipClipStepper(ClipStepper):
    """The hand-written "skip non-finite + clip 1.0" loop (about 25 lines in a user's script)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.backwards = 0  # micro-batches whose backward ran since the last step

    def backward(self, loss: torch.Tensor) -> None:
        if not math.isfinite(loss.detach().item()):  # a bad micro-batch: drop it, keep the others
            return
        super().backward(loss)
        self.backwards += 1

    def optimizer_step(self) -> None:
        ran, self.backwards = self.backwards, 0
        if ran == 0:  # every micro-batch was bad: nothing to apply
            self.end_step()
            return
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)
        if math.isfinite(float(norm)):
            if self.scaler is not None:
                self.scaler.step(self.optimizer)
            else:
                self.optimizer.step()
        if self.scaler is not None:
            self.scaler.update()  # backs the scale off after an overflow
        self.end_step()


class ZClipStepper(PlainStepper):
    """ZClip: z-score clipping against EMA statistics of the grad norm."""

    alpha = 0.97
    z_thresh = 2.5
    warmup = 25

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mean: float | None = None
        self.var = 0.0
        self.seen: list[float] = []

    def clip(self) -> None:
        norm = float(_grad_norm(self.params))  # the paper's reference code reads it on the host too
        if self.mean is None:  # warm-up: collect norms, then seed mean/var from them
            self.seen.append(norm)
            if len(self.seen) >= self.warmup:
                t = torch.tensor(self.seen, dtype=torch.float64)
                self.mean, self.var = float(t.mean()), float(t.var())
            return
        std = math.sqrt(self.var)
        z = (norm - self.mean) / std if std > 0 else 0.0
        if z > self.z_thresh:
            target = self.mean + self.z_thresh * std
            for p in self.params:
                if p.grad is not None:
                    p.grad.mul_(target / (norm + 1e-6))
            norm = target
        # EMA updated with the (clipped) norm; a NaN norm passes every test above and poisons it
        delta = norm - self.mean
        self.mean = self.alpha * self.mean + (1 - self.alpha) * norm
        self.var = self.alpha * self.var + (1 - self.alpha) * delta * delta


class AutoClipStepper(PlainStepper):
    """AutoClip: clip to the p-th percentile of all grad norms so far."""

    percentile = 10.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.history: list[float] = []

    def clip(self) -> None:
        self.history.append(float(_grad_norm(self.params)))
        # the paper's recipe: numpy-style percentile of the full history (NaN in → NaN out)
        threshold = float(torch.tensor(self.history, dtype=torch.float64).quantile(
            self.percentile / 100.0
        )) if all(math.isfinite(h) for h in self.history) else float("nan")  # fmt: skip
        torch.nn.utils.clip_grad_norm_(self.params, threshold)


class GuardStepper:
    """The guard behind the same two-method interface."""

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
        preset: Literal["default", "adaptive", "conservative", "off"] | None = None,
    ) -> None:
        preset = preset or GUARD_PRESET["name"]
        self.guard = stabletrain.Guard(
            model, optimizer, scaler=scaler, scheduler=scheduler,
            config=stabletrain.GuardConfig.preset(preset, **GUARD_OVERRIDES),
        )  # fmt: skip

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        return self.guard.batches(loader)

    def backward(self, loss: torch.Tensor) -> None:
        self.guard.backward(loss)

    def optimizer_step(self) -> None:
        self.guard.optimizer_step()

    def step(self, loss: torch.Tensor) -> None:
        self.guard.step(loss)

    def observe_eval(self, value: float) -> None:
        """``Guard.observe_eval`` when this version of the guard has it (the same bench runs on
        the code before and after it was added)."""
        if hasattr(self.guard, "observe_eval"):
            self.guard.observe_eval(value)


def make_stepper(
    method: Method,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scaler: torch.amp.GradScaler | None = None,
    scheduler: Any = None,
    preset: Literal["default", "adaptive", "conservative", "off"] | None = None,
) -> Stepper:
    """``preset``: the guard method's preset (default: the ``--guard-preset`` option's)."""
    if method == "guard":
        return GuardStepper(model, optimizer, scaler, scheduler, preset)
    cls = {
        "none": PlainStepper,
        "clip": ClipStepper,
        "skipclip": SkipClipStepper,
        "zclip": ZClipStepper,
        "autoclip": AutoClipStepper,
    }[method]
    return cls(model, optimizer, scaler, scheduler)
