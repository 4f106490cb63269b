"""The doctor on the five seed postmortems, a real stable run, and real public logs.

Each seed fixture (tests/fixtures/seeds/) writes the logs the seed's author looked at, in the
format their tool wrote (TensorBoard, per-epoch CSV, console text, HF trainer_state.json, a
stabletrain run log), plus the "before" config; the doctor must arrive at the seed's diagnosis.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.doctor import diagnose, join
from stabletrain.records import Finding, Fix
from stabletrain.report.model import Report


def _fixtures() -> ModuleType:
    path = Path(__file__).parent / "fixtures" / "seeds" / "__init__.py"
    spec = importlib.util.spec_from_file_location("stabletrain_seed_fixtures", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


SEEDS = _fixtures()


@pytest.fixture(scope="module")
def seeds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report]:
    out = tmp_path_factory.mktemp("seeds")
    reports = {}
    for name in SEEDS.NAMES:
        log, config = SEEDS.generate(name, out)
        reports[name] = diagnose(log, config)
    return reports


def _by_id(report: Report) -> dict[str, Finding]:
    return {f.id: f for f in report.findings}


def _ids(report: Report) -> list[str]:
    return [f.id for f in report.findings]


def test_seed000_grad_norm_hovering_under_clip_and_short_warmup(seeds: dict[str, Report]) -> None:
    r = seeds["seed000"]
    f = _by_id(r)
    clip = f["clip-near-threshold"]
    assert clip.severity == "warning"
    assert 3.4 <= clip.evidence["median_grad_norm"] <= 3.7
    assert any(fx.changes.get("max_grad_norm") == 2.0 for fx in clip.fixes)  # the seed's own fix
    assert "warmup-short" in f and any(
        "warmup_ratio" in fx.changes for fx in f["warmup-short"].fixes
    )
    unstable = f["eval-unstable"]
    assert unstable.steps == [1200, 2100]  # the two eval spikes
    # the config's warmup is the root: it comes before what it causes
    assert _ids(r).index("warmup-short") < _ids(r).index("clip-near-threshold")


def test_seed001_scheduler_cut_14_epochs_late_and_patience_conflict(
    seeds: dict[str, Report],
) -> None:
    f = _by_id(seeds["seed001"])
    late = f["scheduler-late"]
    assert late.evidence["best_epoch"] == 10 and late.evidence["cut_epoch"] == 24
    assert late.evidence["epochs_late"] == 14 and late.evidence["spike_epoch"] == 13
    assert "14 epochs" in late.title
    conflict = f["patience-conflict"]
    assert conflict.source == "both"  # the config predicted it, the log shows the LR cut
    assert conflict.evidence["plateau_patience"] == 10
    assert conflict.evidence["early_stop_patience"] == 10
    changes = {k: v for fx in conflict.fixes for k, v in fx.changes.items()}
    assert changes["scheduler_patience"] < changes["early_stopping_patience"]
    assert f["plateau-patience-long"].source == "both"
    ids = _ids(seeds["seed001"])
    assert ids.index("patience-conflict") < ids.index("scheduler-late")


def test_seed002_inf_grads_no_clipping_fp16(seeds: dict[str, Report]) -> None:
    r = seeds["seed002"]
    f = _by_id(r)
    grad = f["nonfinite-grad"]
    assert grad.severity == "error" and grad.steps[0] == 2 and grad.epochs[0] == 2
    assert f["no-grad-clipping"].source == "both"  # ds_config had none, and grads went to inf
    assert any("gradient_clipping" in fx.changes for fx in f["no-grad-clipping"].fixes)
    assert "fp16-prefer-bf16" in f
    ids = _ids(r)
    assert ids.index("no-grad-clipping") < ids.index("nonfinite-grad")
    assert r.worst_severity == "error"


def test_seed002_accuracy_at_chance(seeds: dict[str, Report]) -> None:
    assert "chance-level" in _by_id(seeds["seed002"])


def test_seed003_clip_saturated_growth_constant_lr_unstable_eval(
    seeds: dict[str, Report],
) -> None:
    f = _by_id(seeds["seed003"])
    sat = f["clip-saturated"]
    assert sat.evidence["fraction_clipped"] > 0.8
    assert "lr-constant" in f and f["lr-constant"].evidence["lr"] == 2e-5
    unstable = f["eval-unstable"]
    assert unstable.evidence["best"] == 0.5869
    assert "grad-norm-growth" in f
    growth = f["grad-norm-growth"]
    assert growth.epochs and min(growth.epochs) <= 2 and max(growth.epochs) >= 5


def test_seed004_loss_scale_collapse_from_a_high_init_and_4x_logging(
    seeds: dict[str, Report],
) -> None:
    r = seeds["seed004"]
    f = _by_id(r)
    init = f["loss-scale-init-high"]
    assert init.source == "both"
    assert any(
        "amp.init_scale" in fx.changes and fx.changes["amp.init_scale"] < 65536 for fx in init.fixes
    )
    assert f["loss-scale-collapse"].severity == "error"
    assert 231 in f["fp16-overflow"].steps  # every step inf once the weights are corrupted
    assert f["chance-level"].severity == "error"
    dup = f["duplicate-logging"]
    assert dup.evidence.get("copies", dup.evidence.get("repeats", 4)) == 4 or "4" in dup.title
    ids = _ids(r)
    assert ids.index("loss-scale-init-high") < ids.index("loss-scale-collapse")
    assert ids.index("loss-scale-collapse") < ids.index("chance-level")
    assert ids[-2:] != ["duplicate-logging", "loss-scale-init-high"]


def test_seed004_inf_grads_after_collapse_are_nonfinite(seeds: dict[str, Report]) -> None:
    # the seed's conclusion: once the scale has collapsed to its floor and the grads stay inf,
    # the gradients exploded — the overflows before it are still the scaler (fp16-overflow)
    f = _by_id(seeds["seed004"])
    grad = f["nonfinite-grad"]
    recs = {r.step: r for r in seeds["seed004"].records if r.kind == "train"}
    assert grad.steps and all(recs[s].loss_scale <= 1.0 for s in grad.steps)  # type: ignore[operator]
    assert grad.steps == [s for s in sorted(recs) if recs[s].loss_scale <= 1.0]  # type: ignore[operator]
    assert 231 in f["fp16-overflow"].steps and 231 not in grad.steps
    assert grad.severity == "error" and "does not say" in grad.explanation


def test_stable_run_gives_no_warnings(tmp_path: Path) -> None:
    run_dir, _config = SEEDS.stable(tmp_path)
    report = diagnose(run_dir)
    assert report.format == "stabletrain" and len(report.records) > 40
    assert [(f.id, f.title) for f in report.problems] == []


def _copy(config: Path, tmp_path: Path) -> Path:
    """The config under another path and with other bytes: a config given, not the run's own."""
    other = tmp_path / "given.yaml"
    other.write_text(config.read_text(encoding="utf-8") + "# given\n", encoding="utf-8")
    return other


