"""``doctor RUN --patch CONFIG -o FIXED [--verify]`` and ``lint CONFIG --patch``, end to end on a
real broken run: the digits CNN under plain SGD at lr 3 with no clip and the guard off."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stabletrain.cli import main
from stabletrain.errors import ExitCode

BROKEN = """\
# digits CNN, a too-high LR for plain SGD (the guard is off so the failure shows)
run:
  name: broken
  seed: 0
  tensorboard: false
  checkpoint_every: 0
data:
  name: digits
  batch_size: 64
model:
  name: cnn
optim:
  name: sgd   # plain SGD
  lr: 3.0
schedule:
  name: constant
train:
  epochs: 1
  max_steps: 12
  max_grad_norm: null
guard:
  preset: off
"""


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the broken run's dir, the user's config file it was trained from)."""
    from stabletrain.train.config import load_config
    from stabletrain.train.loop import train

    root = tmp_path_factory.mktemp("broken")
    config = root / "broken.yaml"
    config.write_text(BROKEN, encoding="utf-8")
    run = root / "run"
    train(load_config(config), run)
    return run, config


def test_patch_writes_the_change_set_into_a_copy(
    broken: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, config = broken
    fixed = tmp_path / "fixed.yaml"
    args = ["doctor", str(run), "--patch", str(config), "-o", str(fixed), "--format", "json"]
    code = main([*args, "--fail-on", "warning"])
    out, err = capsys.readouterr()
    report = json.loads(out)  # stdout stays the machine format; the summary goes to stderr
    changes = report["change_set"]["changes"]
    assert changes and code == ExitCode.FINDINGS
    assert report["read"]["config"].startswith(f"given with --patch: {config} (also read the run")
    assert f"patched {config} → {fixed}:" in err
    patch = report["patch"]  # the same, machine-readable
    assert patch["written"] and patch["output"] == str(fixed) and patch["config"] == str(config)
    assert {e["from"] for e in patch["edits"]} | {r.split(":")[0] for r in patch["refused"]} == set(
        changes
    )
    assert config.read_text(encoding="utf-8") == BROKEN  # the input is never written over
    text = fixed.read_text(encoding="utf-8")
    assert "# plain SGD" in text and text.startswith("# digits CNN")
    tree = yaml.safe_load(text)
    for key, value in changes.items():  # each change is in the copy, at its key
        assert _get(tree, key) == value, (key, value, err)
        assert f"  {key}: " in err
    assert changes.get("optim.lr", 0.0) < 3.0  # an instability fix never raises the LR


def _get(tree: Any, key: str) -> Any:
    for part in key.split("."):
        tree = tree[part]
    return tree


def test_verify_retrains_the_patched_config_and_compares(
    broken: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run, config = broken
    fixed = tmp_path / "fixed.yaml"
    args = ["doctor", str(run), "--patch", str(config), "-o", str(fixed), "--verify"]
    code = main([*args, "--verify-steps", "12", "--fail-on", "warning"])
    out = capsys.readouterr().out
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  ")}
    before, after, verdict = lines["before"], lines["after"], lines["verdict"]
    assert "(run " in lines["changed"] and ", patched " in lines["changed"]  # what the patch did
    assert "lr-high-for-batch (warning)" in before and "step 11:" in before
    assert "step 11:" in after and "eval loss" in after
    assert verdict.split()[1].rstrip(":") in ("fixed", "improved", "not", "worse"), out
    verify_dir = tmp_path / "fixed-verify"
    assert (verify_dir / "steps.jsonl").is_file() and (verify_dir / "summary.json").is_file()
    assert yaml.safe_load((verify_dir / "config.yaml").read_text())["run"]["seed"] == 0
    # with --verify the exit code is the re-run's: clean when its report has no warning
    assert code == (ExitCode.CLEAN if "no warnings or errors" in after else ExitCode.FINDINGS)


def test_verify_needs_patch_and_a_reference_trainer_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log = tmp_path / "train.csv"
    # the loss falls, then diverges: the config's LR prediction is confirmed, a change set is due
    rows = (f"{s},{3.0 / s if s <= 25 else 0.12 * 1.5 ** (s - 25)}\n" for s in range(1, 50))
    log.write_text("step,loss\n" + "".join(rows))
    assert main(["doctor", str(log), "--verify"]) == ExitCode.UNUSABLE_INPUT
    assert "--verify re-trains the patched config: give --patch CONFIG too" in (
        capsys.readouterr().err
    )
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("optimizer: adamw\nlearning_rate: 0.5\nmax_grad_norm: 0\n")
    code = main(["doctor", str(log), "--patch", str(cfg), "--verify", "--fail-on", "never"])
    err = capsys.readouterr().err
    assert "nothing to patch" not in err
    if "nothing to patch" not in err:  # a change set to write: then --verify is refused
        assert code == ExitCode.UNUSABLE_INPUT
        assert "reference-trainer runs only" in err and str(log) in err


def test_lint_patch_writes_lints_change_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "training_args.json"
    cfg.write_text(
        json.dumps({"learning_rate": 2e-4, "per_device_train_batch_size": 8, "max_grad_norm": 0})
        + "\n",
        encoding="utf-8",
    )
    fixed = tmp_path / "fixed.json"
    main(["lint", str(cfg), "--patch", "-o", str(fixed)])
    out = capsys.readouterr().out
    assert "max_grad_norm: 0 → 1" in out
    assert json.loads(fixed.read_text())["max_grad_norm"] == 1.0


def test_the_verdict_compares_quality_and_problems() -> None:
    from stabletrain.verify import Outcome, judge

    sick = Outcome(12, [("loss-spike", "warning")], 3.0, 0.1, 2.9, 0.09)
    assert judge(sick, Outcome(12, [], 1.9, 0.4, 2.0, 0.3))[0] == "fixed"
    partly = Outcome(12, [("loss-spike", "warning")], 2.2, 0.3, 2.3, 0.25)
    assert judge(sick, partly) == ("improved", "eval accuracy 9.0% → 25.0%; still: loss-spike")
    same = Outcome(12, [("loss-spike", "warning")], 3.0, 0.1, 2.9, 0.095)
    assert judge(sick, same)[0] == "not fixed"
    assert judge(sick, Outcome(12, [], 3.0, 0.1, 2.9, 0.02))[0] == "worse"  # quiet but worse
    nan = Outcome(12, [("nonfinite-loss", "error")], float("nan"), None, None, None, True)
    assert judge(sick, nan)[0] == "worse"
    assert judge(nan, sick)[0] == "improved"  # finite beats diverged, problems remain


def test_verify_says_when_the_trainer_cannot_load_the_patched_config(
    broken: tuple[Path, Path], tmp_path: Path
) -> None:
    from stabletrain.doctor import diagnose
    from stabletrain.errors import ConfigError
    from stabletrain.verify import verify

    other = tmp_path / "hf.yaml"
    other.write_text("learning_rate: 0.1\nmax_grad_norm: 1.0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cannot load the patched config: .*hf\.yaml: unknown"):
        verify(diagnose(broken[0]), other, tmp_path / "v", steps=3)
    assert not (tmp_path / "v").exists()  # nothing trained


def test_lint_patch_of_two_files_writes_each_change_into_its_own_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # the README's `lint config.yaml ds_config.json`: the ds_config disables the clip
    config, ds = tmp_path / "config.yaml", tmp_path / "ds_config.json"
    config.write_text("learning_rate: 2.0e-4\nper_device_train_batch_size: 8\n")
    ds.write_text('{"train_micro_batch_size_per_gpu": 8, "gradient_clipping": 0}\n')
    main(["lint", str(config), str(ds), "--patch", "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    by_file = {p["config"]: p for p in report["patches"]}
    assert set(by_file) <= {str(config), str(ds)}
    assert by_file[str(ds)]["output"] == str(tmp_path / "ds_config.fixed.json")
    assert json.loads((tmp_path / "ds_config.fixed.json").read_text())["gradient_clipping"] == 1.0
    assert not (tmp_path / "config.fixed.yaml").exists() or str(config) in by_file
    code = main(["lint", str(config), str(ds), "--patch", "-o", str(tmp_path / "x.json")])
    assert code == ExitCode.UNUSABLE_INPUT
    assert "-o names one file; drop it" in capsys.readouterr().err
