"""Where the doctor's peak memory goes on a big CSV: RSS after, and the peak during, each stage.

Stages: imports; reading and cleaning the table; each detector fed the records in bulk; their
``finish``; the report's summary; its change set (``report.changeset``); the JSON. A thread
samples the process's resident set (``/proc/self/status`` VmRSS) every 2 ms, so a stage's peak
is the high-water mark of its temporaries over what was alive before it.

``--what-if-numpy-base-lr``: the same run with ``report.changeset.base_lr`` computed on the LR
column as a numpy array (the same median element, ``np.partition``) instead of a list of
(step, LR) tuples — to measure what that change would save; the script checks the change set comes
out the same. It patches the function in this process only.

Usage:
    .venv/bin/python bench/doctor_memory.py --rows 10000000 [--what-if-numpy-base-lr]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))


class Sampler:
    """The process's RSS, sampled in a thread; ``mark`` prints a stage and resets the peak."""

    def __init__(self) -> None:
        self.peak = self.rss()
        self.stop = False
        threading.Thread(target=self._run, daemon=True).start()

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS"):
                    return int(line.split()[1]) // 1024
        return 0

    def _run(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.rss())
            time.sleep(0.002)

    def mark(self, stage: str) -> None:
        time.sleep(0.01)
        now = self.rss()
        print(f"{stage:<32} {now:>8} {max(self.peak, now):>9}", flush=True)
        self.peak = now


def numpy_base_lr(facts: Any, records: Any, onset: int | None) -> tuple[float | None, str | None]:
    """``report.changeset.base_lr`` on the LR column as an array (same result)."""
    import numpy as np

    from stabletrain.detectors.columns import Batch

    lr = facts.number("lr", positive=True)
    if lr is not None:
        return lr, f"configured ({facts.facts['lr'].where()})"
    if not records:
        return None, None
    b = records if isinstance(records, Batch) else Batch(records)
    v, s = b.floats("lr"), b.floats("step")
    ok = b.train & (v > 0) & (v < math.inf)
    if not ok.any():
        return None, None
    before = v[ok if onset is None else ok & (s < onset)]
    if before.size:
        k = before.size // 2
        where = f" before step {onset}" if onset is not None else ""
        return float(np.partition(before, k)[k]), "median logged LR" + where
    i = int(np.flatnonzero(ok)[0])
    return float(v[i]), f"logged LR at step {int(s[i])}"


def profile(path: Path, what_if: bool) -> None:
    sampler = Sampler()
    from stabletrain.detectors.base import feed
    from stabletrain.detectors.columns import Batch, as_batch
    from stabletrain.detectors.registry import default_detectors
    from stabletrain.doctor import diagnose
    from stabletrain.logs.read import read_run_columns
    from stabletrain.report import changeset

    print(f"{'stage':<32} {'RSS MB':>8} {'peak MB':>9}")
    sampler.mark("imports")
    run, columns = read_run_columns(path)
    sampler.mark("read + clean")
    raw = Batch(run.raw, columns)
    batch = as_batch(run.records, like=raw)
    dets = default_detectors()
    for d in dets:
        feed(d, raw if getattr(d, "wants_raw", False) else batch)
        sampler.mark(f"  {type(d).__name__} {getattr(d, 'metric', '')}".rstrip())
    for d in dets:
        d.finish(run.facts)
    sampler.mark("finish")
    del run, columns, raw, batch, dets
    sampler.mark("(freed)")
    original = changeset.base_lr
    report = diagnose(path)
    sampler.mark("diagnose (whole)")
    summary = report.summary()
    sampler.mark("report summary")
    plain = report.change_set.to_json()
    sampler.mark("change set")
    if what_if:
        changeset.base_lr = numpy_base_lr  # type: ignore[assignment]
        patched = report.change_set.to_json()
        sampler.mark("change set, numpy base_lr")
        changeset.base_lr = original
        if patched != plain:
            raise SystemExit(f"numpy base_lr changed the change set: {patched} != {plain}")
        print("  (the numpy base_lr gives the same change set)")
    json.dumps({"summary": summary, "findings": [f.to_json() for f in report.findings]})
    sampler.mark("json")
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process: CPU {use.ru_utime + use.ru_stime:.2f} s, peak RSS {use.ru_maxrss // 1024} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--what-if-numpy-base-lr", action="store_true")
    ap.add_argument("--profile", type=Path, help=argparse.SUPPRESS)  # the child's entry
    args = ap.parse_args()
    if args.profile:
        profile(args.profile, args.what_if_numpy_base_lr)
        return
    from doctor_speed import write_in_child

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.csv"
        write_in_child(path, "csv", args.rows)
        print(f"# {args.rows:,}-row CSV ({path.stat().st_size / 1e6:.0f} MB), pid {os.getpid()}")
        cmd = [sys.executable, __file__, "--profile", str(path)]
        if args.what_if_numpy_base_lr:
            cmd.append("--what-if-numpy-base-lr")
        subprocess.run(cmd, check=True)  # a fresh process: its RSS starts small


if __name__ == "__main__":
    main()
