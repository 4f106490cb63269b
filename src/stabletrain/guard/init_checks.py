"""Checks before the first step: finite weights, and init scales known to explode.

A weight std far above He/Kaiming's ``sqrt(2 / fan_in)`` (He et al. 2015) makes activations grow
by that factor per layer: seed 002's CNN with ``normal(std=1.0)`` had inf gradients from epoch 1.
Only *too large* is flagged: small inits (GPT-2's 0.02) train fine. Linear and conv layers only;
embeddings and norms have no fan-in rule. Reads every weight once (host syncs, off the hot path).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from stabletrain.records import Finding, Fix


def nonfinite_tensors(model: nn.Module) -> list[str]:
    """Names of parameters and floating buffers holding NaN/inf."""
    return [
        name
        for name, t in [*model.named_parameters(), *model.named_buffers()]
        if t.is_floating_point() and not bool(torch.isfinite(t).all())  # host sync: once
    ]


def init_scale_finding(model: nn.Module, ratio: float = 4.0) -> Finding | None:
    """One finding listing the layers whose weight std exceeds ``ratio`` × the Kaiming std."""
    bad: list[dict[str, float | str]] = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        w = m.weight.detach()
        fan_in = w[0].numel()
        if fan_in < 1 or w.numel() < 2:
            continue
        kaiming = math.sqrt(2.0 / fan_in)
        std = float(w.float().std())  # host sync: once, before training
        if std > ratio * kaiming:
            bad.append(
                {"layer": name, "std": round(std, 5), "kaiming_std": round(kaiming, 5),
                 "ratio": round(std / kaiming, 2)}
            )  # fmt: skip
    if not bad:
        return None
    names = ", ".join(f"{b['layer']} (std {b['std']} = {b['ratio']}x)" for b in bad[:8])
    return Finding(
        id="init-scale",
        severity="warning",
        title=f"{len(bad)} layer(s) initialised with a weight std far above Kaiming's",
        explanation=(
            f"Weight std more than {ratio:g}x sqrt(2/fan_in) multiplies activations and gradients "
            f"by that factor per layer, which explodes in deep nets: {names}."
        ),
        evidence={"layers": bad},
        fixes=[
            Fix(
                "Use Kaiming (ReLU) or Xavier (tanh/linear) initialisation, or add normalisation.",
                {"model.cnn.init": "kaiming", "model.cnn.init_std": None},
                code="nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')",
            )
        ],
        source="guard",
    )
