"""Rescue suite: unstable digits runs under no protection, clip 1.0, ZClip, AutoClip and the guard.

Each scenario is a real failure mode from the seed postmortems or the literature, entering the
run the way it does in practice (no faked losses):

- ``high_lr``: AdamW at lr 0.05, no warm-up (seed 000's "LR too high from step 0").
- ``fp16_scaler``: fp16 autocast with a GradScaler started at 2**24 that grows every 10 steps,
  plus an lr 3x too high, so overflow skips and scale swings interleave with real updates.
- ``corrupt``: NaN batches and batches multiplied by 1e6 (a bad shard / an unnormalised file).
- ``deep_bad_init``: a 12-layer unnormalised ReLU MLP initialised with std 0.5 (~3x Kaiming).
- ``lr_jump``: a scheduled LR x100 at step 60 (a mis-typed schedule milestone).
- ``plateau_late``: SGD momentum at lr 0.5 with ReduceLROnPlateau (patience 3 epochs) that only
  reacts after the damage, while ``clip_grad_norm_`` saturates on every step.
- ``stable_cnn`` / ``stable_mlp``: the references (AdamW 1e-3, Kaiming init).

A run *diverged* when it ends no better than an untrained model: non-finite weights, val accuracy
at chance (<= 0.15 on 10 classes), or a guard abort (TrainingAborted: a lost run, listed). A run is
*degraded* (in brackets) when its final val loss is more than 2x the reference config's, or it
diverged: a harsher bar, which a run at 93% accuracy with a val loss of 0.35 fails. Accuracy is
relative to the reference config's mean under no protection (the plain loop on a stable config
is the bar).

    .venv/bin/python bench/rescue.py [--seeds 3] [--epochs 4] [--quick]
"""

from __future__ import annotations

import argparse
import itertools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import METHODS, Method, add_guard_options, apply_guard_options, make_stepper
from stabletrain.errors import TrainingAborted
from stabletrain.train.config import CNNSection, DataSection
from stabletrain.train.data import Dataset, load_dataset
from stabletrain.train.models import CNN, loss_and_correct

BATCH = 64


@dataclass
class Scenario:
    name: str
    reference: str
    arch: str = "cnn"  # cnn | mlp
    opt: str = "adamw"
    lr: float = 1e-3
    init_std: float | None = None  # MLP: normal init with this std instead of Kaiming
    fp16: bool = False
    scaler_kw: dict[str, Any] = field(default_factory=dict)
    nan_steps: tuple[int, ...] = ()
    scale_steps: tuple[int, ...] = ()
    lr_jump_at: int | None = None
    plateau: bool = False


SCENARIOS = [
    Scenario("stable_cnn", "stable_cnn"),
    Scenario("stable_mlp", "stable_mlp", arch="mlp"),
    Scenario("high_lr", "stable_cnn", lr=0.05),
    Scenario("fp16_scaler", "stable_cnn", lr=3e-3, fp16=True,
             scaler_kw={"init_scale": 2.0**24, "growth_interval": 10}),
    Scenario("corrupt", "stable_cnn", nan_steps=(30, 31, 70), scale_steps=(50, 90, 110)),
    Scenario("deep_bad_init", "stable_mlp", arch="mlp", init_std=0.5),
    Scenario("lr_jump", "stable_cnn", lr_jump_at=60),
    Scenario("plateau_late", "stable_cnn", opt="sgd", lr=0.5, plateau=True),
]  # fmt: skip


def mlp(init_std: float | None, depth: int = 12, width: int = 128) -> nn.Module:
    dims = [64] + [width] * (depth - 1)
    layers: list[nn.Module] = [nn.Flatten()]
    for a, b in itertools.pairwise(dims):
        layers += [nn.Linear(a, b), nn.ReLU()]
    layers.append(nn.Linear(width, 10))
    net = nn.Sequential(*layers)
    for m in net.modules():
        if isinstance(m, nn.Linear):
            if init_std is None:
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=init_std)
            nn.init.zeros_(m.bias)
    return net


@dataclass
class Result:
    finite: bool
    val_loss: float
    val_acc: float
    aborted: str | None = None


def evaluate(model: nn.Module, ds: Dataset) -> tuple[float, float]:
    with torch.no_grad():
        loss, correct = loss_and_correct(model(ds.x_val), ds.y_val)
    return float(loss), float(correct) / len(ds.y_val)