def test_stable_run_config_advice_needs_confirmation(tmp_path: Path) -> None:
    run_dir, config = SEEDS.stable(tmp_path)
    alone = diagnose(run_dir)
    assert "warmup-short" not in {f.id for f in alone.findings}  # lr 1e-3, no warmup: no harm
    # the run's own config handed back: the very same report
    again = diagnose(run_dir, config, given_as="--patch")
    assert [(f.id, f.severity) for f in again.findings] == [
        (f.id, f.severity) for f in alone.findings
    ]
    assert again.change_set.changes == alone.change_set.changes == {}
    # another config predicts it: kept as info (the log would show it and does not), no change
    given = diagnose(run_dir, _copy(config, tmp_path))
    warm = _by_id(given)["warmup-short"]
    assert warm.severity == "info" and "log does not show it" in warm.explanation
    assert given.change_set.changes == {}


def test_without_config_only_confirmed_config_findings_are_kept(tmp_path: Path) -> None:
    run_dir, config = SEEDS.generate("seed004", tmp_path)
    alone = _by_id(diagnose(run_dir))  # the run dir's own config.yaml is linted too
    assert alone["loss-scale-init-high"].source == "both"
    assert "fp16-prefer-bf16" not in alone  # unconfirmed advice needs an explicit --config
    assert "fp16-prefer-bf16" not in _by_id(diagnose(run_dir, config))  # its own: the same
    # a given config's advice the log cannot confirm (no symptom of its own) stays as it was
    assert "fp16-prefer-bf16" in _by_id(diagnose(run_dir, _copy(config, tmp_path)))


