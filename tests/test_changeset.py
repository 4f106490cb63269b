"""The report's change set (report/changeset.py): one value per key, root cause first, and the
direction rules that cannot be broken — checked on real logs, short real trainings with the
reference trainer, and config files, plus the resolver's rules on scripted findings."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from stabletrain import lint
from stabletrain.cli import main
from stabletrain.doctor import diagnose
from stabletrain.records import ConfigFacts, Finding, Fix
from stabletrain.report import jsonfmt, text
from stabletrain.report.changeset import resolve

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
QUICK = ("train.epochs=2", "data.batch_size=256", "guard.preset=off", "run.tensorboard=false")


def train(config: str, run_dir: Path, *overrides: str) -> int:
    argv = ["train", str(CONFIGS / config), "--run-dir", str(run_dir), "--no-progress"]
    return main(argv + [a for o in overrides for a in ("--set", o)])


def _facts(**kv: tuple[object, str]) -> ConfigFacts:
    facts = ConfigFacts(source="run.yaml", format="stabletrain")
    for name, (value, key) in kv.items():
        facts.set(name, value, key=key)
    return facts


def _finding(id: str, *fixes: Fix, steps: list[int] | None = None, **ev: object) -> Finding:
    return Finding(id, "warning", id, steps=steps or [], evidence=dict(ev), fixes=list(fixes))


# -- the resolver's rules --------------------------------------------------------------------------


def test_one_value_per_key_root_cause_first() -> None:
    facts = _facts(lr=(0.1, "optim.lr"), max_grad_norm=(1.0, "train.max_grad_norm"))
    root = _finding("warmup-short", Fix("warm up", {"schedule.warmup_steps": 200}))
    effect = _finding(
        "loss-spike",
        Fix("lower 2x", {"optim.lr": 0.05}, relative={"lr": 0.5}),
        Fix("warm up", {"schedule.warmup_steps": 500}),
        Fix("bf16", {"train.precision": "bf16"}),
    )
    later = _finding(
        "loss-divergence", Fix("lower 3x", {"optim.lr": 0.033}, relative={"lr": 1 / 3})
    )
    cs = resolve([root, effect, later], facts)
    assert cs.cause == "warmup-short"
    # the root cause's repair owns the step size; an effect only adds keys of another kind
    assert cs.changes == {"schedule.warmup_steps": 200, "train.precision": "bf16"}
    assert cs.reasons["schedule.warmup_steps"].startswith("warmup-short")
    assert any("loss-spike" in d and "warmup_steps=500" in d for d in cs.dropped)
    assert any("loss-spike" in d and "warmup-short's to change" in d for d in cs.dropped)
    # without a step-size change at the root, the first effect that has one decides, once
    root = _finding("fp16-overflow", Fix("bf16", {"train.precision": "bf16"}))
    cs = resolve([root, effect, later], facts)
    assert cs.changes == {"train.precision": "bf16", "optim.lr": 0.05, "schedule.warmup_steps": 500}


def test_instability_never_raises_the_lr_and_progress_never_lowers_it() -> None:
    facts = _facts(lr=(1e-3, "optim.lr"))
    up = Fix("raise", {"optim.lr": 1e-2}, relative={"lr": 10.0})
    down = Fix("lower", {"optim.lr": 5e-4}, relative={"lr": 0.5})
    assert resolve([_finding("loss-spike", up)], facts).changes == {}
    assert resolve([_finding("underfitting", down)], facts).changes == {}
    assert resolve([_finding("underfitting", up)], facts).changes == {"optim.lr": 1e-2}
    dropped = resolve([_finding("nonfinite-loss", up)], facts).dropped
    assert dropped and "wrong way" in dropped[0]


def test_opposite_directions_on_the_lr_keep_the_root_cause_or_neither() -> None:
    facts = _facts(lr=(1e-3, "optim.lr"))
    up = Fix("raise", relative={"lr": 10.0})
    down = Fix("lower", relative={"lr": 0.5})
    cs = resolve([_finding("loss-spike", down), _finding("underfitting", up)], facts)
    assert cs.changes == {"optim.lr": 5e-4} and any("root cause" in d for d in cs.dropped)
    # the root cause has no say on the LR: neither direction is applied
    root = _finding("overfitting", Fix("regularise", {"optim.weight_decay": 0.1}))
    cs = resolve([root, _finding("loss-spike", down), _finding("underfitting", up)], facts)
    assert "optim.lr" not in cs.changes and cs.changes == {"optim.weight_decay": 0.1}
    assert any("left unchanged" in d for d in cs.dropped)


def test_lr_values_are_relative_to_the_configured_lr() -> None:
    # a detector that computed its value from another base (the log's peak) does not decide it
    facts = _facts(lr=(5e-4, "learning_rate"))
    cs = resolve(
        [
            _finding(
                "loss-spike", Fix("lower 3x", {"learning_rate": 0.0167}, relative={"lr": 1 / 3})
            )
        ],
        facts,
    )
    assert cs.changes == {"learning_rate": 0.00017}
    assert cs.base_lr == 5e-4 and "configured" in (cs.base_lr_source or "")


def test_clip_already_set_is_not_enabled_again_nor_loosened_by_instability() -> None:
    facts = _facts(max_grad_norm=(1.0, "train.max_grad_norm"))
    same = Fix("Enable gradient clipping at norm 1.0", {"train.max_grad_norm": 1.0})
    looser = Fix("Raise the clip", {"train.max_grad_norm": 1.5})
    cs = resolve([_finding("loss-spike", same), _finding("grad-spike", looser)], facts)
    assert cs.changes == {}
    assert any("already set" in d for d in cs.dropped)
    assert any("raises max_grad_norm" in d for d in cs.dropped)
    # under SGD a saturated clip stalls progress: loosening it is the fix
    stall = _finding("clip-saturated", looser, direction="progress")
    assert resolve([stall], facts).changes == {"train.max_grad_norm": 1.5}


def test_framework_default_clip_counts_as_set() -> None:
    facts = ConfigFacts(source="trainer_state.json", format="hf-trainer-state")
    cs = resolve([_finding("loss-spike", Fix("Enable clipping", {"max_grad_norm": 1.0}))], facts)
    assert cs.changes == {} and any("already set" in d for d in cs.dropped)


def test_alternatives_are_listed_not_merged() -> None:
    facts = _facts(precision=("fp16", "train.precision"))
    f = _finding(
        "fp16-overflow",
        Fix("bf16", {"train.precision": "bf16"}),
        Fix("Or, if fp16 is required: a conservative scaler", {"amp.init_scale": 1024.0}),
    )
    cs = resolve([f], facts)
    assert cs.changes == {"train.precision": "bf16"}
    assert [a.changes for a in cs.alternatives] == [{"amp.init_scale": 1024.0}]


# -- real logs -------------------------------------------------------------------------------------


def _hf_lr_jump_state(path: Path) -> Path:
    """An HF trainer_state.json configured at 5e-4 (warm-up to it, then flat) whose scheduler
    jumps the LR 100x at step 300; the loss blows up to NaN within 30 steps. Shaped like the
    trainproof gallery's HF states (logging every 5 steps, grad_norm logged)."""
    rng = random.Random(0)
    rows = []
    for step in range(5, 505, 5):
        lr = 5e-4 * min(1.0, step / 50) if step <= 300 else 5e-2
        if step <= 300:
            loss = 2.3 * math.exp(-step / 150) + 0.9 + rng.uniform(-0.03, 0.03)
            g = 1.2 * math.exp(-step / 200) + 0.4 + rng.uniform(-0.05, 0.05)
        else:
            k = (step - 300) // 5
            loss = [1.3, 2.9, 7.5, 16.0, 31.0][k - 1] if k <= 5 else math.nan
            g = [40.0, 310.0, 2400.0, 9e3, 5e4][k - 1] if k <= 5 else math.nan
        rows.append(
            {"epoch": step / 250, "grad_norm": g, "learning_rate": lr, "loss": loss, "step": step}
        )
    state = {"global_step": 500, "logging_steps": 5, "max_steps": 500, "log_history": rows}
    out = path / "trainer_state.json"
    out.write_text(json.dumps(state))
    return out


