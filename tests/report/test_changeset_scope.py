"""What the change set may hold (fix loop round 2, tune half):

- a root cause whose only "fix" says that nothing should change (the tiny GPT with dropout 0.9:
  its early spikes read as ``warmup-short``, whose warm-up already covers a fifth of the run) is
  not a cause "fixed in code or data": the other findings of its chain keep their changes, still
  under the direction rules; a root fixed in code (a bad batch) still blocks them;
- a change to a key the configured schedule or optimizer does not read (a plateau patience under
  one-cycle, the momentum under Adam) is left out, with the reason.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.detectors.badbatch import bad_batch_fixes
from stabletrain.detectors.fixes import scale_lr_fix
from stabletrain.doctor import diagnose
from stabletrain.records import ConfigFacts, Finding, Fix
from stabletrain.report import chain
from stabletrain.report.changeset import resolve
from stabletrain.report.reads import unread

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def _facts() -> ConfigFacts:
    facts = ConfigFacts(format="stabletrain")
    facts.set("lr", 3e-3, "optim.lr")
    facts.set("optimizer", "adamw", "optim.name")
    facts.set("warmup_steps", 30, "schedule.warmup_steps")
    facts.set("max_grad_norm", 1.0, "train.max_grad_norm")
    return facts


def _spikes(facts: ConfigFacts) -> Finding:
    return Finding(
        "loss-spike", "warning", "4 loss spikes", steps=[12, 20, 33, 41],
        fixes=[scale_lr_fix(facts, 0.5, "Lower the learning rate")],
    )  # fmt: skip


def _warmup_declined() -> Finding:
    # the warm-up detector's own words when a longer warm-up would keep the LR low for most of
    # the run (detectors/warmup.py): a sentence, no change
    return Finding(
        "warmup-short", "warning", "35 of 39 unstable steps fall in the first 59 steps",
        steps=[12, 20, 33, 41],
        fixes=[Fix("The warm-up (30 steps) already covers a fifth of the run or more; a longer "
                   "one would keep the LR low for most of it")],
    )  # fmt: skip


def test_a_root_whose_fix_changes_nothing_does_not_block_its_chain() -> None:
    facts = _facts()
    findings = chain.order([_spikes(facts), _warmup_declined()])
    assert [f.id for f in findings] == ["warmup-short", "loss-spike"]  # one chain, the root first
    cs = resolve(findings, facts)
    assert cs.changes.get("optim.lr") == pytest.approx(1.5e-3), cs
    assert not any("fixed in code" in d for d in cs.dropped), cs.dropped


def test_a_root_fixed_in_code_still_blocks_its_chain() -> None:
    facts = _facts()
    bad = Finding("bad-batch", "error", "NaN batch", steps=[12], fixes=bad_batch_fixes(facts, [12]))
    cs = resolve(chain.order([_spikes(facts), bad]), facts)
    assert "optim.lr" not in cs.changes, cs
    assert cs.actions and cs.actions[0].code


def test_the_chain_keeps_the_direction_rules_under_a_root_that_changes_nothing() -> None:
    facts = _facts()
    raise_lr = scale_lr_fix(
        facts, 3.0, "Raise the learning rate"
    )  # an instability finding raising it
    spikes = Finding("loss-spike", "warning", "spikes", steps=[12], fixes=[raise_lr])
    cs = resolve(chain.order([spikes, _warmup_declined()]), facts)
    assert "optim.lr" not in cs.changes, cs
    assert any("the wrong way" in d for d in cs.dropped), cs.dropped


@pytest.fixture(scope="module")
def onecycle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The digits CNN under one-cycle with SGD's max LR 0.1 kept under AdamW (round 2's
    r2_cnn_onecycle_sgd_lr): its eval loss wobbles, and the eval-unstable finding proposes a
    plateau patience — a key one-cycle never reads."""
    run = tmp_path_factory.mktemp("onecycle") / "run"
    argv = ["train", str(CONFIGS / "digits-cnn.yaml"), "--run-dir", str(run), "--no-progress"]
    sets = ["guard.preset=off", "run.tensorboard=false", "schedule.name=onecycle",
            "schedule.warmup_ratio=0.3", "optim.lr=0.1"]  # fmt: skip
    assert main(argv + [a for s in sets for a in ("--set", s)]) == 0
    return run