def test_join_merges_same_id_and_confirms_predictions() -> None:
    seen = Finding(
        "clip-near-threshold",
        "warning",
        "hovering",
        explanation="norm 3.5 under 4.0.",
        steps=[10, 20],
        evidence={"median_grad_norm": 3.5},
        fixes=[Fix("lower", {"max_grad_norm": 2.0})],
    )
    predicted = Finding(
        "clip-near-threshold",
        "info",
        "clip high",
        evidence={"max_grad_norm": 4.0},
        fixes=[Fix("lower", {"max_grad_norm": 2.0})],
        source="config",
    )
    no_clip = Finding("no-grad-clipping", "info", "none", source="config")
    unrelated = Finding("beta2-slow", "info", "slow", source="config")
    spike = Finding("grad-spike", "warning", "spike", steps=[5])
    out = join([seen, spike], [predicted, no_clip, unrelated], keep_unconfirmed=False)
    by = {f.id: f for f in out}
    merged = by["clip-near-threshold"]
    assert merged.source == "both" and merged.severity == "warning"
    assert merged.evidence == {"max_grad_norm": 4.0, "median_grad_norm": 3.5}
    assert len(merged.fixes) == 1
    assert merged.explanation.startswith("The config predicted this and the log confirms it")
    assert by["no-grad-clipping"].source == "both" and by["no-grad-clipping"].severity == "warning"
    assert "grad-spike at step 5" in by["no-grad-clipping"].explanation
    assert "beta2-slow" not in by
    warm = Finding("warmup-short", "info", "short warmup", source="config")
    late = join(
        [Finding("grad-spike", "warning", "s", steps=[900])],
        [warm],
        keep_unconfirmed=False,
        span=(0, 1000),
    )
    assert late == [late[0]] and late[0].id == "grad-spike"  # a late spike says nothing of warmup
    early = join(
        [Finding("grad-spike", "warning", "s", steps=[40])],
        [warm],
        keep_unconfirmed=False,
        span=(0, 1000),
    )
    assert [f.id for f in early] == ["grad-spike", "warmup-short"]
    kept = join([seen], [unrelated], keep_unconfirmed=True)
    assert [f.id for f in kept] == ["clip-near-threshold", "beta2-slow"]


# -- real public logs -------------------------------------------------------------------------


def _real(real_logs: Path, rel: str) -> dict[str, Finding]:
    return _by_id(diagnose(real_logs / rel))


def test_real_trainproof_gallery(real_logs: Path) -> None:
    g = "trainproof_gallery"
    assert diagnose(real_logs / g / "healthy_seed42_trainer_state.json").problems == []
    fp16 = _real(real_logs, f"{g}/fp16_nan_seed42_trainer_state.json")
    assert fp16["nonfinite-grad"].severity == "error"
    assert _real(real_logs, f"{g}/lr_zero_seed42_trainer_state.json")["lr-zero"].severity == "error"
    assert "overfitting" in _real(real_logs, f"{g}/overfit_seed42_trainer_state.json")


def test_real_clean_hf_runs_have_no_errors(real_logs: Path) -> None:
    for rel in ("hf_gemma3_1b_clean_eval", "hf_serial_lain_tfevents"):
        assert diagnose(real_logs / rel).problems == [], rel


