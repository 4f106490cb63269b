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


def layer_stds(model: nn.Module) -> list[tuple[str, nn.Module, float, float]]:
    """(name, module, weight std, Kaiming std sqrt(2/fan_in)) of every linear/conv layer."""
    out: list[tuple[str, nn.Module, float, float]] = []
    for name, m in model.named_modules():
        if not isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            continue
        w = m.weight.detach()
        fan_in = w[0].numel()
        if fan_in < 1 or w.numel() < 2:
            continue
        std = float(w.float().std())  # host sync: once per layer, before training
        out.append((name, m, std, math.sqrt(2.0 / fan_in)))
    return out


def init_scale_finding(model: nn.Module, ratio: float = 4.0) -> Finding | None:
    """One finding listing the layers whose weight std exceeds ``ratio`` × the Kaiming std."""
    bad: list[dict[str, float | str]] = []
    for name, _, std, kaiming in layer_stds(model):
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


#: modules that renormalise activations: an init gain does not compound through them
NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm,
         nn.InstanceNorm1d, nn.InstanceNorm2d, nn.RMSNorm)  # fmt: skip


def init_gain(model: nn.Module) -> tuple[float, list[tuple[str, nn.Module, float]]]:
    """The compounding forward gain of the init in a net without normalisation: the product
    over its linear/conv layers of max(1, weight std / Kaiming std), and the layers above 1
    (name, module, ratio). 1.0 for a net with a normalisation layer (the gain does not
    compound through it). Host syncs: one per layer, once."""
    if any(isinstance(m, NORMS) for m in model.modules()):
        return 1.0, []
    gain, over = 1.0, []  # type: float, list[tuple[str, nn.Module, float]]
    for name, m, std, kaiming in layer_stds(model):
        ratio = std / kaiming
        if ratio > 1.0:
            gain *= ratio
            over.append((name, m, ratio))
    return gain, over


def repair_init(over: list[tuple[str, nn.Module, float]]) -> list[dict[str, float | str]]:
    """Rescale each listed layer's weights down to the Kaiming std (the random pattern kept);
    what changed, per layer."""
    changed: list[dict[str, float | str]] = []
    with torch.no_grad():
        for name, m, ratio in over:
            weight = m.weight
            assert isinstance(weight, torch.Tensor)
            weight.div_(ratio)
            changed.append({"layer": name, "ratio": round(ratio, 3)})
    return changed