def test_a_key_the_schedule_does_not_read_is_left_out(onecycle: Path) -> None:
    report = diagnose(onecycle)
    proposed = {k for f in report.findings for x in f.fixes for k in x.changes}
    assert "schedule.plateau_patience" in proposed, [f.id for f in report.findings]
    cs = report.change_set
    assert "schedule.plateau_patience" not in cs.changes, cs
    assert any(
        d.startswith("eval-unstable: schedule.plateau_patience=3 left out") and "onecycle" in d
        for d in cs.dropped
    ), cs.dropped
    assert cs.changes.get("optim.lr", 0.1) < 0.1  # the LR cut stays


def _lrs(**schedule: object) -> list[float] | None:
    """The reference trainer's LR over 40 steps for a schedule section (a plateau schedule is
    stepped with a val loss that never improves); None when the trainer refuses the section."""
    import torch
    from pydantic import ValidationError

    from stabletrain.train.config import ScheduleSection
    from stabletrain.train.schedules import build_scheduler

    try:
        cfg = ScheduleSection(**schedule)  # type: ignore[arg-type]
    except ValidationError:
        return None
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    sched = build_scheduler(cfg, opt, 40)
    out = []
    for _ in range(40):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step(1.0) if cfg.name == "plateau" else sched.step()  # type: ignore[call-arg]
    return out


@pytest.mark.parametrize("name", ["constant", "cosine", "onecycle", "plateau"])
@pytest.mark.parametrize(
    ("fact", "value"),
    [("warmup_steps", 10), ("warmup_ratio", 0.25), ("min_lr", 0.05),
     ("plateau_patience", 2), ("plateau_factor", 0.5)],
)  # fmt: skip
def test_what_the_change_set_calls_unread_is_what_the_trainer_ignores(
    name: str, fact: str, value: object
) -> None:
    facts = ConfigFacts(format="stabletrain")
    facts.set("schedule", name, "schedule.name")
    called_unread = unread(facts, f"schedule.{fact}", {}) is not None
    changed = _lrs(name=name, **{fact: value})
    assert called_unread == (changed is None or changed == _lrs(name=name)), (name, fact)


def _updates(**optim: object) -> list[float]:
    """The reference trainer's optimizer's first 3 updates of one weight under a fixed gradient."""
    import torch

    from stabletrain.train.config import OptimSection
    from stabletrain.train.schedules import build_optimizer

    model = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(1.0)
    opt = build_optimizer(OptimSection(**optim), model)  # type: ignore[arg-type]
    out = []
    for g in (1.0, -0.5, 2.0):
        model.weight.grad = torch.full_like(model.weight, g)
        opt.step()
        out.append(model.weight.detach().item())
    return out


@pytest.mark.parametrize("name", ["sgd", "adam", "adamw"])
@pytest.mark.parametrize(
    ("fact", "key", "value"),
    [("momentum", "optim.momentum", {"momentum": 0.5}),
     ("beta1", "optim.betas[0]", {"betas": (0.5, 0.999)}),
     ("eps", "optim.eps", {"eps": 0.5})],
)  # fmt: skip
def test_optimizer_settings_called_unread_are_ignored_by_the_trainer(
    name: str, fact: str, key: str, value: dict[str, object]
) -> None:
    facts = ConfigFacts(format="stabletrain")
    facts.set("optimizer", name, "optim.name")
    called_unread = unread(facts, key, {}) is not None
    assert called_unread == (_updates(name=name, **value) == _updates(name=name)), (name, fact)