def test_real_megatron_bf16_grad_norm_nan(real_logs: Path) -> None:
    f = _real(real_logs, "issue_megatron_ds_396_bf16_gradnorm_nan/log.txt")
    assert f["nonfinite-grad"].severity == "error"


def test_real_gemma_nan_grad_comes_before_nan_loss(real_logs: Path) -> None:
    r = diagnose(real_logs / "issue_gemma_pytorch_24_fp16_nan" / "log.txt")
    ids = _ids(r)
    assert ids.index("nonfinite-grad") < ids.index("nonfinite-loss")
    assert "nonfinite-grad" in r.findings[ids.index("nonfinite-loss")].related


def test_real_bigscience_spikes_and_scale_drops(real_logs: Path) -> None:
    wanted = {"loss-spike", "loss-scale-collapse", "fp16-overflow"}
    for rel in ("bigscience_tr1_13B", "bigscience_tr8b_104B"):
        found = set(_real(real_logs, f"{rel}/megatron_iterations_extracted.log"))
        assert found & wanted, rel


def test_real_excerpts_that_blow_up_at_their_start_are_loss_spikes(real_logs: Path) -> None:
    # too short for the live baseline: judged against the values logged just before the jump
    tr1 = _real(real_logs, "bigscience_tr1_13B/megatron_iterations_extracted.log")["loss-spike"]
    assert tr1.steps[0] == 29050  # 2.77 -> 7.34, still 6.85 at 29090, back to 2.72 by 33240
    assert tr1.evidence["episodes"] == 1 and tr1.evidence["recovery_steps"] == [33240 - 29050]
    wide = _real(real_logs, "bigscience_tr8_104B_wide/megatron_iterations_extracted.log")
    assert wide["loss-spike"].steps[0] == 8741 and wide["grad-spike"].severity == "warning"
    tr8b = _real(real_logs, "bigscience_tr8b_104B/megatron_iterations_extracted.log")
    assert tr8b["loss-spike"].steps == list(range(17062, 17069))  # 2.67 -> 4.37, stays 4.1-4.4
    assert tr8b["loss-spike"].evidence["episodes"] == 1
    gemma = _real(real_logs, "issue_gemma_pytorch_24_fp16_nan/log.txt")["loss-spike"]
    assert gemma.evidence["worst_peak"] == pytest.approx(153318.95)
    assert gemma.evidence["recovery_steps"] == [1]
    for name in ("fp16_nan", "lr_hot"):
        f = _real(real_logs, f"trainproof_gallery/{name}_seed42_trainer_state.json")
        assert f["loss-spike"].severity == "error" and f["loss-spike"].evidence["unrecovered"] == 1


# keys each framework documents: HF TrainingArguments fields, Megatron-LM flags, ds_config keys,
# mmengine's optim_wrapper (written here from the frameworks' docs, not from detectors.fixes)
_HF_ARGS = {"learning_rate", "max_grad_norm", "warmup_steps", "warmup_ratio", "weight_decay"}
_HF_ARGS |= {"fp16", "bf16", "early_stopping_patience", "lr_scheduler_type"}
_MEGATRON = {"--lr", "--clip-grad", "--lr-warmup-iters", "--fp16", "--bf16", "--weight-decay"}
_MEGATRON |= {"--initial-loss-scale", "--loss-scale-window", "--min-loss-scale"}
_DS = {"gradient_clipping", "fp16.enabled", "bf16.enabled", "fp16.initial_scale_power"}
_DS |= {"fp16.loss_scale_window", "optimizer.params.lr", "scheduler.params.warmup_num_steps"}
_MMENGINE = {"optim_wrapper.clip_grad.max_norm", "optim_wrapper.optimizer.lr"}
_MMENGINE |= {"optim_wrapper.dtype", "optim_wrapper.optimizer.weight_decay"}