def run(sc: Scenario, method: Method, seed: int, epochs: int, ds: Dataset) -> Result:
    torch.manual_seed(seed)
    model = CNN(CNNSection(), 1, 10) if sc.arch == "cnn" else mlp(sc.init_std)
    opt: torch.optim.Optimizer
    if sc.opt == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=sc.lr, momentum=0.9)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=sc.lr)
    scaler = torch.amp.GradScaler("cpu", **sc.scaler_kw) if sc.fp16 else None
    sched: Any = None
    if sc.lr_jump_at is not None:
        at = sc.lr_jump_at
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 100.0 if s >= at else 1.0)
    # ReduceLROnPlateau needs the val loss, so it is stepped per epoch here, not by the stepper
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=3, factor=0.1)
        if sc.plateau
        else None
    )
    stepper = make_stepper(method, model, opt, scaler, sched)
    g = torch.Generator().manual_seed(seed)
    step = 0
    try:
        for _ in range(epochs):
            perm = torch.randperm(len(ds.x_train), generator=g)
            loader = [
                (ds.x_train[perm[i : i + BATCH]], ds.y_train[perm[i : i + BATCH]])
                for i in range(0, len(perm), BATCH)
            ]
            for x, y in stepper.batches(loader):
                if step in sc.nan_steps:
                    x = torch.full_like(x, float("nan"))
                elif step in sc.scale_steps:
                    x = x * 1e6
                step += 1
                with torch.autocast("cpu", dtype=torch.float16, enabled=sc.fp16):
                    loss, _ = loss_and_correct(model(x), y)
                stepper.step(loss)
            if plateau is not None:
                vl, _ = evaluate(model, ds)
                plateau.step(vl if math.isfinite(vl) else 1e9)
    except TrainingAborted as e:
        aborted: str | None = f"step {step}: {str(e).splitlines()[0][:120]}"
    else:
        aborted = None
    finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
    vl, va = evaluate(model, ds) if finite else (math.inf, 0.0)
    return Result(finite, vl if math.isfinite(vl) else math.inf, va, aborted)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=4, help="epochs of 23 steps each")
    ap.add_argument("--scenarios", default=",".join(s.name for s in SCENARIOS))
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    add_guard_options(ap)
    ap.add_argument("--quick", action="store_true", help="2 seeds, 3 epochs")
    args = ap.parse_args()
    if args.quick:
        args.seeds, args.epochs = 2, 3
    apply_guard_options(args)
    torch.set_num_threads(1)
    logging_quiet()
    ds = load_dataset(DataSection(name="digits"), seed=0)
    chosen = [s for s in SCENARIOS if s.name in args.scenarios.split(",")]
    methods = [m for m in METHODS if m in args.methods.split(",")]
    t0 = time.perf_counter()
    res: dict[tuple[str, Method], list[Result]] = {}
    for sc in chosen:
        for m in methods:
            res[sc.name, m] = [run(sc, m, seed, args.epochs, ds) for seed in range(args.seeds)]
        print(f"# {sc.name}: " + "  ".join(_cell(res[sc.name, m]) for m in methods), flush=True)
    report(chosen, methods, res, args)
    print(f"\n{time.perf_counter() - t0:.0f} s total", flush=True)


def logging_quiet() -> None:
    import logging

    logging.getLogger("stabletrain").setLevel(logging.ERROR)


def _cell(rs: list[Result]) -> str:
    return "/".join(f"{r.val_acc:.2f}|{r.val_loss:.2f}" + ("A" if r.aborted else "") for r in rs)


def report(
    chosen: list[Scenario],
    methods: list[Method],
    res: dict[tuple[str, Method], list[Result]],
    args: Any,
) -> None:
    ref: dict[str, tuple[float, float]] = {}
    for name in ("stable_cnn", "stable_mlp"):
        key = (name, "none") if (name, "none") in res else (name, methods[0])
        if key in res:
            rs = res[key]
            ref[name] = (
                statistics.mean(r.val_loss for r in rs),
                statistics.mean(r.val_acc for r in rs),
            )

    def degraded(sc: Scenario, r: Result) -> bool:
        ref_loss = ref.get(sc.reference, (math.inf, 1.0))[0]
        return diverged(r) or r.val_loss > 2 * ref_loss

    def diverged(r: Result) -> bool:
        return bool(r.aborted) or not r.finite or r.val_acc <= 0.15

    def rel(sc: Scenario, rs: list[Result]) -> float:
        return statistics.mean(r.val_acc for r in rs) / ref.get(sc.reference, (0.0, 1.0))[1]

    unstable = [s for s in chosen if not s.name.startswith("stable")]
    print(f"\n{args.seeds} seeds x {args.epochs} epochs; cell = diverged/runs (degraded), mean val "
          "acc relative to the stable reference (no protection)\n")  # fmt: skip
    print("| scenario | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    for sc in chosen:
        cells = []
        for m in methods:
            rs = res[sc.name, m]
            d = sum(diverged(r) for r in rs)
            c = sum(degraded(sc, r) for r in rs)
            cells.append(f"{d}/{len(rs)} ({c}), {rel(sc, rs):.3f}")
        print(f"| {sc.name} | " + " | ".join(cells) + " |")
    tot = []
    for m in methods:
        pairs = [(s, r) for s in unstable for r in res[s.name, m]]
        d = sum(diverged(r) for _, r in pairs)
        c = sum(degraded(s, r) for s, r in pairs)
        acc = statistics.mean(rel(s, res[s.name, m]) for s in unstable) if unstable else 0.0
        tot.append(f"**{d}/{len(pairs)}** ({c}), {acc:.3f}")
    print("| **unstable total** | " + " | ".join(tot) + " |")
    aborts = [
        f"- {m} / {s.name} seed {i}: aborted at {r.aborted}"
        for s in chosen for m in methods for i, r in enumerate(res[s.name, m]) if r.aborted
    ]  # fmt: skip
    if aborts:
        print("\nAborts:\n" + "\n".join(aborts))


if __name__ == "__main__":
    main()
