"""Time the text reader and ``stabletrain doctor`` on large generated text logs.

    python bench/text_reader_speed.py write /tmp/textlogs      # 1M-line logs, once
    python bench/text_reader_speed.py read /tmp/textlogs       # read_run only, CPU seconds
    /usr/bin/time -f "%e s wall %U s user %S s sys %M KB" stabletrain doctor /tmp/textlogs/megatron.log

To compare with another version of the code, run the same commands with ``PYTHONPATH`` pointing
at its ``src`` (e.g. ``/work/base/src``). On a shared machine compare CPU time (user + sys), not
wall time.

Two dialects: Megatron ``iteration N/ M | ... |`` lines, and a free-form research script's
``step N | loss X | lr Y | grad_norm G | dt T ms`` lines with a few prints between them.
"""

from __future__ import annotations

import math
import random
import sys
from pathlib import Path


def megatron(n: int) -> str:
    rng = random.Random(0)
    out = []
    for i in range(1, n + 1):
        loss = 2.0 + 8.0 * math.exp(-i / 2e5) + rng.gauss(0, 0.05)
        out.append(
            f" iteration {i:>8}/ {n:>8} | consumed samples: {i * 512:>12} | "
            f"elapsed time per iteration (ms): {400 + rng.random() * 10:.1f} | "
            f"learning rate: {3e-4:.3E} | global batch size:   512 | lm loss: {loss:.6E} | "
            f"loss scale: 65536.0 | grad norm: {0.5 + rng.random():.3f} | num zeros: 0.0 | "
            "number of skipped iterations:   0 | number of nan iterations:   0 |"
        )
    return "\n".join(out) + "\n"


def freeform(n: int) -> str:
    rng = random.Random(1)
    out = []
    for i in range(n):
        if i % 1000 == 0:
            out.append(f"saving checkpoint to out/ckpt_{i}.pt")
        loss = 2.0 + 8.0 * math.exp(-i / 2e5) + rng.gauss(0, 0.05)
        out.append(
            f"step {i} | loss {loss:.4f} | lr {3e-4:.4e} | grad_norm {0.5 + rng.random():.4f} "
            f"| dt {120 + rng.random() * 5:.2f}ms"
        )
    return "\n".join(out[:n]) + "\n"


def read(d: Path) -> None:
    import time

    from stabletrain.logs.read import read_run

    for name in ("megatron.log", "freeform.log"):
        t0 = time.process_time()
        data = read_run(d / name)
        dt = time.process_time() - t0
        print(f"{name}: {len(data.raw):,} records in {dt:.2f} s CPU ({data.format})")


def main() -> None:
    if len(sys.argv) != 3 or sys.argv[1] not in ("write", "read"):
        sys.exit(__doc__)
    d = Path(sys.argv[2])
    if sys.argv[1] == "read":
        read(d)
        return
    d.mkdir(parents=True, exist_ok=True)
    (d / "megatron.log").write_text(megatron(1_000_000))
    (d / "freeform.log").write_text(freeform(1_000_000))
    print(f"wrote {d}/megatron.log and {d}/freeform.log (1,000,000 lines each)")


if __name__ == "__main__":
    main()
