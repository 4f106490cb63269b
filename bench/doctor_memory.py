"""Where the doctor's peak memory goes on a big CSV or JSONL file: RSS after, and the peak
during, each stage.

Stages: imports; reading and cleaning the table; each detector fed the records in bulk (in slices
of ``detectors.base.BULK_ROWS``, as the doctor feeds them); their ``finish``; then a whole
``diagnose``, the report's summary, its change set (``report.changeset``) and the JSON. A thread
samples the process's resident set (``/proc/self/status`` VmRSS) every 2 ms, so a stage's peak is
the high-water mark of its temporaries over what was alive before it. The file is written by a
child process and profiled in another (a child's peak RSS starts from its parent's at fork).

``--one-batch``: the same code reading and replaying in one batch (``table.READ_ROWS``,
``table.READ_BYTES`` and ``base.BULK_ROWS`` set beyond the file), to see what the batches save.

Usage:
    .venv/bin/python bench/doctor_memory.py --rows 10000000 [--kind jsonl] [--one-batch]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

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


def profile(path: Path, one_batch: bool) -> None:
    sampler = Sampler()
    if one_batch:
        from stabletrain.detectors import base
        from stabletrain.logs.readers import table

        table.READ_ROWS = base.BULK_ROWS = 1 << 62
        table.READ_BYTES = path.stat().st_size + 1
    from stabletrain.detectors.base import feed
    from stabletrain.detectors.columns import Batch, as_batch
    from stabletrain.detectors.registry import default_detectors
    from stabletrain.doctor import diagnose
    from stabletrain.logs.read import read_run_columns

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
    report = diagnose(path)
    sampler.mark("diagnose (whole)")
    summary = report.summary()
    sampler.mark("report summary")
    report.change_set.to_json()
    sampler.mark("change set")
    json.dumps({"summary": summary, "findings": [f.to_json() for f in report.findings]})
    sampler.mark("json")
    use = resource.getrusage(resource.RUSAGE_SELF)
    print(f"process: CPU {use.ru_utime + use.ru_stime:.2f} s, peak RSS {use.ru_maxrss // 1024} MB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--kind", choices=("csv", "jsonl"), default="csv")
    ap.add_argument("--one-batch", action="store_true", help="read and replay in one batch")
    ap.add_argument("--profile", type=Path, help=argparse.SUPPRESS)  # the child's entry
    args = ap.parse_args()
    if args.profile:
        profile(args.profile, args.one_batch)
        return
    from doctor_speed import write_in_child

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"big.{args.kind}"
        write_in_child(path, args.kind, args.rows)
        size = path.stat().st_size / 1e6
        print(f"# {args.rows:,}-row {args.kind.upper()} ({size:.0f} MB), pid {os.getpid()}")
        # a fresh process: its RSS starts small
        cmd = [sys.executable, __file__, "--profile", str(path)]
        subprocess.run(cmd + ["--one-batch"] * args.one_batch, check=True)


if __name__ == "__main__":
    main()
