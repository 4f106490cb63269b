"""Instructions per optimizer step of the guard vs the bare clip loop, counted by callgrind.

Wall time on a shared 2-core machine moves by a few percent from run to run; instruction counts
do not. For each method this runs the digits CNN for N and for 3N steps under
``valgrind --tool=callgrind`` and takes the difference / 2N: the instructions of one step, with
interpreter start-up, imports, model building and warm-up cancelled out. Instructions are not
time (cache misses and vector width differ), but the ratio says what the guard adds.

    .venv/bin/python bench/guard_instructions.py [--steps 20]          # ~10 min on 2 cores
    .venv/bin/python bench/guard_instructions.py --worker guard 20     # one count (no valgrind)
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
METHODS = ("clip", "guard")


def worker(method: str, steps: int) -> None:
    """The measured program: build, warm up 10 steps, then ``steps`` steps."""
    sys.path.insert(0, str(HERE))
    import logging

    import torch

    from baselines import make_stepper
    from guard_overhead import setup
    from stabletrain.train.models import loss_and_correct

    logging.getLogger("stabletrain").setLevel(logging.ERROR)
    torch.set_num_threads(1)
    build, data = setup("cnn")
    model = build()
    st = make_stepper(method, model, torch.optim.AdamW(model.parameters(), lr=1e-3))  # type: ignore[arg-type]
    for i in range(10 + steps):
        x, y = data[i % len(data)]
        loss, _ = loss_and_correct(model(x), y)
        st.step(loss)


def count(method: str, steps: int) -> int:
    """Instructions (callgrind's total Ir) of one worker run."""
    cmd = [
        "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
        sys.executable, __file__, "--worker", method, str(steps),
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stderr
    m = re.search(r"Collected\s*:\s*(\d+)", out)
    if m is None:
        raise RuntimeError(f"no instruction count in callgrind's output:\n{out[-2000:]}")
    return int(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20, help="N: runs of N and 3N steps")
    ap.add_argument("--worker", nargs=2, metavar=("METHOD", "STEPS"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        worker(args.worker[0], int(args.worker[1]))
        return
    n = args.steps
    jobs = [(m, k) for m in METHODS for k in (n, 3 * n)]
    with ThreadPoolExecutor(max_workers=2) as pool:  # one valgrind per core
        counts = dict(zip(jobs, pool.map(lambda j: count(*j), jobs), strict=True))
    per_step = {}
    for m in METHODS:
        per_step[m] = (counts[m, 3 * n] - counts[m, n]) / (2 * n)
        print(f"{m}: {per_step[m] / 1e6:.3f} M instructions per step", flush=True)
    extra = per_step["guard"] - per_step["clip"]
    print(f"\nguard / clip = {per_step['guard'] / per_step['clip']:.4f} "
          f"({extra / 1e3:+.0f} k instructions per step)")  # fmt: skip


if __name__ == "__main__":
    main()
