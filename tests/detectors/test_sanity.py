"""The config sanity table (detectors/sanity.py): each rule fires on a trainer config with the
mistake and not on the shipped configs; its fix is a config the reference trainer accepts and that
no rule flags; the doctor reports a rule only when the log shows the run was not clearly healthy
(scripted logs), and on a real digits run with AdamW's weight decay 5.0 the change set puts the
decay back without touching the LR."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.configs.read import read_config
from stabletrain.detectors.sanity import RULES, SanityDetector, sanity_findings, violations
from stabletrain.doctor import diagnose
from stabletrain.lint_rules import lint_facts
from stabletrain.records import ConfigFacts, StepRecord
from stabletrain.report.advice import watch_for
from stabletrain.train.config import load_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"

#: rule id -> (shipped config, overrides that make the mistake)
MISTAKES: dict[str, tuple[str, list[str]]] = {
    "adam-betas-unbounded": ("digits-cnn.yaml", ["optim.betas=[0.999, 0.9]"]),
    "adam-beta1-low": ("tiny-gpt.yaml", ["optim.betas=[0.0, 0.99]"]),
    "weight-decay-large": ("digits-cnn.yaml", ["optim.weight_decay=5.0"]),
    "weight-decay-coupled": ("tiny-gpt.yaml", ["optim.name=adam", "optim.weight_decay=0.1"]),
    "dropout-large": ("digits-cnn.yaml", ["model.cnn.dropout=0.9"]),
    "adam-eps-large": ("tiny-gpt.yaml", ["optim.eps=0.01"]),
    "sgd-momentum-high": ("digits-cnn.yaml", ["optim.name=sgd", "optim.momentum=0.99"]),
    "init-std-tiny": ("digits-cnn.yaml", ["model.cnn.init=normal", "model.cnn.init_std=1e-3"]),
    "context-short": ("tiny-gpt.yaml", ["data.seq_len=8"]),
}


def _trainer_facts(tmp_path: Path, config: str, overrides: list[str]) -> tuple[Path, ConfigFacts]:
    """The config as the trainer writes it into a run dir, read back as facts (a language model's
    vocabulary comes from the run's meta.json: given here)."""
    cfg = load_config(CONFIGS / config, overrides)
    path = tmp_path / "config.yaml"
    path.write_text(cfg.to_yaml())
    facts = read_config(path)
    if cfg.model.name == "gpt":
        facts.set("vocab_size", 95, key="vocab_size")
    return path, facts


def test_the_table_covers_every_mistake_here() -> None:
    assert {r.id for r in RULES} == set(MISTAKES)


@pytest.mark.parametrize("rule_id", sorted(MISTAKES))
def test_each_rule_fires_and_its_fix_is_a_config_the_trainer_takes(
    rule_id: str, tmp_path: Path
) -> None:
    config, overrides = MISTAKES[rule_id]
    path, facts = _trainer_facts(tmp_path, config, overrides)
    found = {f.id: f for f in sanity_findings(facts)}
    assert set(found) == {rule_id}
    f = found[rule_id]
    assert f.severity == "warning" and f.source == "config"
    assert f.evidence["direction"] == next(r.effect for r in RULES if r.id == rule_id)
    changes = f.fixes[0].changes
    assert changes and not any(k.endswith(".lr") for k in changes)  # the LR is never the fix
    fixed = load_config(path, [f"{k}={json.dumps(v)}" for k, v in changes.items()])
    again = tmp_path / "fixed.yaml"
    again.write_text(fixed.to_yaml())
    facts2 = read_config(again)
    if fixed.model.name == "gpt":
        facts2.set("vocab_size", 95, key="vocab_size")
    assert violations(facts2) == []
    assert rule_id in {x.id for x in lint_facts(facts)}  # `stabletrain lint` says it too
    assert watch_for(rule_id) != watch_for("no-such-id")  # the report says what to watch after


@pytest.mark.parametrize("config", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_break_no_rule(config: str, tmp_path: Path) -> None:
    _, facts = _trainer_facts(tmp_path, config, [])
    assert violations(facts) == []


def test_a_usual_decay_at_a_huge_lr_is_not_blamed_on_the_decay(tmp_path: Path) -> None:
    """AdamW at lr 0.1 with the usual decay 0.01 decays 1e-3 per step: the LR is the problem (its
    own rules), and "set the decay to 0.01" would change nothing."""
    _, facts = _trainer_facts(tmp_path, "digits-cnn.yaml", ["optim.lr=0.1"])
    assert violations(facts) == []
    _, facts = _trainer_facts(tmp_path, "digits-cnn.yaml", ["optim.weight_decay=0.3"])
    assert violations(facts) == []  # the top of the usual range at the usual LR


def test_betas_equal_are_bounded_and_sgd_with_usual_settings_passes() -> None:
    facts = ConfigFacts(format="yaml")
    facts.set("optimizer", "adam", key="optim")
    facts.set("beta1", 0.9, key="betas[0]")
    facts.set("beta2", 0.9, key="betas[1]")  # beta1² = 0.81 < 0.9: bounded
    assert violations(facts) == []
    facts.set("beta2", 0.8, key="betas[1]")
    (rule, v), *_ = violations(facts)
    assert rule.id == "adam-betas-unbounded" and v.changes == {"betas": [0.9, 0.999]}
    sgd = ConfigFacts(format="yaml")
    for name, value in (("optimizer", "sgd"), ("lr", 0.1), ("momentum", 0.9)):
        sgd.set(name, value, key=name)
    sgd.set("weight_decay", 5e-4, key="weight_decay")
    assert violations(sgd) == []


def _classifier_log(losses: list[float], eval_loss: float | None) -> list[StepRecord]:
    recs = [StepRecord(step=i, loss=x) for i, x in enumerate(losses)]
    if eval_loss is not None:
        recs.append(StepRecord(step=len(losses), kind="eval", eval_loss=eval_loss))
    return recs


def _facts(**extra: object) -> ConfigFacts:
    facts = ConfigFacts(format="yaml")
    facts.set("optimizer", "adamw", key="optim.name")
    facts.set("lr", 3e-3, key="optim.lr")
    facts.set("weight_decay", 5.0, key="optim.weight_decay")
    for name, value in extra.items():
        facts.set(name, value, key=name)
    return facts


def _replay(records: list[StepRecord], facts: ConfigFacts) -> list[str]:
    det = SanityDetector()
    for r in records:
        det.update(r)
    return [f.id for f in det.finish(facts) if f.severity == "warning"]


FALLING = [2.3 * math.exp(-i / 10) for i in range(60)]


@pytest.mark.parametrize(
    ("losses", "eval_loss", "extra", "want"),
    [
        # a classifier ending at 0.23 = 10% of ln 10: not clearly healthy -> reported
        (FALLING[:25], 0.23, {"num_classes": 10}, True),
        # ending near zero (eval 0.03 = 1% of ln 10): clearly healthy -> nothing
        (FALLING, 0.03, {"num_classes": 10}, False),
        # no eval: the train loss's end decides (0.0058: healthy)
        (FALLING, None, {"num_classes": 10}, False),
        # a language model: its loss cannot show it healthy -> reported
        (FALLING, None, {"vocab_size": 95}, True),
        # no scale at all and the loss fell: nothing to judge by -> nothing
        (FALLING, None, {}, False),
        # no scale, but the loss ended above its start -> reported
        (FALLING[:20] + [3.0] * 20, None, {}, True),
        # a non-finite loss -> reported, whatever the scale
        ([*FALLING, math.nan, *FALLING[-5:]], 0.01, {"num_classes": 10}, True),
    ],
)
def test_reported_only_when_the_run_was_not_clearly_healthy(
    losses: list[float], eval_loss: float | None, extra: dict[str, object], want: bool
) -> None:
    ids = _replay(_classifier_log(losses, eval_loss), _facts(**extra))
    assert ids == (["weight-decay-large"] if want else [])


def test_bulk_path_and_state_round_trip(scenarios: ModuleType) -> None:
    recs = _classifier_log([*FALLING, math.inf, *FALLING[:30]], 0.5)
    scenarios.assert_bulk_and_state_agree(SanityDetector, recs, _facts(num_classes=10))


@pytest.fixture(scope="module")
def decayed(tmp_path_factory: pytest.TempPathFactory, reference_run: Callable[..., Path]) -> Path:
    run = tmp_path_factory.mktemp("sanity") / "wd"
    return reference_run(
        "digits-cnn.yaml", run, "guard.preset=off", "train.epochs=2", "optim.weight_decay=5.0"
    )


def test_real_run_change_set_puts_the_decay_back_and_keeps_the_lr(decayed: Path) -> None:
    report = diagnose(decayed)
    f = next(f for f in report.findings if f.id == "weight-decay-large")
    assert f.severity == "warning" and f.source in ("log", "both")
    cs = report.change_set
    assert cs.changes.get("optim.weight_decay") == 0.01
    assert "optim.lr" not in cs.changes
