"""Step-time cost of the guard vs a bare clip loop, ZClip and AutoClip, on the tiny GPT and the CNN.

One interleaved run per model: four identical copies (same init, same batches), one per method
(bare ``clip_grad_norm_(1.0)`` loop, guard with the ``default`` preset, ZClip, AutoClip). The
methods take turns in round-robin blocks of ``--block`` steps (the order rotates each round, so
no method always runs right after another), the first round is warm-up and is discarded, and each
method's figure is the median of its block times. Ratios are paired: each round's block time of
a method over the same round's bare-clip block time, then the median over rounds (a slow drift
of the machine's speed cancels within a round; the ratio of medians would carry it).
Single-threaded torch for stable timings; CPU only (no GPU here). Times are the stepping
thread's CPU time (``time.thread_time``): torch runs in that thread, so other processes on a
shared machine do not inflate them the way they inflate wall time.

    .venv/bin/python bench/guard_overhead.py [--rounds 15] [--block 20] [--quick]
    .venv/bin/python bench/guard_overhead.py --fused --guard-set sync_free=on   # the sync-free path
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from baselines import Method, add_guard_options, apply_guard_options, make_stepper
from stabletrain.train.config import CNNSection, DataSection, GPTSection
from stabletrain.train.data import load_dataset
from stabletrain.train.models import CNN, GPT, loss_and_correct

TIMED: tuple[Method, ...] = ("clip", "guard", "zclip", "autoclip")
Batch = tuple[torch.Tensor, torch.Tensor]


def _batches(x: torch.Tensor, y: torch.Tensor, bs: int, n: int) -> list[Batch]:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        idx = torch.randint(0, len(x), (bs,), generator=g)
        out.append((x[idx], y[idx]))
    return out


def setup(name: str) -> tuple[Callable[[], nn.Module], list[Batch]]:
    torch.manual_seed(0)
    if name == "gpt":
        ds = load_dataset(DataSection(name="charcorpus", seq_len=64), seed=0)
        gcfg = GPTSection()
        return (lambda: GPT(gcfg, ds.num_classes, 64)), _batches(ds.x_train, ds.y_train, 32, 64)
    ds = load_dataset(DataSection(name="digits"), seed=0)
    ccfg = CNNSection()
    return (lambda: CNN(ccfg, 1, 10)), _batches(ds.x_train, ds.y_train, 64, 64)


def bench(
    name: str, rounds: int, block: int, fused: bool = False
) -> tuple[dict[Method, float], dict[Method, float]]:
    """(median ms/step, median paired ratio to the bare clip loop) per method."""
    build, data = setup(name)
    base = build()
    steppers, models = {}, {}
    for m in TIMED:
        model = copy.deepcopy(base)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=fused or None)
        models[m], steppers[m] = model, make_stepper(m, model, opt)
    times: dict[Method, list[float]] = {m: [] for m in TIMED}
    cursor = dict.fromkeys(TIMED, 0)
    for r in range(rounds + 1):  # round 0 = warm-up, discarded
        order = TIMED[r % len(TIMED) :] + TIMED[: r % len(TIMED)]
        for m in order:
            model, st = models[m], steppers[m]
            t0 = time.thread_time()
            for _ in range(block):
                x, y = data[cursor[m] % len(data)]
                cursor[m] += 1
                loss, _ = loss_and_correct(model(x), y)
                st.step(loss)
            dt = time.thread_time() - t0
            if r > 0:
                times[m].append(dt / block)
    ms = {m: statistics.median(v) * 1e3 for m, v in times.items()}
    ratio = {
        m: statistics.median(a / b for a, b in zip(v, times["clip"], strict=True))
        for m, v in times.items()
    }
    return ms, ratio


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=15, help="timed rounds (plus one warm-up)")
    ap.add_argument("--block", type=int, default=20, help="steps per block")
    ap.add_argument("--models", default="gpt,cnn")
    ap.add_argument("--fused", action="store_true", help="fused AdamW for every method")
    add_guard_options(ap)
    ap.add_argument("--quick", action="store_true", help="5 rounds of 10 steps")
    args = ap.parse_args()
    if args.quick:
        args.rounds, args.block = 5, 10
    apply_guard_options(args)
    torch.set_num_threads(1)
    extra = (" fused AdamW;" if args.fused else "") + "".join(f" {g};" for g in args.guard_set)
    print(f"torch {torch.__version__}, 1 thread, CPU;{extra} {args.rounds} rounds x {args.block} "
          "steps, thread CPU time\n")  # fmt: skip
    print("| model | bare clip ms/step | guard | ZClip | AutoClip |")
    print("|---|---|---|---|---|")
    for name in args.models.split(","):
        ms, ratio = bench(name, args.rounds, args.block, args.fused)
        cells = [f"{ms[m]:.2f} ms ({ratio[m]:.3f}x)" for m in ("guard", "zclip", "autoclip")]
        print(f"| {name} | {ms['clip']:.2f} ms | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