@pytest.mark.parametrize(
    ("log", "keys"),
    [
        ("bigscience_tr1_13B/megatron_iterations_extracted.log", _MEGATRON),
        ("bigscience_tr8b_104B/megatron_iterations_extracted.log", _MEGATRON),
        ("issue_megatron_ds_396_bf16_gradnorm_nan/log.txt", _MEGATRON),
        ("issue_chinese_llama_alpaca_534_lossscale/log.txt", _DS),
        ("issue_gemma_pytorch_24_fp16_nan/log.txt", _HF_ARGS),
        ("issue_glm4_174_gradnorm_rise_nan/log.txt", _HF_ARGS),
        ("trainproof_gallery/lr_hot_seed42_trainer_state.json", _HF_ARGS),
        ("trainproof_gallery/overfit_seed42_trainer_state.json", _HF_ARGS),
        ("issue_xtuner_187_mmengine_nan/log.txt", _MMENGINE),
    ],
)
def test_real_log_fixes_speak_the_frameworks_own_keys(
    real_logs: Path, log: str, keys: set[str]
) -> None:
    report = diagnose(real_logs / log)  # no --config: the log's framework decides
    changed = {k for f in report.problems for fx in f.fixes for k in fx.changes}
    changed |= set(report.change_set.changes)  # LR values relative to the log come from here
    assert changed and changed <= keys, changed - keys


def test_real_precision_fixes_switch_both_flags(real_logs: Path) -> None:
    ds = _real(real_logs, "issue_chinese_llama_alpaca_534_lossscale/log.txt")
    assert ds["loss-scale-collapse"].fixes[0].changes == {
        "fp16.enabled": False,
        "bf16.enabled": True,
    }
    mg = _real(real_logs, "bigscience_tr8b_104B/megatron_iterations_extracted.log")
    assert mg["loss-scale-collapse"].fixes[0].changes == {"--fp16": False, "--bf16": True}
    # Megatron clips at 1.0 unless told otherwise: tighten it rather than "enable" it
    spike = _real(real_logs, "bigscience_tr1_13B/megatron_iterations_extracted.log")["loss-spike"]
    assert {"--clip-grad": 0.5} in [fx.changes for fx in spike.fixes]
    # the LR fix is relative; its value (in the change set) comes from the LR before the
    # problem, never from the log's peak (which was 9.84e-05 here)
    assert [fx.relative for fx in spike.fixes if fx.relative] == [{"lr": 0.5}]


def test_ds_config_precision_fix_is_false_and_true_not_bf16(tmp_path: Path) -> None:
    # the reported bug: with a ds_config, the precision fix read "fp16.enabled: bf16"
    run_dir, _ = SEEDS.generate("seed004", tmp_path)
    ds = tmp_path / "ds_config.json"
    ds.write_text(
        '{"train_micro_batch_size_per_gpu": 4, "gradient_clipping": 1.0,'
        ' "fp16": {"enabled": true, "initial_scale_power": 16, "loss_scale_window": 100}}'
    )
    f = _by_id(diagnose(run_dir, ds))
    changes = [fx.changes for fx in f["loss-scale-collapse"].fixes]
    assert {"fp16.enabled": False, "bf16.enabled": True} in changes
    (scaler,) = [c for c in changes if "fp16.initial_scale_power" in c]
    assert scaler["fp16.initial_scale_power"] == 10  # 2**10, written as DeepSpeed's power
    assert scaler["fp16.loss_scale_window"] == 1000


def _overflow(step: int, old: float, new: float) -> dict[str, object]:
    return {
        "step": step,
        "event": "skip",
        "data": {"reason": "fp16-overflow", "attempted_scale": old, "new_scale": new},
    }


def test_overflow_events_on_consecutive_steps_are_a_collapse() -> None:
    from stabletrain.doctor import scale_findings

    # DeepSpeed halving 64 -> 2 on five consecutive steps mid-run (chinese-llama-alpaca #534)
    events = [_overflow(378 + i, 64 / 2**i, 32 / 2**i) for i in range(5)]
    found = {f.id: f for f in scale_findings(events, [], None)}
    assert found["fp16-overflow"].steps == [378, 379, 380, 381, 382]
    assert found["loss-scale-collapse"].evidence["min_scale"] == 2