def test_hf_lr_jump_never_gets_an_lr_above_the_configured_one(tmp_path: Path) -> None:
    # the bug: the LR fix came from the log's peak LR (5e-2 after the jump): learning_rate 0.0167
    report = diagnose(_hf_lr_jump_state(tmp_path))
    assert report.problems
    cs = report.change_set
    lrs = [v for k, v in cs.changes.items() if k == "learning_rate"]
    assert all(v <= 5e-4 for v in lrs), cs.changes
    assert cs.base_lr is not None and cs.base_lr <= 5e-4
    data = json.loads(jsonfmt.render(report))
    assert data["change_set"]["changes"] == cs.changes
    # no finding's own fix raises it either
    for f in report.findings:
        for fx in f.fixes:
            v = fx.changes.get("learning_rate")
            assert v is None or v <= 5e-4, (f.id, fx)


@pytest.mark.parametrize(
    "log",
    [
        "bigscience_tr1_13B/megatron_iterations_extracted.log",
        "issue_chinese_llama_alpaca_534_lossscale/log.txt",
        "issue_glm4_174_gradnorm_rise_nan/log.txt",
        "trainproof_gallery/lr_hot_seed42_trainer_state.json",
        "trainproof_gallery/fp16_nan_seed42_trainer_state.json",
        "issue_megatron_ds_396_bf16_gradnorm_nan/log.txt",
    ],
)
def test_real_logs_change_set_is_consistent(real_logs: Path, log: str) -> None:
    report = diagnose(real_logs / log)
    cs = report.change_set
    lr = next((v for k, v in cs.changes.items() if k in ("--lr", "learning_rate", "lr")), None)
    if lr is not None and cs.base_lr is not None:
        assert lr <= cs.base_lr  # every one of these runs is unstable
    # a precision switch never leaves both fp16 and bf16 on
    on = {k for k, v in cs.changes.items() if v is True}
    assert not ({"--fp16", "--bf16"} <= on or {"fp16", "bf16"} <= on)
    assert "Change set" in text.render(report)


