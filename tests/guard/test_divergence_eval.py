"""The loss-divergence rule asks the evaluations before it throws progress away (session 5).

A run whose train loss fell far below its usual level on a stretch of trivially easy batches (a
shard of blank images, whitespace-only files: the fault matrix's round-4 ``const_shard``) sees
its smoothed loss "give back" most of that progress once real data returns. The session-start
guard read that as divergence, rolled back 45 steps and halved the LR late in the run; the
evaluations meanwhile were at their best. Now the divergence rule acts only when the latest
evaluation (when the loop reports them) is worse than its best: otherwise the data changed, not
the model. Without evaluations the rule is unchanged.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from stabletrain.guard.config import GuardConfig
from stabletrain.guard.guard import Guard
from stabletrain.logs.runlog import RunLog

STEPS = 170
EASY = range(60, 90)  # a shard of easier batches: the same inputs, clean labels


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A linear 2-class problem; the labels the run sees have 30% flipped (the loss floor is
    ~0.61 nats), the clean ones are what an easier shard holds."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(STEPS * 32 + 512, 16, generator=g)
    clean = (x[:, 0] + x[:, 1] > 0).long()
    flip = torch.rand(len(clean), generator=g) < 0.3
    return x, torch.where(flip, 1 - clean, clean), clean


def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def _run(tmp_path: Path, observe: bool) -> tuple[float, list[dict]]:
    x, y, clean = _data()
    xv, yv = x[-512:], clean[-512:]  # judged on the true labels
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    run_dir = tmp_path / ("observe" if observe else "blind")
    with RunLog(run_dir, tensorboard=False) as run_log:
        guard = Guard(model, opt, config=GuardConfig(snapshot_every=10), run_log=run_log)
        for i in range(STEPS):
            rows = slice(i * 32, (i + 1) * 32)
            yb = clean[rows] if i in EASY else y[rows]  # the easy shard: its loss falls far
            guard.step(F.cross_entropy(model(x[rows]), yb))
            if observe and (i + 1) % 10 == 0:
                with torch.no_grad():  # the accuracy: where the boundary is
                    guard.observe_eval(_accuracy(model, xv, yv), mode="max")
    acc = _accuracy(model, xv, yv)
    events = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    return acc, events


def test_a_climb_back_from_an_easy_shard_is_not_divergence_while_the_evals_hold(
    tmp_path: Path,
) -> None:
    blind_acc, blind = _run(tmp_path, observe=False)
    # without evaluations the climb is what the rule sees: it rolls back (unchanged behaviour)
    assert [e for e in blind if e["data"].get("evidence") == "loss-divergence"]
    acc, events = _run(tmp_path, observe=True)
    assert not [e for e in events if e["event"] in ("rollback", "lr-backoff", "abort")], events
    passed = [e for e in events if e["event"] == "divergence-passed"]
    assert passed and passed[0]["data"]["eval_holds"] is True
    assert "no worse than the best" in passed[0]["message"]
    assert acc >= blind_acc - 0.02


def test_spikes_of_a_new_input_scale_are_not_damage_while_the_evals_hold() -> None:
    """The fault matrix's ``input_shift``, seed 1 (an 8-layer MLP on digits, AdamW 1e-3; from
    step 100 the inputs arrive x30, the evaluations stay on clean data). The session-start
    guard counted the smoothed loss's climb as evidence of damage behind the new level's
    spikes: at step 110 it rolled back to step 51, then again to step 1, capping the LR twice
    (0.894 of the reference against ``none``'s 0.988). The evaluations within the spikes'
    window still held: the spikes are the data's. Now no spike rollback comes while they hold
    and the LR is not capped for them."""
    import sys

    bench = Path(__file__).resolve().parents[2] / "bench"
    sys.path.insert(0, str(bench))
    import fault_matrix as fm

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the matrix runs it
    try:
        r = fm.run_one(fm.BY_NAME["input_shift"], "guard", 1)
    finally:
        torch.set_num_threads(threads)
    spike_rollbacks = [line for line in r.log if "bad steps within" in line]
    assert not [line for line in r.log if line.startswith("LR capped at")], r.log
    assert all(int(line.split(":")[0].split()[1]) >= 120 for line in spike_rollbacks), r.log
    assert "rolled back to the snapshot of step 1 " not in " ".join(r.log)