def test_startup_and_sparse_overflows_are_not_a_collapse() -> None:
    from stabletrain.doctor import scale_findings

    # near-miss: the scaler's start-up search (steps <= 20) and single halvings 100 steps apart
    start = [_overflow(i, 65536 / 2**i, 32768 / 2**i) for i in range(1, 6)]
    assert scale_findings(start, [], None) == []
    sparse = [_overflow(100 * i, 2.0**20, 2.0**19) for i in range(1, 5)]
    assert [f.id for f in scale_findings(sparse, [], None)] == ["fp16-overflow"]


# -- symptoms the seeds describe that need general mechanisms (issue 11) ----------------------


def test_seed000_converged_runs_small_eval_wiggles_stay_quiet(tmp_path: Path) -> None:
    # the same run, but its eval loss converges with wiggles of a few tenths of a percent: judged
    # against the eval trend and its own noise, that is not instability
    mod = SEEDS.module("seed000")
    mod.EVAL_LOSSES = {s: 0.9 + 0.55 * 0.7 ** (s / 300) + (0.002 if s % 600 else -0.002)
                       for s in mod.EVAL_LOSSES}  # fmt: skip
    log, config = mod.generate(tmp_path / "seed000-converged")
    assert "eval-unstable" not in _ids(diagnose(log, config))


def test_seed002_percent_scaled_accuracy_tag_is_chance_level(tmp_path: Path) -> None:
    # TensorBoard `epoch_accuracy` of 10.07 means 10.07 %: chance on CIFAR-10's 10 classes
    log_dir = SEEDS.module("seed002").tensorboard(tmp_path / "seed002-tb")
    f = _by_id(diagnose(log_dir))["chance-level"]
    assert f.severity == "error"
    assert f.evidence["num_classes"] == 10
    assert 0.095 <= f.evidence["final_accuracy"] <= 0.105
    config = tmp_path / "model.yaml"
    config.write_text("model:\n  num_classes: 10\n", encoding="utf-8")
    f = _by_id(diagnose(log_dir, config))["chance-level"]
    assert f.evidence["num_classes_from"] == "config"


def test_seed004_duplicated_lines_reported_then_analysed_once(seeds: dict[str, Report]) -> None:
    r = seeds["seed004"]
    dup = _by_id(r)["duplicate-logging"]
    assert dup.evidence["typical_copies"] == 4
    assert "one copy" in dup.explanation  # said, not done silently
    train = [x.step for x in r.records if x.kind == "train"]
    assert len(train) == len(set(train)) == 300  # analysed once per step


def test_seed004_step_time_drifting_60_percent_slower_is_slow_steps(
    seeds: dict[str, Report],
) -> None:
    slow = _by_id(seeds["seed004"])["slow-steps"]
    assert 1.4 <= slow.evidence["drift_ratio"] <= 1.8
    assert "slower" in slow.title


def test_no_records_is_an_error_not_a_clean_verdict(tmp_path: Path) -> None:
    from stabletrain.errors import LogReadError

    log = tmp_path / "train.log"
    log.write_text("Starting training...\nloading data\ndone\n", encoding="utf-8")
    with pytest.raises(LogReadError, match=r"train\.log") as err:
        diagnose(log)
    assert "\n" not in str(err.value)  # one clear line
    # a table with rows but no record in it is the same: never a clean verdict
    empty = tmp_path / "metrics.csv"
    empty.write_text("step,loss\n", encoding="utf-8")
    with pytest.raises(LogReadError, match=r"metrics\.csv"):
        diagnose(empty)


