"""Non-finite loss and gradient norms (NaN/inf).

Seeds 002 and 004 (``Avg Grad Norm: inf``, loss stuck at 12) are what this names: a step whose
loss or gradient norm is not finite. Whether the run survived depends on what happened next: a
step the guard (or GradScaler) skipped leaves the weights intact; an applied non-finite update
corrupts them, and every later loss is NaN.

Under fp16 AMP an inf gradient with a finite loss is usually the loss scaler probing its range,
not a divergence: those steps are left to ``LossScaleDetector`` (``fp16-overflow``) so the same
step is not reported twice. Two cases are not probing, and are ``nonfinite-grad`` (seed 004: the
scale halved on every step down to 1e-17 while ``grad_norm=inf`` stayed — the gradients had
exploded, the scaler was not the cause):

- the scale is at or below its floor (``SCALE_FLOOR`` = 1): it no longer amplifies anything, so the
  unscaled gradients are inf themselves;
- the scale stopped backing off: an inf gradient on the record right after another one, at the same
  or a higher scale (a static scale, or a scaler pinned at its minimum) — a dynamic scaler halves
  after every overflow, so a repeated inf at an unchanged scale is no probe.

Limits: a log that records no loss/grad norm gives nothing to see; a single inf at a scale above
the floor stays fp16-overflow even if the gradients were truly inf (the log cannot tell them apart).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from stabletrain.detectors.amp import SCALE_FLOOR
from stabletrain.detectors.base import epoch_index
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import lower_lr_fix, make_fix, setting
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord


def _nonfinite(v: float | None) -> bool:
    return v is not None and not math.isfinite(v)


class NonFiniteDetector:
    """Steps with a NaN/inf loss (``nonfinite-loss``) or grad norm (``nonfinite-grad``)."""

    ids: tuple[str, ...] = ("nonfinite-loss", "nonfinite-grad")

    def __init__(self) -> None:
        self.bad: dict[str, list[int]] = {"nonfinite-loss": [], "nonfinite-grad": []}
        self.skipped: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        self.epochs: dict[str, list[int]] = {"nonfinite-loss": [], "nonfinite-grad": []}
        self.n_records = 0
        self.last_loss_finite: bool | None = None
        self.finite_after: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        self.unknown_skip: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        #: the loss scale of the previous scaled record if its grad norm was non-finite
        self.prev_inf_scale: float | None = None
        self.max_lr = 0.0

    def _scaler_probing(self, record: StepRecord) -> bool:
        """Whether a non-finite grad norm is the loss scaler probing its range (fp16-overflow)."""
        scale = record.loss_scale
        if scale is None or record.loss is None:
            return False
        if scale <= SCALE_FLOOR:
            return False  # nothing amplified: the gradients are inf themselves
        # inf again right after an inf, and the scale did not go down: nothing is backing off
        return self.prev_inf_scale is None or scale < self.prev_inf_scale

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        self.n_records += 1
        if record.lr is not None and record.lr > self.max_lr:
            self.max_lr = record.lr  # the fix's LR value when the config gives none
        fid: str | None = None
        if _nonfinite(record.loss):
            fid = "nonfinite-loss"
        elif _nonfinite(record.grad_norm) and not self._scaler_probing(record):
            fid = "nonfinite-grad"
        if record.loss_scale is not None:
            self.prev_inf_scale = record.loss_scale if _nonfinite(record.grad_norm) else None
        for k, steps in self.bad.items():
            if steps and fid != k and record.loss is not None and math.isfinite(record.loss):
                self.finite_after[k] += 1
        if record.loss is not None:
            self.last_loss_finite = math.isfinite(record.loss)
        if fid is None:
            return None
        self.bad[fid].append(record.step)
        epoch = epoch_index(record.epoch)
        if epoch is not None:
            self.epochs[fid].append(epoch)
        if record.skipped:
            self.skipped[fid] += 1
        elif record.skipped is None:
            self.unknown_skip[fid] += 1
        what = "loss" if fid == "nonfinite-loss" else "gradient norm"
        value = record.loss if fid == "nonfinite-loss" else record.grad_norm
        return Finding(
            id=fid,
            severity="error",
            title=f"non-finite {what} ({value}) at step {record.step}",
            steps=[record.step],
            epochs=[] if epoch is None else [epoch],
            evidence={"value": value, "skipped": bool(record.skipped)},
            source="log",
        )

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``): records with a
        non-finite loss or grad norm one by one, the finite stretches between them in bulk."""
        loss, grad = batch.floats("loss"), batch.floats("grad_norm")
        batch.floats("lr")
        loss_none, grad_none = batch.none("loss"), batch.none("grad_norm")
        scale_none = batch.none("loss_scale")
        odd = ~np.isfinite(loss)  # non-finite, or missing (NaN here)
        if loss_none is not None:
            odd &= ~loss_none
        odd_grad = ~np.isfinite(grad)
        if grad_none is not None:
            odd_grad &= ~grad_none
        train, n, start = batch.train, len(batch), 0
        for i in [*np.flatnonzero((odd | odd_grad) & train).tolist(), n]:
            if i > start:
                t = start + np.flatnonzero(train[start:i])
                self._finite_stretch(batch, t, loss_none, scale_none)
            if i < n:
                self.update(batch[i])
            start = i + 1

    def _finite_stretch(
        self,
        batch: Batch,
        t: np.ndarray,
        loss_none: np.ndarray | None,
        scale_none: np.ndarray | None,
    ) -> None:
        """``update`` on train records ``t`` whose loss and grad norm are finite or missing."""
        if t.size == 0:
            return
        self.n_records += int(t.size)
        self.max_lr = batch.running_max("lr", t, self.max_lr)
        if scale_none is None or not scale_none[t].all():
            self.prev_inf_scale = None
        n_loss = int(t.size) if loss_none is None else int((~loss_none[t]).sum())
        for k, steps in self.bad.items():
            if steps:
                self.finite_after[k] += n_loss
        if n_loss:
            self.last_loss_finite = True

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        out: list[Finding] = []
        for fid, steps in self.bad.items():
            if not steps:
                continue
            what = "loss" if fid == "nonfinite-loss" else "gradient norm"
            n, skipped = len(steps), self.skipped[fid]
            recovered = self.finite_after[fid] > 0 and bool(self.last_loss_finite)
            # All skipped and the run went on with finite losses: handled, but worth knowing.
            severity: Literal["warning", "error"] = (
                "warning" if skipped == n and recovered else "error"
            )
            if recovered:
                outcome = "training continued with finite losses afterwards"
            else:
                outcome = "the loss never became finite again: the weights are corrupted"
            unknown = self.unknown_skip[fid]
            if skipped == n:
                handled = f"all {n} were skipped (no update applied)"
            elif unknown == n:
                handled = f"the log does not say whether these {n} steps were skipped"
            else:
                handled = f"{n - skipped - unknown} of {n} were applied as updates" + (
                    f" (the log does not say for {unknown})" if unknown else ""
                )
            isolated = n <= 3 and recovered
            cause = (
                "Isolated non-finite steps with finite steps around them usually come from a bad "
                "batch (NaN/inf in the inputs or labels, a log of 0, a division by a zero count)."
                if isolated
                else "Repeated non-finite steps mean the updates are diverging: a learning rate "
                "too high, no or too loose gradient clipping, or fp16 overflow."
            )
            out.append(
                Finding(
                    id=fid,
                    severity=severity,
                    title=f"{n} step(s) with a non-finite {what}, first at step {steps[0]}",
                    explanation=f"{handled}; {outcome}. {cause}",
                    steps=list(steps),
                    epochs=sorted(set(self.epochs[fid])),
                    evidence={
                        "count": n,
                        "fraction": round(n / max(self.n_records, 1), 4),
                        "first_step": steps[0],
                        "last_step": steps[-1],
                        "skipped": skipped,
                        "recovered": recovered,
                    },
                    fixes=_fixes(facts, isolated, self.max_lr or None),
                    source="log",
                )
            )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "bad": {k: list(v) for k, v in self.bad.items()},
            "skipped": dict(self.skipped),
            "epochs": {k: list(v) for k, v in self.epochs.items()},
            "n_records": self.n_records,
            "last_loss_finite": self.last_loss_finite,
            "finite_after": dict(self.finite_after),
            "unknown_skip": dict(self.unknown_skip),
            "prev_inf_scale": self.prev_inf_scale,
            "max_lr": self.max_lr,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad = {k: [int(s) for s in v] for k, v in state["bad"].items()}
        self.skipped = {k: int(v) for k, v in state["skipped"].items()}
        self.epochs = {k: [int(e) for e in v] for k, v in state["epochs"].items()}
        self.n_records = int(state["n_records"])
        self.last_loss_finite = state["last_loss_finite"]
        self.finite_after = {k: int(v) for k, v in state["finite_after"].items()}
        unknown = state.get("unknown_skip", {})
        self.unknown_skip = {k: int(unknown.get(k, 0)) for k in self.bad}
        prev = state.get("prev_inf_scale")
        self.prev_inf_scale = None if prev is None else float(prev)
        self.max_lr = float(state.get("max_lr", 0.0))


def _fixes(facts: ConfigFacts, isolated: bool, logged_lr: float | None) -> list[Fix]:
    fixes: list[Fix] = []
    if isolated:
        fixes.append(
            Fix(
                "Check the batches at these steps for NaN/inf inputs or labels; let the guard "
                "skip non-finite steps meanwhile.",
                code="guard = stabletrain.Guard(model, optimizer)  # skip_nonfinite=True",
            )
        )
    fixes.append(lower_lr_fix(facts, 3.0, logged_lr))
    clip, _ = setting(facts, "max_grad_norm")  # HF and Megatron clip at 1.0 unless told not to
    if not isinstance(clip, (int, float)) or clip <= 0:
        fixes.append(make_fix(facts, "Clip gradients at norm 1.0.", max_grad_norm=1.0))
    if facts.get("precision") in ("fp16", "16", "16-mixed", "float16"):
        fixes.append(
            make_fix(
                facts,
                "Train in bf16 instead of fp16 (no loss scaling, same range as fp32).",
                precision="bf16",
            )
        )
    return fixes
