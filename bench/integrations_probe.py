"""The HF Trainer and Lightning callbacks under the options users set, with 6 NaN rows in 2,048.

Each variant trains a small regression net (16 inputs, MLP 64) for 2 epochs at batch 32 on data
with 6 NaN rows, under ``StableTrainCallback``, and the same variant without the callback on the
clean data (what the run could reach at best). Prints the final eval MSE of both, or CRASH with
the exception and where. Without the callback the NaN rows make every such run NaN.

    .venv/bin/python bench/integrations_probe.py                 # both frameworks, ~3 min
    .venv/bin/python bench/integrations_probe.py --framework hf accum4 sgd
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import traceback
import warnings
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

N, DIM, BAD = 2048, 16, (17, 301, 777, 1030, 1500, 2001)


def _data(seed: int, n: int, bad: tuple[int, ...]) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=g)
    w = torch.randn(DIM, 1, generator=torch.Generator().manual_seed(99))
    y = (x @ w).squeeze(1) / 4.0 + torch.sin(x[:, 0])
    for i in bad:
        x[i, 3] = float("nan")
    return x, y


def _where(e: BaseException) -> str:
    tb = traceback.extract_tb(e.__traceback__)[-1]
    return f"CRASH {type(e).__name__}: {str(e)[:160]} @ {tb.filename.split('/')[-1]}:{tb.lineno}"


# -- HF ---------------------------------------------------------------------------------------
HF: dict[str, dict[str, Any]] = {
    "default": {},
    "accum4": {"gradient_accumulation_steps": 4},
    "cosine_warmup": {"lr_scheduler_type": "cosine", "warmup_steps": 10},
    "eval_steps_best": {"eval_strategy": "steps", "eval_steps": 16, "save_strategy": "steps",
                        "save_steps": 16, "load_best_model_at_end": True,
                        "metric_for_best_model": "eval_loss"},
    "no_clip": {"max_grad_norm": 0.0},
    "bf16": {"bf16": True},
    "adafactor": {"optim": "adafactor"},
    "sgd": {"optim": "sgd"},
    "custom_opt_sgd": {"_opt": "sgd_momentum"},
    "max_steps": {"max_steps": 50},
    "plateau": {"lr_scheduler_type": "reduce_lr_on_plateau", "eval_strategy": "steps",
                "eval_steps": 16},
    "constant_with_warmup": {"lr_scheduler_type": "constant_with_warmup", "warmup_steps": 0.1},
    "save_and_limit": {"save_strategy": "steps", "save_steps": 20, "save_total_limit": 1},
}  # fmt: skip


def run_hf(callback: bool, bad: tuple[int, ...], **kw: Any) -> str:
    import transformers

    from stabletrain.integrations.hf import StableTrainCallback

    class Rows(torch.utils.data.Dataset):  # type: ignore[type-arg]
        def __init__(self, seed: int, n: int, bad: tuple[int, ...]) -> None:
            self.x, self.y = _data(seed, n, bad)

        def __len__(self) -> int:
            return len(self.x)

        def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
            return {"x": self.x[i], "labels": self.y[i]}

    class Regressor(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 1))

        def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, Any]:
            out = self.net(x).squeeze(1)
            return {"loss": None if labels is None else F.mse_loss(out, labels), "logits": out}

    torch.manual_seed(0)
    model = Regressor()
    opt = kw.pop("_opt", None)
    args = dict(output_dir=tempfile.mkdtemp(), per_device_train_batch_size=32,
                num_train_epochs=2, learning_rate=1e-2, report_to="none", save_strategy="no",
                use_cpu=True, seed=0, disable_tqdm=True, dataloader_num_workers=0,
                logging_steps=10, eval_strategy="epoch", per_device_eval_batch_size=256)  # fmt: skip
    args.update(kw)
    optimizers = (
        (torch.optim.SGD(model.parameters(), lr=1e-2, momentum=0.9), None) if opt else (None, None)
    )
    trainer = transformers.Trainer(
        model=model, args=transformers.TrainingArguments(**args), train_dataset=Rows(0, N, bad),
        eval_dataset=Rows(1, 512, ()), callbacks=[StableTrainCallback()] if callback else [],
        optimizers=optimizers,
    )  # fmt: skip
    try:
        trainer.train()
        return f"{trainer.evaluate()['eval_loss']:.4f}"
    except Exception as e:  # the probe reports every failure
        return _where(e)


# -- Lightning --------------------------------------------------------------------------------
PL: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "default": ({}, {}),
    "clip1": ({}, {"gradient_clip_val": 1.0}),
    "accum4": ({}, {"accumulate_grad_batches": 4}),
    "bf16_mixed": ({}, {"precision": "bf16-mixed"}),
    "sgd_plateau": ({"opt": "sgd", "sched": "plateau"}, {}),
    "onecycle": ({"sched": "onecycle"}, {}),
    "manual_opt": ({"manual": True}, {}),
    "val_check_interval": ({}, {"val_check_interval": 16}),
}


def run_lightning(callback: bool, bad: tuple[int, ...], mkw: dict[str, Any],
                  tkw: dict[str, Any]) -> str:  # fmt: skip
    import lightning.pytorch as pl

    from stabletrain.integrations.lightning import StableTrainCallback

    x, y = _data(0, N, bad)
    vx, vy = _data(1, 512, ())

    class M(pl.LightningModule):
        def __init__(self, opt: str = "adam", sched: str | None = None, manual: bool = False):
            super().__init__()
            self.net = nn.Sequential(nn.Linear(DIM, 64), nn.ReLU(), nn.Linear(64, 1))
            self.o, self.s, self.automatic_optimization = opt, sched, not manual

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x).squeeze(1)

        def training_step(self, b: Any, i: int) -> Any:
            loss = F.mse_loss(self(b[0]), b[1])
            if not self.automatic_optimization:
                opt = self.optimizers()
                opt.zero_grad()
                self.manual_backward(loss)
                opt.step()
                return None
            return loss

        def validation_step(self, b: Any, i: int) -> None:
            self.log("val_loss", F.mse_loss(self(b[0]), b[1]))

        def configure_optimizers(self) -> Any:
            if self.o == "adam":
                opt = torch.optim.Adam(self.parameters(), lr=1e-2)
            else:
                opt = torch.optim.SGD(self.parameters(), lr=1e-2, momentum=0.9)
            if self.s == "plateau":
                sch = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=1)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sch, "monitor": "val_loss"}}
            if self.s == "onecycle":
                sch = torch.optim.lr_scheduler.OneCycleLR(opt, 1e-2, total_steps=128)
                return {"optimizer": opt, "lr_scheduler": {"scheduler": sch, "interval": "step"}}
            return opt

    torch.manual_seed(0)
    m = M(**mkw)
    dl = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=32)
    val = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(vx, vy), batch_size=256)
    trainer = pl.Trainer(max_epochs=2, callbacks=[StableTrainCallback()] if callback else [],
                         logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu",
                         default_root_dir=tempfile.mkdtemp(), **tkw)  # fmt: skip
    try:
        trainer.fit(m, dl, val)
        with torch.no_grad():
            return f"{F.mse_loss(m(vx), vy).item():.4f}"
    except Exception as e:  # the probe reports every failure
        return _where(e)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--framework", choices=("hf", "lightning", "both"), default="both")
    ap.add_argument("variants", nargs="*")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    if args.framework in ("hf", "both"):
        for k in args.variants or HF:
            guarded = run_hf(True, BAD, **dict(HF[k]))
            clean = run_hf(False, (), **dict(HF[k]))
            print(f"hf         {k:22s} guarded, 6 NaN rows {guarded}   clean data, plain {clean}")
    if args.framework in ("lightning", "both"):
        for k in args.variants or PL:
            mkw, tkw = PL[k]
            guarded = run_lightning(True, BAD, mkw, tkw)
            clean = run_lightning(False, (), mkw, tkw)
            print(f"lightning  {k:22s} guarded, 6 NaN rows {guarded}   clean data, plain {clean}")


if __name__ == "__main__":
    main()