def test_non_finite_epochs_are_data_not_a_crash(tmp_path: Path) -> None:
    # issue 12: `"epoch": Infinity` / NaN in a JSONL log crashed the detectors (int(epoch))
    from stabletrain.report import html, jsonfmt, markdown, text

    lines = []
    for i in range(1, 120):
        epoch = "Infinity" if i % 7 == 0 else "NaN" if i % 11 == 0 else f"{i / 10}"
        loss = "NaN" if i in (50, 51) else f"{2.0 / i**0.5:.5f}"
        lines.append(f'{{"step": {i}, "epoch": {epoch}, "loss": {loss}, "grad_norm": 1.0}}')
    log = tmp_path / "train.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    r = diagnose(log)
    assert "nonfinite-loss" in _ids(r)
    for renderer in (text, markdown, html, jsonfmt):
        assert renderer.render(r)


def test_run_restart_each_attempt_is_analysed(tmp_path: Path) -> None:
    # attempt 1 blows up (NaN loss from step 290); the run is resumed from its step-250
    # checkpoint and trains cleanly to 600. Keeping the latest record per step erases the NaN:
    # the earlier attempt is analysed on its own, and its finding names the attempt.
    lines = []
    for s in range(1, 301):
        loss = "NaN" if s >= 290 else f"{2.0 / s**0.5:.5f}"
        lines.append(f'{{"step": {s}, "loss": {loss}, "grad_norm": 1.0, "lr": 0.001}}')
    for s in range(250, 601):
        lines.append(f'{{"step": {s}, "loss": {2.0 / s**0.5:.5f}, "grad_norm": 1.0, "lr": 0.0005}}')
    log = tmp_path / "train.jsonl"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    f = _by_id(diagnose(log))
    restart = f["run-restart"]
    assert restart.steps == [250] and restart.severity == "info"
    nan = f["nonfinite-loss"]
    assert nan.steps[0] == 290 and "attempt 1 of 2" in nan.title
    assert nan.evidence["attempt"] == 1


def test_report_says_what_was_read(seeds: dict[str, Report]) -> None:
    r = seeds["seed003"]
    read = r.to_json()["read"]
    assert read["file"].endswith("trainer_state.json") and read["format"]
    assert read["train_records"] == 70 and read["eval_records"] == 6
    assert read["config"].endswith("config.yaml")
    assert read["roles"].get("grad_norm") == "grad_norm" or not read["roles"]


def _healthy_run_dir(root: Path) -> Path:
    """A stabletrain run dir whose own config.yaml has an optimizer and no clip or warmup."""
    run = root / "run"
    run.mkdir(parents=True)
    meta = '{"schema": "stabletrain.runlog", "version": 1}\n'
    (run / "meta.json").write_text(meta, encoding="utf-8")
    (run / "config.yaml").write_text(
        "optim: {name: adamw, lr: 3.0e-3}\ntrain: {epochs: 2}\n", encoding="utf-8"
    )
    rows = [
        f'{{"step": {s}, "epoch": {(s - 1) // 100}, "loss": {2.0 / (1 + s / 50):.5f}, '
        f'"grad_norm": {0.5 + 0.01 * (s % 7):.3f}, "lr": 0.003}}'
        for s in range(1, 201)
    ]
    (run / "steps.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return run


def test_a_model_only_config_predicts_no_optimizer_problems(tmp_path: Path) -> None:
    # "lint only what it was given": the run's own settings may lack a clip and a warmup, but a
    # model-only hparams file given with --config says nothing about either — and a healthy log
    # does not confirm them either
    run = _healthy_run_dir(tmp_path)
    model = tmp_path / "hparams.yaml"
    model.write_text(
        "model:\n  hidden_dim: 128\n  num_classes: 10\n  dropout: 0.1\nbatch_size: 64\n"
    )
    optimizer_ids = {"no-grad-clipping", "warmup-short", "lr-high-for-batch", "beta2-slow"}
    assert not optimizer_ids & set(_ids(diagnose(run, model)))
    from stabletrain.lint import lint

    assert not optimizer_ids & {f.id for f in lint(model).findings}
    # given a training config without a clip, the prediction is the user's to see
    train = tmp_path / "train.yaml"
    train.write_text("optimizer: adamw\nlearning_rate: 3.0e-3\n")
    assert "no-grad-clipping" in _ids(diagnose(run, train))
