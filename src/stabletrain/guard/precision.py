"""Precision: the autocast dtype the guard owns, and the fall-back when fp16 cannot hold the run.

fp16's range ends at 65504. A forward whose activations pass it (inputs left in raw 16-bit units,
a logit layer that grew) gives an inf/NaN loss on batch after batch; a GradScaler whose scale
sits at its floor means the backward overflows at any scale. Neither is cured by skipping or
by a lower LR: the fix is a wider dtype.

- The guard owns autocast when the forward runs under ``guard.autocast()``: then, on the
  evidence, it switches fp16 → bf16 (where the device supports it) → fp32 for the following
  steps, logs the change, and resets the GradScaler's scale to 1 (bf16 and fp32 need no
  scaling). Nothing is undone: the bad steps were skipped.
- Otherwise it cannot change the dtype, and stops early (``TrainingAborted``) with the evidence
  and the change to make: ``STOP_AFTER`` skipped steps after the scale collapsed (rather than
  the ``max_consecutive_bad`` overflows in a row a scaler that recovers now and then never
  reaches).

Evidence (``Precision.observe``, one call per step):

- ``precision_patience`` non-finite losses in a row under fp16 (an isolated NaN batch is data;
  every batch overflowing is the dtype);
- the ``loss-scale-collapse`` finding of ``detectors/amp.py`` (the scale at its floor, or
  overflows on most steps once the scaler has settled).
"""

from __future__ import annotations

from typing import Any, Literal

import torch

PrecisionAction = Literal["fallback", "stop"]
#: skipped steps after a loss-scale collapse before a run whose autocast the guard does not own
#: is stopped
STOP_AFTER = 10

_ORDER = (torch.float16, torch.bfloat16, torch.float32)
_NAMES = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}


def dtype_name(dtype: torch.dtype) -> str:
    return _NAMES.get(dtype, str(dtype))


def bf16_supported(device_type: str) -> bool:
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device_type == "cpu"


class Precision:
    """The autocast dtype (when the guard owns autocast) and the evidence against fp16."""

    def __init__(self, patience: int) -> None:
        self.patience = patience
        self.device_type: str | None = None
        #: the dtype ``autocast()`` runs the forward in; None until the guard owns autocast
        self.dtype: torch.dtype | None = None
        self.nonfinite_in_a_row = 0
        #: skipped steps since the loss scale collapsed (None: it has not)
        self.skips_since_collapse: int | None = None
        self.changes: list[dict[str, Any]] = []

    @property
    def owned(self) -> bool:
        return self.dtype is not None

    def autocast(self, device_type: str, dtype: torch.dtype | None) -> torch.autocast:
        """The autocast context of the next forward (the guard's dtype once it owns it)."""
        if self.dtype is None:
            self.dtype = dtype or torch.float16
            self.device_type = device_type
        enabled = self.dtype != torch.float32
        return torch.autocast(
            self.device_type or device_type,
            dtype=self.dtype if enabled else None,
            enabled=enabled,
        )

    def observe(
        self, *, loss_nonfinite: bool, skipped: bool, scale_collapsed: bool
    ) -> PrecisionAction | None:
        """One step's evidence: its loss was non-finite, it was skipped, the loss-scale
        collapse finding fired on it. The action to take, if any."""
        self.nonfinite_in_a_row = self.nonfinite_in_a_row + 1 if loss_nonfinite else 0
        if scale_collapsed and self.skips_since_collapse is None:
            self.skips_since_collapse = 0
        elif self.skips_since_collapse is not None and skipped:
            self.skips_since_collapse += 1
        if self.owned:
            if self.dtype != torch.float16:
                return None
            fp16_fails = scale_collapsed or self.nonfinite_in_a_row >= self.patience
            return "fallback" if fp16_fails else None
        if self.skips_since_collapse is not None and self.skips_since_collapse >= STOP_AFTER:
            return "stop"
        return None

    def fall_back(self) -> tuple[torch.dtype, torch.dtype]:
        """Switch to the next wider dtype; (old, new)."""
        assert self.dtype is not None  # only when owned
        old = self.dtype
        i = _ORDER.index(old) if old in _ORDER else 0
        new = _ORDER[min(i + 1, len(_ORDER) - 1)]
        if new == torch.bfloat16 and not bf16_supported(self.device_type or "cpu"):
            new = torch.float32
        self.dtype = new
        self.nonfinite_in_a_row = 0
        self.skips_since_collapse = None
        self.changes.append({"from": dtype_name(old), "to": dtype_name(new)})
        return old, new

    def state_dict(self) -> dict[str, Any]:
        return {
            "device_type": self.device_type,
            "dtype": dtype_name(self.dtype) if self.dtype is not None else None,
            "nonfinite_in_a_row": self.nonfinite_in_a_row,
            "skips_since_collapse": self.skips_since_collapse,
            "changes": list(self.changes),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        by_name = {v: k for k, v in _NAMES.items()}
        self.device_type = state.get("device_type")
        name = state.get("dtype")
        self.dtype = by_name.get(name) if name is not None else None
        self.nonfinite_in_a_row = int(state.get("nonfinite_in_a_row", 0))
        self.skips_since_collapse = state.get("skips_since_collapse")
        self.changes = list(state.get("changes", []))
