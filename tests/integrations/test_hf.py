"""StableTrainCallback in a real ``transformers.Trainer`` run of a tiny GPT-2 on character data.

The fault is a corrupt feature row, as real runs get from a broken pre-embedded shard: one
training item's ``inputs_embeds`` are NaN. Without the callback HF's ``logging_nan_inf_filter``
hides the NaN loss from the log while AdamW writes NaN into every weight; with it the step is
skipped, the weights stay finite, and the run log and HF's own trainer_state.json both show it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

transformers = pytest.importorskip("transformers")

from stabletrain.guard.config import GuardConfig  # noqa: E402
from stabletrain.integrations.hf import StableTrainCallback  # noqa: E402
from stabletrain.records import StepRecord  # noqa: E402

pytestmark = [
    pytest.mark.hf,
    pytest.mark.filterwarnings("ignore::FutureWarning:transformers.*"),
    pytest.mark.filterwarnings("ignore::UserWarning:transformers.*"),
]

SEQ, EMBD, N_ITEMS, BAD_ITEM = 32, 32, 64, 5


class CharFeatures(torch.utils.data.Dataset):  # type: ignore[type-arg]
    """Character windows of a stdlib source file as fixed random features + next-char labels."""

    def __init__(self, bad_item: int | None) -> None:
        text = Path(json.__file__).read_text(encoding="utf-8")
        ids = torch.tensor([min(ord(c), 127) for c in text[: N_ITEMS * SEQ]])
        self.ids = ids.view(N_ITEMS, SEQ)
        table = torch.randn(128, EMBD, generator=torch.Generator().manual_seed(1))
        self.feats = table[self.ids]
        if bad_item is not None:
            self.feats[bad_item] = float("nan")

    def __len__(self) -> int:
        return N_ITEMS

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"inputs_embeds": self.feats[i], "labels": self.ids[i]}


def _train(tmp_path: Path, callbacks: list, *, bad: bool = True, **overrides: object):  # type: ignore[no-untyped-def]
    cfg = transformers.GPT2Config(n_layer=2, n_head=2, n_embd=EMBD, vocab_size=128, n_positions=64)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(cfg)
    kwargs: dict[str, object] = {
        "output_dir": str(tmp_path / "out"),
        "per_device_train_batch_size": 8,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "logging_steps": 1,
        "report_to": "none",
        "save_strategy": "no",
        "use_cpu": True,
        "seed": 0,
        "disable_tqdm": True,
        "dataloader_num_workers": 0,
    }
    kwargs.update(overrides)
    args = transformers.TrainingArguments(**kwargs)
    trainer = transformers.Trainer(
        model=model,
        args=args,
        train_dataset=CharFeatures(BAD_ITEM if bad else None),
        callbacks=callbacks,
    )
    trainer.train()
    return trainer, model


def _finite(model: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())


def _steps(run_dir: Path) -> list[StepRecord]:
    lines = (run_dir / "steps.jsonl").read_text().splitlines()
    return [StepRecord.from_json(json.loads(line)) for line in lines]


def test_without_callback_nan_batch_poisons_weights(tmp_path: Path) -> None:
    _, model = _train(tmp_path, [])
    assert not _finite(model)


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """One guarded run, saved once at its end so HF writes checkpoint-8/trainer_state.json."""
    tmp_path = tmp_path_factory.mktemp("hf")
    from transformers.integrations import TensorBoardCallback

    # the user's TensorBoard logger, listed after the guard's callback (HF puts report_to's
    # loggers before user callbacks: they would log before the guard's metrics are added)
    trainer, model = _train(
        tmp_path, [StableTrainCallback(), TensorBoardCallback()],
        max_grad_norm=0.5, save_strategy="steps", save_steps=8,
    )  # fmt: skip
    return tmp_path, trainer, model


def test_callback_skips_nan_step_and_logs_it(guarded) -> None:  # type: ignore[no-untyped-def]
    tmp_path, trainer, model = guarded
    assert _finite(model)
    assert trainer.args.max_grad_norm == 0.5  # restored after training
    records = _steps(tmp_path / "out" / "stabletrain")
    assert [r.step for r in records] == list(range(8))  # one record per optimizer step
    skipped = [r for r in records if r.skipped]
    assert len(skipped) == 1
    assert skipped[0].action == "skip_nonfinite_grad"
    assert skipped[0].loss is not None and math.isnan(skipped[0].loss)
    # the guard clipped at HF's max_grad_norm, once
    assert all(r.clip_coef is not None for r in records if not r.skipped)
    assert any(r.clip_coef < 1.0 for r in records if not r.skipped)  # type: ignore[operator]
    events = [
        json.loads(x)
        for x in (tmp_path / "out" / "stabletrain" / "events.jsonl").read_text().splitlines()
    ]
    assert [e["step"] for e in events if e["severity"] != "info"][:1] == [skipped[0].step]
    # HF's logged (NaN-filtered) loss rides along on each record
    assert "hf_loss" in records[-1].metrics


def test_skipped_step_does_not_advance_lr_schedule(tmp_path: Path) -> None:
    cb = StableTrainCallback()
    _train(tmp_path, [cb], lr_scheduler_type="linear")
    records = _steps(tmp_path / "out" / "stabletrain")
    bad = next(r.step for r in records if r.skipped)
    lrs = [r.lr for r in records]
    assert lrs[bad + 1] == lrs[bad]  # the schedule paused for the skipped step
    assert lrs[bad] != lrs[bad - 1]


def test_gradient_accumulation_one_guard_step_per_optimizer_step(tmp_path: Path) -> None:
    cb = StableTrainCallback(GuardConfig(health_every=0))
    _, model = _train(
        tmp_path, [cb], bad=False, per_device_train_batch_size=4, gradient_accumulation_steps=2
    )
    records = _steps(tmp_path / "out" / "stabletrain")
    assert len(records) == 8 and not any(r.skipped for r in records)
    assert all(r.loss is not None and 0 < r.loss < 10 for r in records)
    assert _finite(model)


def test_guard_metrics_reach_hf_logs_and_the_users_tensorboard(guarded) -> None:  # type: ignore[no-untyped-def]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tmp_path, trainer, _ = guarded
    bad = next(r.step for r in _steps(tmp_path / "out" / "stabletrain") if r.skipped)
    history = [h for h in trainer.state.log_history if "stabletrain/skipped" in h]
    assert len(history) == 8  # logging_steps=1: every step's log carries them
    # HF numbers the log by global_step after the update (the guard's step + 1)
    assert [h["step"] for h in history if h["stabletrain/skipped"]] == [bad + 1]
    assert history[-1]["stabletrain/skips"] == 1 and history[-1]["stabletrain/rollbacks"] == 0
    events = next(
        p for p in (tmp_path / "out").rglob("events.out.tfevents.*") if "stabletrain" not in str(p)
    )
    tb = EventAccumulator(str(events.parent))
    tb.Reload()
    skipped = {e.step: e.value for e in tb.Scalars("train/stabletrain/skipped")}
    assert skipped[bad + 1] == 1.0 and sum(skipped.values()) == 1.0
    assert "train/stabletrain/grad_norm" in tb.Tags()["scalars"]


@pytest.mark.parametrize("log", ["stabletrain", "trainer_state.json", "tb"])
def test_doctor_finds_the_skipped_step(guarded, log: str) -> None:  # type: ignore[no-untyped-def]
    diagnose = pytest.importorskip("stabletrain.doctor").diagnose
    out = guarded[0] / "out"
    path = {
        "stabletrain": out / "stabletrain",
        "trainer_state.json": out / "checkpoint-8" / "trainer_state.json",
        "tb": out / "stabletrain" / "tb",
    }[log]
    bad = next(r.step for r in _steps(out / "stabletrain") if r.skipped)
    found = {f.id: f.steps for f in diagnose(path).findings}
    nonfinite = found.get("nonfinite-loss", []) + found.get("nonfinite-grad", [])
    # HF's trainer_state numbers steps from 1 (global_step after the update)
    assert (bad + 1 if log == "trainer_state.json" else bad) in nonfinite, found