# -- short real trainings (reference trainer, guard off) ---------------------------------------


def test_too_low_lr_is_never_told_to_lower_it(tmp_path: Path) -> None:
    run = tmp_path / "run"
    assert train("digits-cnn.yaml", run, *QUICK, "optim.lr=1e-6") == 0
    report = diagnose(run)
    assert report.problems  # chance level: the run learned nothing
    lr = report.change_set.changes.get("optim.lr")
    assert lr is None or lr >= 1e-6, report.change_set


def test_instability_with_clip_already_set(tmp_path: Path) -> None:
    # SGD at lr 10 with the reference config's clip 1.0: not "enable clipping at 1.0", never a
    # looser clip, never a higher LR
    run = tmp_path / "run"
    assert train("digits-cnn.yaml", run, *QUICK, "optim.name=sgd", "optim.lr=10.0") == 0
    report = diagnose(run)
    assert report.problems
    for f in report.findings:
        for fx in f.fixes:
            assert not fx.description.startswith("Enable gradient clipping"), (f.id, fx)
    cs = report.change_set
    assert cs.changes.get("optim.lr", 10.0) <= 10.0
    assert cs.changes.get("train.max_grad_norm", 1.0) <= 1.0


# -- lint --------------------------------------------------------------------------------------


def test_lint_shows_initial_scale_power_as_written_and_no_growth_factor(tmp_path: Path) -> None:
    ds = tmp_path / "ds_config.json"
    ds.write_text(
        json.dumps(
            {
                "train_micro_batch_size_per_gpu": 8,
                "gradient_clipping": 1.0,
                "fp16": {"enabled": True, "initial_scale_power": 32, "loss_scale_window": 100},
                "optimizer": {"type": "AdamW", "params": {"lr": 1e-4}},
            }
        )
    )
    out = text.render(lint(ds))
    assert "- fp16.initial_scale_power: 32" in out and "4.29e+09" not in out
    assert lint(ds).change_set.changes["fp16.initial_scale_power"] == 10
    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "optim: {name: adamw, lr: 0.001}\n"
        "train: {max_grad_norm: 1.0, precision: fp16}\n"
        "amp: {init_scale: 65536, growth_interval: 100, growth_factor: 2.0}\n"
    )
    report = lint(cfg)
    keys = {k for f in report.findings for fx in f.fixes for k in fx.changes}
    keys |= set(report.change_set.changes)
    # docs/guard.md: the growth factor stays a power of two; slowness comes from the interval
    assert not any("growth_factor" in k for k in keys), keys
    assert any("growth_interval" in k for k in keys)


def test_lr_base_is_what_ran_before_the_problem_when_the_config_says_far_more(
    tmp_path: Path,
) -> None:
    # an LR fact of 0.05 (a config of another run, or one taken from the log after its jump)
    # while the log ran at 5e-4 before the trouble: the cut starts from 5e-4
    from stabletrain.logs.read import read_run

    run = read_run(_hf_lr_jump_state(tmp_path))
    facts = _facts(lr=(0.05, "learning_rate"))
    spike = _finding("loss-spike", Fix("lower 2x", relative={"lr": 0.5}), steps=[315])
    cs = resolve([spike], facts, run.records)
    assert cs.base_lr == 5e-4 and cs.changes == {"learning_rate": 0.00025}
    # a raise is judged against the configured value too: never below it
    up = _finding("underfitting", Fix("raise 10x", relative={"lr": 10.0}), steps=[315])
    cs = resolve([up], facts, run.records)
    assert cs.changes == {} and "lowers lr" in cs.dropped[0]


def test_warmup_advice_fits_the_run(tmp_path: Path) -> None:
    # a 100-step run is not told to warm up for 500 steps (it would never reach its LR)
    cfg = tmp_path / "run.yaml"
    cfg.write_text("optim: {name: adamw, lr: 0.02}\ntrain: {max_steps: 100, max_grad_norm: 1.0}\n")
    report = lint(cfg)
    warm = [
        v
        for f in report.findings
        for fx in f.fixes
        for k, v in fx.changes.items()
        if "warmup_steps" in k
    ]
    assert warm and all(0 < v <= 20 for v in warm), warm


