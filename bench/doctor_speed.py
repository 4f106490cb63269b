"""Doctor speed and memory, whole CLI process, beside runmedic and trainproof on the same files.

Writes a CSV (``step,epoch,loss,grad_norm,lr``) and a JSON-lines log (``{"step", "epoch", "loss",
"grad_norm", "learning_rate"}``, HF's key names) of ``--rows`` steps of a decaying loss with a few
real spikes, then runs each tool's CLI on each file in a child process and prints wall seconds and
the child's peak RSS (``os.wait4``'s ``ru_maxrss``: that child alone), and each tool's ratio to
stabletrain. ``--big N`` adds an N-row CSV for stabletrain alone (memory must stay bounded).

    .venv/bin/python bench/doctor_speed.py                      # 1,000,000 rows, all three tools
    .venv/bin/python bench/doctor_speed.py --rows 200000 --big 10000000 --skip-competitors
    .venv/bin/python bench/doctor_speed.py --bytecode           # children with compiled bytecode
    .venv/bin/python bench/doctor_speed.py --readers            # in-process readers (run log, TB)
    .venv/bin/python bench/doctor_speed.py --parsers            # polars vs pyarrow, same files
    .venv/bin/python bench/doctor_speed.py --profile            # one diagnosis's time by stage

Commands run: ``stabletrain doctor F --format json``, ``runmedic diagnose --json F``,
``trainproof doctor --json F`` (stdout to /dev/null; exit 0 or 1 both count as a diagnosis).
The machine is shared: run it twice. ``PYTHONPATH=/work/base/src`` before the command measures
the session-start code.

``--readers``: the older in-process reader benchmark — a stabletrain run log and a TensorBoard file
(written with our own TFRecord framing and a numpy CRC-32C, since ``SummaryWriter`` needs ~160 µs
per scalar) through ``read_run``, tbparse and tensorboard's ``EventAccumulator``, and
``stabletrain.doctor.diagnose`` end to end.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

_POLY = 0x82F63B78
_TABLE = np.zeros(256, dtype=np.uint32)
for _n in range(256):
    _c = _n
    for _ in range(8):
        _c = (_c >> 1) ^ _POLY if _c & 1 else _c >> 1
    _TABLE[_n] = _c


def masked_crcs(rows: np.ndarray) -> np.ndarray:
    """Masked CRC-32C of each row of an (N, L) uint8 array, vectorised over N."""
    crc = np.full(rows.shape[0], 0xFFFFFFFF, dtype=np.uint32)
    for j in range(rows.shape[1]):
        crc = _TABLE[(crc ^ rows[:, j]) & 0xFF] ^ (crc >> np.uint32(8))
    crc ^= np.uint32(0xFFFFFFFF)
    return ((crc >> np.uint32(15)) | (crc << np.uint32(17))) + np.uint32(0xA282EAD8)


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _event(wall: float, step: int, tag: bytes, value: float) -> bytes:
    val = b"\x0a" + bytes([len(tag)]) + tag + b"\x15" + struct.pack("<f", value)
    summ = b"\x0a" + bytes([len(val)]) + val
    return (
        b"\x09"
        + struct.pack("<d", wall)
        + b"\x10"
        + _varint(step)
        + b"\x2a"
        + bytes([len(summ)])
        + summ
    )


def _curve(step: int) -> tuple[float, float]:
    loss = 3.0 * math.exp(-step / 200_000) + 0.5 + 0.01 * math.sin(step)
    norm = 1.0 + 0.1 * math.cos(step / 7)
    if step % 250_000 == 123_456:  # a few real spikes for the doctor to find
        loss, norm = loss * 8, norm * 50
    return loss, norm


def write_tb(path: Path, n_scalars: int) -> None:
    tags = [b"train/loss", b"train/grad_norm", b"train/lr", b"train/loss_scale"]
    events: list[bytes] = [b"\x09" + struct.pack("<d", 1.7e9) + b"\x1a\x0dbrain.Event:2"]
    for s in range(n_scalars // len(tags)):
        loss, norm = _curve(s)
        vals = (loss, norm, 3e-4, 65536.0)
        wall = 1.7e9 + s * 0.1
        events.extend(_event(wall, s, t, v) for t, v in zip(tags, vals, strict=True))
    by_len: dict[int, list[int]] = {}
    for i, e in enumerate(events):
        by_len.setdefault(len(e), []).append(i)
    data_crc = [0] * len(events)
    for length, idx in by_len.items():
        arr = np.frombuffer(b"".join(events[i] for i in idx), dtype=np.uint8).reshape(-1, length)
        for i, c in zip(idx, masked_crcs(arr).tolist(), strict=True):
            data_crc[i] = c
    headers = {length: struct.pack("<Q", length) for length in by_len}
    header_crc = {
        length: int(masked_crcs(np.frombuffer(h, dtype=np.uint8).reshape(1, 8))[0])
        for length, h in headers.items()
    }
    with open(path, "wb") as f:
        for e, c in zip(events, data_crc, strict=True):
            n = len(e)
            f.write(headers[n] + struct.pack("<I", header_crc[n]) + e + struct.pack("<I", c))


def write_runlog(run: Path, steps: int) -> None:
    run.mkdir(parents=True)
    (run / "meta.json").write_text(json.dumps({"schema": "stabletrain.runlog", "version": 1}))
    with open(run / "steps.jsonl", "w") as f:
        lines = []
        for s in range(steps):
            loss, norm = _curve(s)
            lines.append(
                f'{{"step": {s}, "epoch": {s // 10000}, "loss": {loss:.6f}, "grad_norm": {norm:.5f}, '
                f'"clip_coef": 1.0, "lr": 0.0003, "wall_time": {s * 0.1:.1f}}}\n'
            )
            if len(lines) == 100_000:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)
    (run / "evals.jsonl").write_text("")
    (run / "events.jsonl").write_text("")


_CPU: list[float] = []


def timed(fn: Any) -> tuple[float, Any]:
    """Wall seconds (and CPU seconds into _CPU: the machine is shared, CPU time is steadier)."""
    c = time.process_time()
    t = time.perf_counter()
    out = fn()
    _CPU.append(time.process_time() - c)
    return time.perf_counter() - t, out


def readers_bench(args: argparse.Namespace) -> None:
    from stabletrain.logs.read import read_run

    n = args.rows
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        tbdir = Path(tmp) / "tb"
        tbdir.mkdir()
        tbfile = tbdir / "events.out.tfevents.1700000000.bench.0"
        t_gen, _ = timed(lambda: (write_runlog(run, n), write_tb(tbfile, n)))
        print(f"generated {n:,} steps.jsonl lines and {n:,} TB scalars in {t_gen:.1f}s")
        rows: list[tuple[str, str, float, int]] = []
        _CPU.clear()

        t, data = timed(lambda: read_run(run))
        rows.append(("stabletrain read_run", "run log", t, len(data.records)))
        t, data = timed(lambda: read_run(tbfile))
        n_sc = sum(
            (r.loss is not None)
            + (r.grad_norm is not None)
            + (r.lr is not None)
            + (r.loss_scale is not None)
            for r in data.records
        )
        rows.append(("stabletrain read_run", "tensorboard", t, n_sc))
        if not args.skip_competitors:
            try:
                from tbparse import SummaryReader

                t, df = timed(lambda: SummaryReader(str(tbfile)).scalars)
                rows.append(("tbparse SummaryReader", "tensorboard", t, len(df)))
            except ImportError:
                print("note: tbparse not installed (pip install tbparse); skipped")
            try:
                from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

                def ea() -> int:
                    acc = EventAccumulator(str(tbfile), size_guidance={"scalars": 0})
                    acc.Reload()
                    return sum(len(acc.Scalars(tag)) for tag in acc.Tags()["scalars"])

                t, cnt = timed(ea)
                rows.append(("tensorboard EventAccumulator", "tensorboard", t, cnt))
            except ImportError:
                print("note: tensorboard not installed; EventAccumulator skipped")
        if not args.skip_doctor:
            try:
                from stabletrain.doctor import diagnose
            except ImportError:
                print("note: stabletrain.doctor not available; doctor timing skipped")
            else:
                for label, p in (("run log", run), ("tensorboard", tbfile)):
                    t, rep = timed(lambda p=p: diagnose(p))
                    ids = sorted({f.id for f in rep.findings})
                    rows.append((f"stabletrain diagnose {ids}", label, t, n))
        print(
            f"\n{'reader':<44} {'input':<12} {'wall s':>7} {'cpu s':>7} {'items':>10} "
            f"{'items/s':>10} {'items/cpu-s':>12}"
        )
        for (name, inp, t, cnt), cpu in zip(rows, _CPU[-len(rows) :], strict=True):
            print(
                f"{name:<44} {inp:<12} {t:>7.2f} {cpu:>7.2f} {cnt:>10,} {cnt / t:>10,.0f} "
                f"{cnt / max(cpu, 1e-9):>12,.0f}"
            )


# -- whole-process comparison -------------------------------------------------------------------
_CSV_LINE = "{},{},{:.6f},{:.5f},0.0003\n"
_JSONL_LINE = (
    '{{"step": {}, "epoch": {}, "loss": {:.6f}, "grad_norm": {:.5f}, "learning_rate": 0.0003}}\n'
)


def write_tables(csv_path: Path | None, jsonl_path: Path | None, n: int) -> None:
    """``n`` steps as a CSV and/or a JSON-lines log (vectorised: a million rows in ~2 s)."""
    s = np.arange(n)
    loss = 3.0 * np.exp(-s / max(n / 5, 1)) + 0.5 + 0.01 * np.sin(s)
    norm = 1.0 + 0.1 * np.cos(s / 7)
    spike = (s % 250_000) == 123_456  # a few real spikes for every doctor to find
    loss[spike] *= 8
    norm[spike] *= 50
    cols = (s, s // 10_000, loss, norm)
    for path, head, line in (
        (csv_path, "step,epoch,loss,grad_norm,lr\n", _CSV_LINE),
        (jsonl_path, "", _JSONL_LINE),
    ):
        if path is None:
            continue
        with open(path, "w") as f:
            f.write(head)
            for a in range(0, n, 200_000):
                part = [c[a : a + 200_000].tolist() for c in cols]
                f.writelines(line.format(*row) for row in zip(*part, strict=True))


def run_child(
    cmd: list[str], timeout: float, env: dict[str, str] | None = None
) -> tuple[float, float, float, int]:
    """(wall s, CPU s (user + system), peak RSS MB, exit code) of one child process."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    deadline = t + timeout
    while True:
        pid, status, usage = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.perf_counter() > deadline:
            p.kill()
            pid, status, usage = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    wall = time.perf_counter() - t
    p.returncode = os.waitstatus_to_exitcode(status)
    err = p.stderr.read().decode(errors="replace") if p.stderr else ""
    if p.returncode not in (0, 1):
        print(f"  note: {cmd[0]} exited {p.returncode}: {err.strip()[-300:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, p.returncode


def tools(bin_dir: Path) -> dict[str, list[str]]:
    return {
        "stabletrain": [
            str(bin_dir / "stabletrain"),
            "doctor",
            "{f}",
            "--format",
            "json",
        ],
        "runmedic": [str(bin_dir / "runmedic"), "diagnose", "--json", "{f}"],
        "trainproof": [str(bin_dir / "trainproof"), "doctor", "--json", "{f}"],
    }


def write_in_child(path: Path, kind: str, n: int) -> None:
    """``write_tables`` in a child process: a child's peak RSS starts from its parent's RSS at
    fork (Linux carries the high-water mark through exec), so the parent stays small."""
    subprocess.run(
        [sys.executable, __file__, "--write", str(path), "--kind", kind, "--rows", str(n)],
        check=True,
    )


def compare(args: argparse.Namespace) -> None:
    bin_dir = Path(sys.executable).parent
    cmds = tools(bin_dir)
    if args.skip_competitors:
        cmds = {"stabletrain": cmds["stabletrain"]}
    missing = [name for name, cmd in cmds.items() if not Path(cmd[0]).exists()]
    if missing:
        sys.exit(
            f"doctor_speed: {', '.join(missing)} not installed in {bin_dir} "
            f"(`{bin_dir / 'pip'} install {' '.join(missing)}`, or run with --skip-competitors)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        files: list[tuple[str, Path]] = []
        if args.rows:
            c, j = Path(tmp) / "metrics.csv", Path(tmp) / "metrics.jsonl"
            t0 = time.perf_counter()
            write_in_child(c, "csv", args.rows)
            write_in_child(j, "jsonl", args.rows)
            print(f"wrote {args.rows:,}-row CSV and JSONL in {time.perf_counter() - t0:.1f}s")
            files += [(f"{args.rows / 1e6:g}M-row CSV", c), (f"{args.rows / 1e6:g}M-line JSONL", j)]
        if args.big:
            big = Path(tmp) / "big.csv"
            write_in_child(big, "csv", args.big)
            files.append((f"{args.big / 1e6:g}M-row CSV", big))
        no_pyc = os.environ.get("PYTHONDONTWRITEBYTECODE") and not args.bytecode
        print(
            f"date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, "
            f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load {os.getloadavg()[0]:.1f}, best of {args.repeat}"
            + (", PYTHONDONTWRITEBYTECODE set (no --bytecode)" if no_pyc else "")
        )
        head = (
            f"{'input':<16} {'tool':<12} {'wall s':>7} {'cpu s':>6} {'peak MB':>8} {'exit':>4}"
            f" {'wall x':>7} {'cpu x':>6} {'mem x':>6}"
        )
        print(head)
        env = bytecode_env(Path(tmp)) if args.bytecode else None
        if env is not None:  # one untimed run per tool writes its bytecode
            for cmd in cmds.values():
                run_child([a.replace("{f}", str(files[0][1])) for a in cmd], args.timeout, env)
        for label, f in files:
            ours: tuple[float, float, float] | None = None
            for name, cmd in cmds.items():
                if f.name == "big.csv" and name != "stabletrain" and not args.big_competitors:
                    continue
                runs = [
                    run_child([a.replace("{f}", str(f)) for a in cmd], args.timeout, env)
                    for _ in range(args.repeat)
                ]
                wall, cpu, rss = (min(r[k] for r in runs) for k in range(3))
                code = runs[-1][3]
                if name == "stabletrain":
                    ours = (wall, cpu, rss)
                ratio = (
                    f"{wall / ours[0]:>6.2f}x {cpu / ours[1]:>5.2f}x {rss / ours[2]:>5.2f}x"
                    if ours
                    else ""
                )
                print(
                    f"{label:<16} {name:<12} {wall:>7.2f} {cpu:>6.2f} {rss:>8.0f} {code:>4} {ratio}"
                )


def bytecode_env(tmp: Path) -> dict[str, str]:
    """The children's environment with compiled bytecode, as an installed package has it (pip
    compiles it at install): a bytecode cache under ``tmp``, ``PYTHONDONTWRITEBYTECODE`` unset
    (a checkout that may not write bytecode compiles every module it changed, in every run)."""
    env = dict(os.environ, PYTHONPYCACHEPREFIX=str(tmp / "pycache"))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def parsers_bench(args: argparse.Namespace) -> None:
    """polars vs pyarrow parsing the same CSV and JSONL into numpy columns (best of 3)."""
    import polars as pl

    try:
        import pyarrow.csv as pa_csv
        import pyarrow.json as pa_json
    except ImportError:  # not a dependency since polars won the measurement
        sys.exit("--parsers compares polars with pyarrow: pip install pyarrow first")

    def pl_cols(df: Any) -> list[np.ndarray]:
        return [df[c].to_numpy() for c in df.columns]

    def pa_cols(tb: Any) -> list[np.ndarray]:
        return [tb[c].to_numpy() for c in tb.column_names]

    with tempfile.TemporaryDirectory() as tmp:
        c, j = Path(tmp) / "m.csv", Path(tmp) / "m.jsonl"
        write_tables(c, j, args.rows)
        cases = {
            "polars read_csv": lambda: pl_cols(pl.read_csv(c)),
            "pyarrow.csv read_csv": lambda: pa_cols(pa_csv.read_csv(c)),
            "polars read_ndjson": lambda: pl_cols(pl.read_ndjson(j)),
            "pyarrow.json read_json": lambda: pa_cols(pa_json.read_json(j)),
        }
        for name, fn in cases.items():
            best = min(timed(fn)[0] for _ in range(3))
            print(f"{name:<24} {args.rows:,} rows  {best:.3f} s")


def profile_bench(args: argparse.Namespace) -> None:
    """Where one diagnosis of an ``--rows`` CSV spends its time: imports, read, each detector."""
    t0 = time.perf_counter()
    from stabletrain.detectors.base import feed
    from stabletrain.detectors.columns import Batch, as_batch
    from stabletrain.detectors.registry import default_detectors
    from stabletrain.logs.read import read_run_columns
    from stabletrain.logs.readers.table import import_polars

    import_polars()
    print(f"{'imports':<32} {time.perf_counter() - t0:.3f} s")
    with tempfile.TemporaryDirectory() as tmp:
        c = Path(tmp) / "metrics.csv"
        write_tables(c, None, args.rows)
        t, (run, cols) = timed(lambda: read_run_columns(c))
        print(f"{'read ' + f'{args.rows:,}-row CSV':<32} {t:.3f} s")
        raw = Batch(run.raw, cols)
        batch = as_batch(run.records, like=raw)
        for d in default_detectors():
            src = raw if getattr(d, "wants_raw", False) else batch
            t, _ = timed(lambda d=d, src=src: feed(d, src))
            name = type(d).__name__ + (f"({d.metric})" if hasattr(d, "metric") else "")
            print(f"  {name:<30} {t:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--big", type=int, default=0, help="also an N-row CSV (stabletrain only)")
    ap.add_argument("--big-competitors", action="store_true", help="run the others on --big too")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--skip-competitors", action="store_true")
    ap.add_argument(
        "--bytecode",
        action="store_true",
        help="children run with compiled bytecode (a temporary cache), as an installed package",
    )
    ap.add_argument("--readers", action="store_true", help="the in-process reader benchmark")
    ap.add_argument("--skip-doctor", action="store_true", help="(--readers) no diagnose timing")
    ap.add_argument("--parsers", action="store_true", help="polars vs pyarrow, CSV and JSONL")
    ap.add_argument("--profile", action="store_true", help="a diagnosis's time by stage")
    ap.add_argument("--write", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--kind", choices=("csv", "jsonl"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.write:
        csv = args.write if args.kind == "csv" else None
        write_tables(csv, None if csv else args.write, args.rows)
    elif args.parsers:
        parsers_bench(args)
    elif args.profile:
        profile_bench(args)
    elif args.readers:
        readers_bench(args)
    else:
        compare(args)


if __name__ == "__main__":
    main()
