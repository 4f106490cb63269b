"""lr-jump on real tiny runs: an MLP on scikit-learn's digits, trained by a plain torch loop whose
LR schedule has a bug (x1000 at step 60), against smooth schedules that must stay quiet."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from stabletrain.detectors.lrjump import LRJumpDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run
from stabletrain.logs.runlog import RunLog
from stabletrain.records import StepRecord


def _run(
    run_dir: Path, lr_at: Callable[[int], float], steps: int = 120, log_every: int = 1
) -> Path:
    """Train a 64-32-10 MLP with AdamW at ``lr_at(step)``; log steps to a run dir."""
    torch.manual_seed(0)
    x, y = load_digits(return_X_y=True)
    xs = torch.tensor(x, dtype=torch.float32) / 16.0
    ys = torch.tensor(y)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.AdamW(model.parameters(), lr=lr_at(0))
    gen = torch.Generator().manual_seed(0)
    with RunLog(run_dir, tensorboard=False) as log:
        for step in range(steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            idx = torch.randint(0, len(xs), (64,), generator=gen)
            loss = nn.functional.cross_entropy(model(xs[idx]), ys[idx])
            opt.zero_grad()
            loss.backward()
            norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), math.inf))
            opt.step()
            if step % log_every == 0 or step == 1:
                log.log_step(
                    StepRecord(step=step, loss=loss.item(), grad_norm=norm, lr=lr_at(step))
                )
    return run_dir


def _jump_bug(step: int) -> float:
    return 1e-3 * (1000.0 if step >= 60 else 1.0)  # the bug: the LR in the wrong unit from 60


@pytest.fixture(scope="module")
def jumped(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _run(tmp_path_factory.mktemp("jump") / "run", _jump_bug)


def test_jump_is_reported_with_step_values_and_onset_lr(jumped: Path) -> None:
    report = diagnose(jumped)
    jump = next(f for f in report.findings if f.id == "lr-jump")
    assert jump.steps == [60]
    assert jump.evidence["from"] == pytest.approx(1e-3)
    assert jump.evidence["to"] == pytest.approx(1.0)
    assert jump.evidence["lr_at_onset"] == pytest.approx(1e-3)  # the reference, not the peak
    assert "60" in jump.title and "0.001" in jump.explanation
    # the fix never raises the LR: it points at the schedule and keeps the LR before the jump
    for fix in jump.fixes:
        assert not fix.changes.get("lr") and not fix.relative
        assert "0.001" in fix.description
    # what followed is tied to it: the loss rose after the jump, and any instability the
    # detectors found after step 60 is linked as its effect
    assert jump.evidence["loss_after"] > jump.evidence["loss_before"]
    effects = [f for f in report.findings if f.id in jump.related]
    assert effects, [f.id for f in report.findings]
    assert all(min(f.steps) >= 60 for f in effects if f.steps)
    ids = [f.id for f in report.findings]
    assert all(ids.index("lr-jump") < ids.index(f.id) for f in effects)


def _warmup_cosine(step: int) -> float:
    if step < 30:
        return 3e-3 * (step + 1) / 30
    return 1e-4 + 0.5 * (3e-3 - 1e-4) * (1 + math.cos(math.pi * (step - 30) / 90))


def _plateau_cuts(step: int) -> float:
    return 3e-3 * (0.1 ** (step // 40))  # downward cuts are what plateau schedulers do


@pytest.mark.parametrize(
    ("schedule", "log_every"), [(_warmup_cosine, 1), (_warmup_cosine, 10), (_plateau_cuts, 1)]
)
def test_smooth_schedules_and_cuts_are_not_jumps(
    tmp_path: Path, schedule: Callable[[int], float], log_every: int
) -> None:
    run = _run(tmp_path / "run", schedule, log_every=log_every)
    assert "lr-jump" not in [f.id for f in diagnose(run).findings]


def test_bulk_and_per_record_paths_agree_and_state_round_trips(jumped: Path) -> None:
    records = list(read_run(jumped).records)
    one = LRJumpDetector()
    for r in records:
        one.update(r)
    from stabletrain.detectors.base import feed

    bulk = LRJumpDetector()
    feed(bulk, records)
    assert bulk.state_dict() == one.state_dict()
    half = LRJumpDetector()
    for r in records[:61]:
        half.update(r)
    resumed = LRJumpDetector()
    resumed.load_state_dict(half.state_dict())
    for r in records[61:]:
        resumed.update(r)
    assert resumed.state_dict() == one.state_dict()


def _from_scheduler(
    make: Callable[[torch.optim.Optimizer], object], steps: int = 120
) -> list[float]:
    """The LR a real torch scheduler gives at each of ``steps`` steps (stepped once a step)."""
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1e-2)
    sched = make(opt)
    out = []
    for _ in range(steps):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()  # type: ignore[attr-defined]
    return out


def _yolox_warmup(step: int) -> float:
    """YOLOX's ``yoloxwarmcos`` warm-up: quadratic in the iteration (lr * (it / warm)^2), so its
    logged LR quadruples from iteration 10 to 20 (YOLOX issue #308: 7.7e-7 -> 3.1e-6)."""
    warm = 60
    if step < warm:
        return 1e-2 * (step / warm) ** 2
    return 1e-4 + 0.5 * (1e-2 - 1e-4) * (1 + math.cos(math.pi * (step - warm) / 60))


_ONECYCLE = _from_scheduler(
    lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=1e-2, total_steps=121)
)
_EXP_WARMUP = _from_scheduler(
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: 10 ** (min(s, 40) / 10 - 4))
)
_CUBIC_WARMUP = _from_scheduler(
    lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: max(min(s / 50, 1.0), 0.0) ** 3)
)


@pytest.mark.parametrize("log_every", [1, 10])
@pytest.mark.parametrize(
    "schedule",
    [
        _yolox_warmup,
        _ONECYCLE.__getitem__,
        _EXP_WARMUP.__getitem__,
        _CUBIC_WARMUP.__getitem__,
    ],
    ids=["yolox-quadratic", "onecycle", "exponential", "cubic"],
)
def test_smooth_warmups_of_any_shape_are_not_jumps(
    tmp_path: Path, schedule: Callable[[int], float], log_every: int
) -> None:
    """A warm-up is a schedule whatever its shape: the LR's rise per step shrinks (a power law)
    or stays (an exponential) or grows smoothly (one-cycle's cosine), logged at every step or
    every 10th; none of them is a discontinuity against the LR's own trend."""
    run = _run(tmp_path / "run", schedule, log_every=log_every)
    assert "lr-jump" not in [f.id for f in diagnose(run).findings]


def _jump_inside_warmup(step: int) -> float:
    base = 1e-3 * min(step + 1, 40) / 40  # a linear warm-up...
    return base * (100.0 if step >= 25 else 1.0)  # ...that a bug multiplies by 100 at step 25


@pytest.mark.parametrize("log_every", [1, 10])
def test_a_jump_inside_a_warmup_is_still_a_jump(tmp_path: Path, log_every: int) -> None:
    run = _run(tmp_path / "run", _jump_inside_warmup, log_every=log_every)
    jump = next(f for f in diagnose(run).findings if f.id == "lr-jump")
    assert jump.steps == ([25] if log_every == 1 else [30])