def test_a_root_cause_fixed_in_code_changes_no_step_size(real_logs: Path) -> None:
    # intermittent NaN steps with finite steps around them: the batches, not the LR
    report = diagnose(real_logs / "issue_timemoe_71_intermittent_nan/log.txt")
    cs = report.change_set
    assert cs.actions and "batch" in cs.actions[0].description.lower()
    assert "learning_rate" not in cs.changes, cs.changes


def test_a_change_to_the_current_setting_is_dropped_framework_default_included(
    tmp_path: Path,
) -> None:
    """``model.cnn.init: kaiming`` for a reference-trainer config that leaves the init to its
    default (kaiming) changes nothing: it is left out as already set, not applied."""
    from stabletrain.configs.read import read_config

    cfg = tmp_path / "run.yaml"
    cfg.write_text(
        "run: {name: x}\ndata: {name: digits}\nmodel: {name: cnn}\n"
        "optim: {name: sgd, lr: 3.0}\nschedule: {name: constant}\n",
        encoding="utf-8",
    )
    facts = read_config(cfg)
    fix = Fix("init", {"model.cnn.init": "kaiming", "model.cnn.init_std": None})
    cs = resolve([_finding("bad-init", fix)], facts)
    assert "model.cnn.init" not in cs.changes and "model.cnn.init_std" not in cs.changes
    assert any("model.cnn.init=" in d and "already set" in d for d in cs.dropped)
    other = resolve([_finding("bad-init", Fix("init", {"model.cnn.init": "xavier"}))], facts)
    assert other.changes == {"model.cnn.init": "xavier"}


def test_findings_fix_text_uses_the_change_sets_lr_base(tmp_path: Path) -> None:
    """With a given config at 5e-4 and a log whose scheduler jumped 100x (its 90th-percentile
    LR 0.05), the header notes the mismatch; every finding's LR fix is computed from the same
    base as the change set (5e-4, the LR before the problem), never from 0.05."""
    from stabletrain.detectors.fixes import fmt, nice

    cfg = tmp_path / "args.json"
    cfg.write_text(json.dumps({"learning_rate": 5e-4, "max_grad_norm": 1.0, "warmup_steps": 50}))
    (tmp_path / "ckpt").mkdir()
    state = _hf_lr_jump_state(tmp_path / "ckpt")
    doc = json.loads(state.read_text())
    for row in doc["log_history"]:  # after the jump the schedule decays again (not a warm-up)
        if row["step"] > 300:
            row["learning_rate"] = 5e-2 * (1 - (row["step"] - 300) / 1000)
    state.write_text(json.dumps(doc))
    report = diagnose(state, cfg)
    assert any("using the log's value" in n for n in report.notes)  # reconcile took ~0.05
    cs = report.change_set
    assert cs.base_lr == pytest.approx(5e-4)
    rel = [(f.id, x) for f in report.findings for x in f.fixes if "lr" in x.relative]
    assert rel
    for fid, x in rel:
        want = nice(cs.base_lr * x.relative["lr"])
        assert x.changes.get("learning_rate", want) == pytest.approx(want), (fid, x)
        assert "0.05 →" not in x.description and "0.05 -> " not in x.description, (fid, x)
        if "→" in x.description:
            assert f"{fmt(cs.base_lr)} → {fmt(want)}" in x.description, (fid, x)


def test_the_lr_base_is_not_taken_from_a_warm_up_ramp(tmp_path: Path) -> None:
    """A 1000-step warm-up in a 40-step GPT run: every logged LR is on the ramp (3e-6 → 1.2e-4
    of a configured 3e-3). The ramp is not what ran: the base is the configured LR, and with no
    config the ramp's last LR, never its median."""
    from stabletrain.report.changeset import base_lr

    run = tmp_path / "run"
    overrides = ("schedule.warmup_steps=1000", "guard.preset=off", "train.max_steps=40")
    assert train("tiny-gpt.yaml", run, *overrides, "run.tensorboard=false") == 0
    report = diagnose(run)
    cs = report.change_set
    assert cs.base_lr == 3e-3 and "warm-up ramp" in (cs.base_lr_source or ""), cs.base_lr_source
    for f in report.findings:
        for fx in f.fixes:
            lr = fx.changes.get("optim.lr")
            assert lr is None or lr >= 3e-4, (f.id, fx)
    lrs = [r.lr for r in report.records if r.kind == "train" and r.lr]
    base, source = base_lr(ConfigFacts(), report.records, None)
    assert base == lrs[-1] and "last LR of the warm-up ramp" in (source or "")
