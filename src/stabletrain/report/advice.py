"""What to watch after applying a finding's fix — the closing section of every seed postmortem.

The detectors say what is wrong and what to change; this table says how the user will know the
change worked ("gradient norms stabilising below 2.0", "LR reduction around epoch 15, not 24").
One line per finding id; unknown ids get a generic line.
"""

from __future__ import annotations

_WATCH: dict[str, str] = {
    "nonfinite-loss": "No NaN/inf loss in the next run; if one appears, note the step and the batch.",
    "nonfinite-grad": "Grad norm finite on every step; a rare skipped step is fine, a streak is not.",
    "chance-level": "Accuracy leaving chance and the loss falling below ln(num_classes) in the first epoch.",
    "loss-spike": "Loss spikes gone or recovering within a few steps; grad norm staying under the clip value.",
    "grad-spike": "Grad norm without isolated jumps of many times its running median.",
    "clip-near-threshold": "Grad norm settling well below the new clip value, clipping only occasionally.",
    "clip-saturated": "Clipping firing on a minority of steps (under ~20%), not nearly every batch.",
    "grad-norm-growth": "Grad norm flat or falling from epoch to epoch instead of rising.",
    "lr-constant": "The LR moving when the monitored loss stops improving (log every LR change).",
    "lr-zero": "A non-zero LR from the first logged step (check warmup start and scheduler wiring).",
    "loss-divergence": "The loss ending at or below its running minimum instead of drifting up.",
    "scheduler-late": "The first LR reduction within a few epochs of the best epoch, not many later.",
    "patience-conflict": "LR reductions happening before early stopping ends the run.",
    "eval-unstable": "Eval loss decreasing smoothly, with epoch-to-epoch swings under ~2%.",
    "overfitting": "The train/eval gap no longer widening; stop at the best eval epoch.",
    "warmup-short": "A smooth first few hundred steps: no spike while the LR ramps up.",
    "warmup-too-long": "The logged LR at its configured level within the first tenth of the run.",
    "loss-scale-collapse": "The loss scale settling at a stable value instead of backing off repeatedly.",
    "fp16-overflow": "Overflow/skipped steps becoming rare after the first few hundred steps.",
    "duplicate-logging": "Each step logged once (only rank 0 writes logs).",
    "slow-steps": "Step time flat across the run; no regression after checkpoints or evals.",
    "run-restart": "One run per log (a fresh log or run dir per launch); a resume continuing from its checkpoint's step.",
    "no-grad-clipping": "Grad norm bounded by the clip value; no inf norms.",
    "fp16-without-loss-scaling": "No fp16 overflow or underflowed (zero) gradients.",
    "loss-scale-init-high": "Few overflow skips at the start; the scale growing rather than collapsing.",
    "lr-high-for-batch": "No early loss or grad-norm spikes at the new LR.",
    "plateau-patience-long": "The scheduler reacting within a few epochs of a plateau.",
    "too-few-steps": "The loss flattening out before the run ends, at several times the optimizer steps.",
    "run-failed": "The training loss ending well below where it started, with no NaN/inf.",
    # the config sanity table (detectors/sanity.py)
    "adam-betas-unbounded": "Loss and grad norm without the sudden jumps of an unbounded Adam step.",
    "adam-beta1-low": "A smoother loss curve at the same LR once Adam has its momentum back.",
    "weight-decay-large": "The loss falling on to near its floor instead of levelling off early.",
    "weight-decay-coupled": "The loss falling on to near its floor instead of levelling off early.",
    "dropout-large": "The training loss falling well below a uniform guess within the first epoch.",
    "adam-eps-large": "The loss falling at Adam's usual pace from the first steps.",
    "sgd-momentum-high": "No oscillation or spikes once the momentum is back at 0.9.",
    "init-std-tiny": "The loss leaving ln(num_classes) within the first few dozen steps.",
    "context-short": "A lower loss per token at the same number of steps.",
}


def watch_for(finding_id: str) -> str:
    """One line: what to check in the next run to know the fix worked."""
    return _WATCH.get(finding_id, "The same symptom gone in the next run's report.")
