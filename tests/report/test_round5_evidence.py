"""Four pieces of log evidence the fix loop's round 5 tune half showed the doctor missing (issue 13).

On real reference-trainer runs (guard off), each the mistake as a user makes it:

- weights initialised far too small (the transformer std 0.02 in the ReLU CNN): the first losses
  sit at ln(10) and the first gradient norms are an order of magnitude below the later ones ->
  ``bad-init`` whose fix is the init, with no LR change (before: an LR cut at 3x the batch bound,
  which made the run worse);
- a language model at the HF default LR 5e-5 that ends barely past a uniform guess: the LR is
  raised to Adam's usual value, not only 5x;
- dropout 0.5 in a small GPT that ends far from learned: the dropout is lowered, the LR kept;
- batch 512 on 1.4k samples (24 optimizer steps) whose eval loss fell at every eval: too few
  steps, whatever the level it stopped at.

Each also has its clean counterpart that must stay quiet.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.cli import main
from stabletrain.doctor import diagnose

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
OFF = ("guard.preset=off", "run.tensorboard=false")


def _train(config: str, run_dir: Path, *overrides: str) -> Path:
    argv = ["train", str(CONFIGS / config), "--run-dir", str(run_dir), "--no-progress"]
    assert main(argv + [a for o in (*OFF, *overrides) for a in ("--set", o)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("round5")
    cnn, gpt = "digits-cnn.yaml", "tiny-gpt.yaml"
    small = ("data.seq_len=32", "data.batch_size=16")  # a quarter of the tokens per step
    return {
        "small_init": _train(
            cnn, base / "small_init", "model.cnn.init=normal", "model.cnn.init_std=0.02",
            "train.epochs=3",
        ),
        "cnn_stable": _train(cnn, base / "cnn_stable", "train.epochs=3"),
        "gpt_hf_lr": _train(gpt, base / "gpt_hf_lr", "train.max_steps=100", "optim.lr=5e-5", *small),
        "gpt_dropout": _train(
            gpt, base / "gpt_dropout", "train.max_steps=50", "model.gpt.dropout=0.5", *small
        ),
        "gpt_dropout_usual": _train(
            gpt, base / "gpt_dropout_usual", "train.max_steps=50", "model.gpt.dropout=0.1", *small
        ),
        "batch_512": _train(cnn, base / "batch_512", "data.batch_size=512"),
    }  # fmt: skip


def test_too_small_init_is_named_and_fixed_by_the_init_alone(runs: dict[str, Path]) -> None:
    report = diagnose(runs["small_init"])
    f = next((x for x in report.findings if x.id == "bad-init"), None)
    assert f is not None and f.severity == "warning", [x.id for x in report.findings]
    assert f.evidence["too_small"] and f.evidence["direction"] == "neutral"
    assert f.evidence["late_grad_norm"] >= 10 * f.evidence["early_grad_norm"]
    cs = report.change_set
    assert cs.cause == "bad-init", cs
    assert cs.changes == {"model.cnn.init": "kaiming", "model.cnn.init_std": None}, cs


def test_a_kaiming_start_is_not_called_too_small(runs: dict[str, Path]) -> None:
    report = diagnose(runs["cnn_stable"])
    assert not any(x.id == "bad-init" for x in report.findings)


def test_a_barely_learned_run_gets_the_usual_lr(runs: dict[str, Path]) -> None:
    report = diagnose(runs["gpt_hf_lr"])
    f = next((x for x in report.findings if x.id == "underfitting"), None)
    assert f is not None, [x.id for x in report.findings]
    assert report.change_set.changes.get("optim.lr") == pytest.approx(1e-3)  # 20x, not 5x


def test_half_the_units_dropped_is_the_cause_not_the_lr(runs: dict[str, Path]) -> None:
    report = diagnose(runs["gpt_dropout"])
    cs = report.change_set
    assert cs.changes.get("model.gpt.dropout") == pytest.approx(0.1), cs
    assert "optim.lr" not in cs.changes, cs


def test_a_usual_dropout_is_left_alone(runs: dict[str, Path]) -> None:
    report = diagnose(runs["gpt_dropout_usual"])
    assert "model.gpt.dropout" not in report.change_set.changes
    assert not any(x.id == "underfitting" for x in report.findings)


def test_steadily_falling_evals_in_few_steps_are_too_few_steps(runs: dict[str, Path]) -> None:
    report = diagnose(runs["batch_512"])
    f = next((x for x in report.findings if x.id == "too-few-steps"), None)
    assert f is not None, [x.id for x in report.findings]
    cs = report.change_set
    assert cs.changes.get("train.epochs") == 80, cs
    assert "optim.lr" not in cs.changes, cs
