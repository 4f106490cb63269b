"""The one place that touches accelerate's ``AcceleratedOptimizer`` internals.

HF's ``Trainer`` reads ``accelerator.optimizer_step_was_skipped`` (the wrapper's
``_is_overflow``) to hold the LR schedule on a skipped step, and with a ``GradScaler`` the wrapper
detects a skip through a patched copy of the inner optimizer's ``step`` made in its ``__init__``.
accelerate has no public way to set either, so the HF callback, which swaps the inner optimizer
for the guard's and skips steps the scaler did not, goes through these two functions. Each checks
that the attributes it sets exist first: setting a renamed one would create a new attribute and
silently let the schedule advance on every skip, so a changed accelerate fails at
``on_train_begin`` with the version named instead.
"""

from __future__ import annotations

from typing import Any

import torch

from stabletrain.errors import ConfigError

#: what the wrapper holds (accelerate 0.2x-1.x): the skip flag, and with a scaler the step copies
_FLAG = "_is_overflow"
_SCALER_STEPS = ("_optimizer_original_step_method", "_optimizer_patched_step_method")


def swap_inner(accelerated: Any, optimizer: torch.optim.Optimizer) -> None:
    """Make ``optimizer`` the one ``accelerated`` steps, the scaler's skip detection included."""
    _require(accelerated, (_FLAG, *(_SCALER_STEPS if _has_scaler(accelerated) else ())))
    accelerated.optimizer = optimizer
    if _has_scaler(accelerated):
        from accelerate.optimizer import patch_optimizer_step

        setattr(accelerated, _SCALER_STEPS[0], optimizer.step)
        setattr(accelerated, _SCALER_STEPS[1], patch_optimizer_step(accelerated, optimizer.step))


def mark_skipped(accelerated: Any, skipped: bool) -> None:
    """Tell the Trainer (``optimizer_step_was_skipped``) whether this step was skipped. With a
    scaler, accelerate sets it itself on every step; only a guard skip is added."""
    if skipped:
        setattr(accelerated, _FLAG, True)
    elif not _has_scaler(accelerated):
        setattr(accelerated, _FLAG, False)  # without a scaler accelerate never resets it


def _has_scaler(accelerated: Any) -> bool:
    return getattr(accelerated, "scaler", None) is not None


def _require(accelerated: Any, names: tuple[str, ...]) -> None:
    missing = [n for n in names if not hasattr(accelerated, n)]
    if missing:
        import accelerate

        raise ConfigError(
            f"StableTrainCallback: accelerate {accelerate.__version__}'s AcceleratedOptimizer has "
            f"no {', '.join(missing)}: the guard could not hold the LR schedule on a skipped "
            "step; use an accelerate version from 0.20 to 1.x or train without the callback"
        )
