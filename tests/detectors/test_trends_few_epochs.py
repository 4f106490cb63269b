"""``loss-divergence`` on a log of fewer than four whole epochs (detectors/trends.py): the rule
needs four means, and a one-epoch fine-tune (an HF console log with ``'epoch': 0.01 .. 1.0``)
has one, so such a log is judged on its losses by step block (at most 8 blocks, 32 losses at
least; a rise under 0.01 is no divergence). Runs: a real tiny MLP trained by SGD with momentum
for one epoch of 120 steps, at a learning rate that diverges and at one that does not; the
few-record excerpt and the near-zero GRPO loss of ``shared/real-logs`` that the first version of
this rule misjudged."""

from __future__ import annotations

from pathlib import Path

import torch

from stabletrain.detectors.registry import replay
from stabletrain.detectors.trends import LossTrendDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord


def _one_epoch(lr: float) -> list[StepRecord]:
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g)
    y = torch.randint(0, 4, (4096,), generator=g)
    x = centers[y] + torch.randn(4096, 8, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    out = []
    for step in range(120):
        idx = torch.arange(step * 32, step * 32 + 32)
        loss = torch.nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        out.append(StepRecord(step=step, epoch=step / 120, loss=loss.item()))
    return out


def test_a_divergence_within_one_epoch_is_found() -> None:
    # lr 1.0: the loss falls to ~1.1, then climbs to 8-13 and stays there
    [div] = replay(_one_epoch(1.0), None, [LossTrendDetector()])
    assert div.id == "loss-divergence" and div.evidence["best"] < 1.5 < 2 < div.evidence["end"]


def test_a_healthy_epoch_is_not_a_divergence() -> None:
    assert replay(_one_epoch(0.1), None, [LossTrendDetector()]) == []


def test_an_excerpt_and_a_loss_near_zero_are_not_judged(real_logs: Path) -> None:
    # six per-step losses pasted from GLM-4's issue 174 (0.062, 0.19, 0.11, 0.10, 0.15, 0.21),
    # and a GRPO run whose loss stays within ±1e-4 of 0 for 1000 steps
    for log in ("issue_glm4_174_gradnorm_rise_nan/log.txt", "hf_grpo_zero_loss/trainer_state.json"):
        assert "loss-divergence" not in {f.id for f in diagnose(real_logs / log).findings}
