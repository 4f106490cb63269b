"""The abort diagnosis: what happened, and what to change, as a Finding.

Built from the guard's own counters (never a division by an empty count) and the fixes the
detectors already know, written in the user's keys when the guard was given ConfigFacts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from stabletrain.detectors.amp import amp_fixes
from stabletrain.detectors.fixes import lower_lr_fix, make_fix, spike_fixes
from stabletrain.guard.integrity import eps_cause, eps_fixes
from stabletrain.records import Finding, Fix

if TYPE_CHECKING:
    from stabletrain.guard.guard import Guard


def abort_finding(
    guard: Guard, reason: str, action: str | None, step: int, *, damage: str | None = None
) -> Finding:
    """The Finding a TrainingAborted carries: cause, evidence, concrete fixes."""
    facts = guard.facts
    pol = guard.policy
    if damage == "nonfinite-weights":
        fid, what = "nonfinite-weights", "an update made the weights NaN/inf (it was undone)"
    elif damage is not None:
        fid, what = damage, "the damage keeps coming back"
    elif action == "skip_nonfinite_loss":
        fid, what = "nonfinite-loss", "the loss is NaN/inf"
    elif action == "skip_nonfinite_grad":
        fid, what = "nonfinite-grad", "the gradients are NaN/inf"
    elif guard.loss_scale.collapse_steps or "overflow" in reason:
        fid, what = "loss-scale-collapse", "fp16 overflows on every step"
    else:
        fid, what = "loss-spike", "the loss/grad norm keeps spiking"
    last = guard.last_outcome
    evidence = {
        "step": step,
        "reason": reason,
        "consecutive_bad": pol.consecutive_bad,
        "rollbacks": pol.rollbacks,
        "lr_scale": pol.lr_scale,
        "total_skipped": guard.total_skipped,
        "last_applied_loss": last.loss if last is not None and last.applied else None,
    }
    if fid == "nonfinite-weights" and eps_cause(guard.inner_optimizer) is not None:
        fixes = [Fix(text) for text in eps_fixes(guard.inner_optimizer)]
    elif fid == "loss-scale-collapse":
        fixes = amp_fixes(facts, collapse=True)
    elif fid == "loss-spike":
        fixes = spike_fixes(facts)
    elif fid == "nonfinite-loss" and pol.rollbacks == 0 and _fp16_forward(guard):
        # under fp16 a NaN/inf loss from finite weights is as often the forward overflowing
        # (activations above 65504: unnormalised inputs, a large logit) as a bad batch
        what = "the loss is NaN/inf under fp16 autocast (fp16 overflow in the forward, or the data)"
        fixes = [
            Fix(
                "Every recent loss was NaN/inf from finite weights while a GradScaler (fp16) was "
                "on: an fp16 overflow in the forward (activations above 65504, e.g. inputs "
                "left unnormalised) is the likely cause when the batches are finite. Run the "
                "forward in bf16 (torch.autocast(..., dtype=torch.bfloat16), no GradScaler) or "
                "let the guard choose (with guard.autocast(): ...), and normalise the inputs."
            ),
            Fix(
                "Check one failing batch in fp32: a finite loss there confirms fp16 overflow; "
                "a NaN/inf loss there is the input data (NaN/inf values, a broken transform)."
            ),
        ]
    elif fid == "nonfinite-loss" and pol.rollbacks == 0:
        # every skip was harmless (finite weights, nothing applied): the batches are the cause
        fixes = [
            Fix(
                "Check the input data: every recent batch gave a NaN/inf loss from finite "
                "weights (NaN/inf values in the inputs or labels, a broken file or transform, "
                "log(0) or x/0 in the loss)."
            ),
            lower_lr_fix(facts, 3.0),
        ]
    else:
        fixes = [lower_lr_fix(facts, 3.0)]
        if guard.config.max_norm is None or guard.config.clip == "none":
            fixes.append(make_fix(facts, "Clip gradients at norm 1.0.", max_grad_norm=1.0))
        fixes.append(
            Fix("Check the input pipeline for NaN/inf batches (and log(0), x/0 in the loss).")
        )
    lr_note = (
        "the LR was never backed off"
        if pol.lr_cap is None
        else f"the LR is capped at {pol.lr_cap:.3g} ({pol.lr_scale:.3g}x the LR that was stable)"
    )
    return Finding(
        id=fid,
        severity="error",
        title=f"training aborted: {what} ({reason})",
        explanation=(
            f"The guard skipped {guard.total_skipped} step(s) and rolled back {pol.rollbacks} "
            f"time(s); {lr_note}. Continuing would only burn compute on a diverged model."
        ),
        steps=[step],
        evidence=evidence,
        fixes=fixes,
        source="guard",
    )


def _fp16_forward(guard: Guard) -> bool:
    """The forward ran in fp16 outside the guard's control: a GradScaler is on and the guard
    does not own the autocast dtype (or still runs it at fp16)."""
    scaler = guard.scaler
    if scaler is None or not scaler.is_enabled():
        return False
    return not guard.precision.owned or guard.precision.dtype == torch.float16
