"""fp16 loss scaling: overflow steps and loss-scale collapse.

``torch.amp.GradScaler`` multiplies the loss by a scale, skips a step whose scaled gradients
overflow, and halves the scale. A few such backoffs at the start are the scaler finding its range
(it starts at 2**16). Seed 004 shows the failure: an aggressive scaler (init 2**16, growth every
100 steps) on a model whose fp16 activations overflow — the scale collapses toward its floor,
most steps overflow and are skipped, and the model stops learning while the logs show only
``grad_norm=inf``. The cure is bf16 (fp32's range, no scaling) or a conservative scaler.

A step is an overflow when its loss scale went down from the previous record, or when it was
skipped with a finite loss and an inf/NaN grad norm while a scale is logged. Collapse: the scale is
at or below ``collapse_scale``, or more than ``collapse_rate`` of the last ``window`` steps
overflowed (after the initial settling).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

import numpy as np

from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import make_fix
from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord

#: A loss scale at or below this no longer amplifies the gradients: the scaler has nothing left to
#: back off, and an inf gradient at such a scale is inf in its own right (nonfinite-grad).
SCALE_FLOOR = 1.0


class LossScaleDetector:
    """``loss-scale-collapse`` (scale at its floor / overflow on most steps) and ``fp16-overflow``."""

    ids: tuple[str, ...] = ("loss-scale-collapse", "fp16-overflow")

    def __init__(
        self,
        *,
        collapse_scale: float = SCALE_FLOOR,
        window: int = 50,
        collapse_rate: float = 0.5,
        settle_steps: int = 20,
        overflow_rate_warn: float = 0.02,
    ) -> None:
        self.collapse_scale = collapse_scale
        self.window = window
        self.collapse_rate = collapse_rate
        self.settle_steps = settle_steps
        self.overflow_rate_warn = overflow_rate_warn
        self._recent: deque[int] = deque(maxlen=window)
        self.prev_scale: float | None = None
        self.init_scale: float | None = None
        self.min_scale: float | None = None
        self.n_scaled = 0
        self.overflow_steps: list[int] = []
        self.collapse_steps: list[int] = []
        self.last_scale: float | None = None
        self.settling = 0
        self._prev_overflow = False

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``): only train records
        with a finite loss scale change anything, so only those go through it."""
        scale = batch.floats("loss_scale")
        for i in np.flatnonzero(np.isfinite(scale) & batch.train).tolist():
            self.update(batch[i])

    def update(self, record: StepRecord) -> Finding | None:
        scale = record.loss_scale
        if record.kind != "train" or scale is None or not math.isfinite(scale):
            return None
        self.n_scaled += 1
        if self.init_scale is None:
            self.init_scale = scale
        # a skipped step with inf grads, or a scaler's overflow message (no norm printed)
        skipped_inf = (
            bool(record.skipped)
            and (record.grad_norm is None or not math.isfinite(record.grad_norm))
            and (record.loss is None or math.isfinite(record.loss))
        )
        # A logged overflow shows twice: skipped with inf grads, then a lower scale on the next
        # record. Count the drop only when the previous record was not already counted.
        dropped = (
            self.prev_scale is not None and scale < self.prev_scale and not self._prev_overflow
        )
        overflow = skipped_inf or dropped
        self._prev_overflow = skipped_inf
        self.prev_scale = self.last_scale = scale
        self.min_scale = scale if self.min_scale is None else min(self.min_scale, scale)
        self._recent.append(int(overflow))
        if overflow:
            self.overflow_steps.append(record.step)
            if self.n_scaled <= self.settle_steps:
                self.settling += 1
        rate = sum(self._recent) / len(self._recent)
        # A scale that has sat at 1.0 since the first record and never overflowed is no scaling
        # at all (bf16/fp32 runs log "loss scale: 1.0"), not a scale that collapsed to its floor.
        # A scale below 1 is never "no scaling": a scaler halved it past its floor (a GradScaler
        # printed as ``Fp16 Grad Scale: 0`` has underflowed to zero).
        never_scaled = self.init_scale == 1.0 and not self.overflow_steps
        collapsed = (scale <= self.collapse_scale and not never_scaled) or (
            self.n_scaled > self.settle_steps
            and len(self._recent) >= min(self.window, 10)
            and rate > self.collapse_rate
        )
        if not collapsed:
            return None
        first = not self.collapse_steps
        self.collapse_steps.append(record.step)
        if not first:
            return None  # one live finding per collapse is enough; finish() has every step
        return Finding(
            id="loss-scale-collapse",
            severity="error",
            title=f"fp16 loss scale collapsed at step {record.step} (scale {scale:g}, "
            f"{rate:.0%} of recent steps overflowed): switch to bf16",
            steps=[record.step],
            evidence={"loss_scale": scale, "recent_overflow_rate": round(rate, 3)},
            source="log",
        )

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        out: list[Finding] = []
        n = max(self.n_scaled, 1)
        evidence: dict[str, Any] = {
            "overflow_steps": len(self.overflow_steps),
            "overflow_rate": round(len(self.overflow_steps) / n, 4),
            "init_scale": self.init_scale,
            "min_scale": self.min_scale,
            "last_scale": self.last_scale,
            "steps_with_scale": self.n_scaled,
        }
        if self.collapse_steps:
            out.append(
                Finding(
                    id="loss-scale-collapse",
                    severity="error",
                    title=f"fp16 loss scale collapsed (min {self.min_scale:g}, "
                    f"{evidence['overflow_rate']:.0%} of steps overflowed): switch to bf16",
                    explanation=(
                        "The loss scale fell to its floor or most steps overflowed and were "
                        "skipped, so the model barely learns: fp16's range is too small for "
                        "these activations/gradients. bf16 has fp32's range and needs no loss "
                        "scaling; if the hardware has no bf16, use a conservative scaler (init "
                        "2**10, slow growth) and fix the overflow's source (LR, clipping, "
                        "unnormalised layers)."
                    ),
                    steps=list(self.collapse_steps),
                    evidence=evidence,
                    fixes=amp_fixes(facts, collapse=True),
                    source="log",
                )
            )
        # overflows in the first settle_steps are the scaler finding its range (starts at 2**16)
        late = self.overflow_steps[self.settling :]
        rate = len(late) / n
        if late and (rate > self.overflow_rate_warn or (not self.collapse_steps and len(late) > 5)):
            severity: Literal["info", "warning"] = (
                "warning" if rate > self.overflow_rate_warn else "info"
            )
            out.append(
                Finding(
                    id="fp16-overflow",
                    severity=severity,
                    title=f"{len(late)} fp16 overflow step(s) after the scaler settled "
                    f"({rate:.1%} of steps skipped by the scaler)",
                    explanation=(
                        "Each overflow makes GradScaler skip the step and halve the scale. "
                        "Occasional overflows are the scaler probing; frequent ones waste "
                        "steps and mean the scale grows too fast or the gradients blow up."
                    ),
                    steps=late,
                    evidence=evidence,
                    fixes=amp_fixes(facts, collapse=False),
                    source="log",
                )
            )
        return out

    def state_dict(self) -> dict[str, Any]:
        return {
            "recent": list(self._recent),
            "prev_scale": self.prev_scale,
            "init_scale": self.init_scale,
            "min_scale": self.min_scale,
            "last_scale": self.last_scale,
            "n_scaled": self.n_scaled,
            "overflow_steps": list(self.overflow_steps),
            "collapse_steps": list(self.collapse_steps),
            "settling": self.settling,
            "prev_overflow": self._prev_overflow,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._recent = deque((int(v) for v in state["recent"]), maxlen=self.window)
        self.prev_scale = state["prev_scale"]
        self.init_scale = state["init_scale"]
        self.min_scale = state["min_scale"]
        self.last_scale = state["last_scale"]
        self.n_scaled = int(state["n_scaled"])
        self.overflow_steps = [int(s) for s in state["overflow_steps"]]
        self.collapse_steps = [int(s) for s in state["collapse_steps"]]
        self.settling = int(state.get("settling", 0))
        self._prev_overflow = bool(state.get("prev_overflow", False))


def amp_fixes(facts: ConfigFacts, *, collapse: bool) -> list[Fix]:
    """Switch to bf16; else a conservative loss scaler, in the user's key names."""
    fixes = [make_fix(facts, "Train in bf16 (no loss scaling needed).", precision="bf16")]
    changes: dict[str, Any] = {"loss_scale_init": 1024.0}
    gi = facts.get("loss_scale_growth_interval")
    if not isinstance(gi, (int, float)) or gi < 1000:
        changes["loss_scale_growth_interval"] = 1000
    # slower growth comes from the interval; the factor stays a power of two, which keeps
    # scaling and unscaling exact (docs/guard.md, "AMP": why not growth 1.5)
    fixes.append(
        make_fix(
            facts,
            "Or, if fp16 is required: a conservative loss scaler (start at 2**10, grow slowly).",
            code="scaler = stabletrain.guard.amp.conservative_scaler(device)",
            **changes,
        )
    )
    return fixes
