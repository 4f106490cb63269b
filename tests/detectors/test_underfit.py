"""underfitting on real reference-trainer runs (guard off): the digits CNN at lr 1e-6 learns
nothing, and the fix raises the LR; a healthy run and a short run stay quiet."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from stabletrain.detectors.underfit import UnderfitDetector
from stabletrain.doctor import diagnose
from stabletrain.logs.read import read_run

#: the digits runs here: guard off, 3 epochs (a later override wins)
BASE = ("guard.preset=off", "train.epochs=3")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory, reference_run: Callable[..., Path]) -> Path:
    run = tmp_path_factory.mktemp("underfit") / "slow"
    return reference_run("digits-cnn.yaml", run, *BASE, "optim.lr=1e-6")


def test_too_low_lr_is_underfitting_and_the_fix_raises_it(slow: Path) -> None:
    report = diagnose(slow)
    f = next(f for f in report.findings if f.id == "underfitting")
    assert f.evidence["lr"] == pytest.approx(1e-6) and f.evidence["direction"] == "progress"
    first = f.fixes[0]
    assert first.changes["optim.lr"] > 1e-6 and first.relative["lr"] > 1
    assert all(x.relative.get("lr", 2.0) > 1 for x in f.fixes)  # never lower
    ids = [x.id for x in report.findings]
    if "chance-level" in ids:  # the symptom follows from the cause
        assert "chance-level" in f.related and ids.index("underfitting") < ids.index("chance-level")


@pytest.mark.parametrize(
    "overrides",
    [(), ("optim.lr=1e-6", "train.max_steps=20")],
    ids=["healthy", "short"],
)
def test_healthy_or_short_runs_are_not_underfitting(
    tmp_path: Path, overrides: tuple[str, ...], reference_run: Callable[..., Path]
) -> None:
    report = diagnose(reference_run("digits-cnn.yaml", tmp_path / "run", *BASE, *overrides))
    assert "underfitting" not in [f.id for f in report.findings]


def test_bulk_path_and_state_round_trip(slow: Path, scenarios: ModuleType) -> None:
    run = read_run(slow)
    scenarios.assert_bulk_and_state_agree(UnderfitDetector, list(run.records), run.facts)


@pytest.mark.slow
def test_tiny_gpt_at_a_tiny_lr_is_underfitting_from_the_vocab_size_the_trainer_records(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    """The tiny GPT at lr 1e-6: its loss stays near ln(vocab) with nothing unstable. The vocab
    size is in no config key: the trainer records it in meta.json and the doctor reads it there.
    Token accuracy (~19%: the most frequent character) is no chance level for an LM."""
    import json

    run = tmp_path / "gpt"
    reference_run("tiny-gpt.yaml", run, "guard.preset=off", "optim.lr=1e-6", "train.max_steps=55")
    vocab = json.loads((run / "meta.json").read_text())["vocab_size"]
    assert isinstance(vocab, int) and vocab > 10
    report = diagnose(run)
    assert report.facts.get("vocab_size") == vocab
    f = next(f for f in report.findings if f.id == "underfitting")
    assert f"ln({vocab})" in f.title
    cs = report.change_set
    assert cs.cause == "underfitting" and cs.changes["optim.lr"] > 1e-6


@pytest.mark.slow
def test_seed000_ends_still_learning_and_the_fix_raises_the_lr(
    tmp_path: Path, reference_run: Callable[..., Path]
) -> None:
    """Seed 000's config as it is: batch 1024 gives the digits CNN 60 AdamW steps at 2e-4; the
    eval loss falls at every eval and ends at 0.6 ln(10) (70% accuracy). Not unstable (the seed
    blamed the batch for spikes): underfitting, and the change set raises the LR."""
    run = tmp_path / "seed000"
    reference_run("seed000-cnn-large-batch.yaml", run, "guard.preset=off")
    report = diagnose(run)
    f = next(f for f in report.findings if f.id == "underfitting")
    assert f.evidence["direction"] == "progress"
    cs = report.change_set
    assert cs.cause == "underfitting" and 2e-4 < cs.changes["optim.lr"] <= 1e-3


def test_a_converged_run_in_the_usual_range_is_not_still_learning() -> None:
    """Scripted evals: a steady fall to 0.1 (well under half of ln 10) is a finished run; a
    fall that turned back up is not steady; only a steady fall still far from learned fires."""
    from stabletrain.records import ConfigFacts, StepRecord

    facts = ConfigFacts(format="stabletrain")
    facts.set("lr", 2e-4, key="optim.lr")
    facts.set("optimizer", "adamw", key="optim.name")
    facts.set("num_classes", 10, key="data.name")

    def ids(evals: list[float]) -> list[str]:
        det = UnderfitDetector()
        for i in range(60):
            det.update(StepRecord(step=i, loss=2.3 - i / 60, grad_norm=1.0, lr=2e-4))
            if i % 6 == 5:
                det.update(StepRecord(step=i, kind="eval", eval_loss=evals[i // 6]))
        return [f.id for f in det.finish(facts)]

    assert ids([2.2 - 0.21 * k for k in range(10)]) == []  # ends at 0.31 < 0.5 ln 10
    assert ids([2.2, 2.0, 1.8, 1.6, 1.4, 1.3, 1.35, 1.4, 1.5, 1.6]) == []  # turned back up
    assert ids([2.2 - 0.09 * k for k in range(10)]) == ["underfitting"]  # 1.39, still falling


@pytest.mark.slow
def test_a_language_model_still_falling_bulk_path_and_state_round_trip(
    tmp_path: Path, reference_run: Callable[..., Path], scenarios: ModuleType
) -> None:
    """The tiny GPT at AdamW 3e-4 (100 steps, one eval): the "still falling at full pace" path
    reads the same from the stream, the columns and a restored state."""
    run = reference_run("tiny-gpt.yaml", tmp_path / "gpt", "guard.preset=off", "optim.lr=3e-4",
                        "train.max_steps=100")  # fmt: skip
    log = read_run(run)
    det = UnderfitDetector()
    for r in log.records:
        det.update(r)
    found = det.finish(log.facts)
    assert [f.id for f in found] == ["underfitting"]
    assert found[0].evidence["late_pace_vs_average"] >= 0.5
    scenarios.assert_bulk_and_state_agree(UnderfitDetector, list(log.records), log.facts)
