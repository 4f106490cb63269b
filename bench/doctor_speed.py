"""Reading speed of million-step logs, and total doctor time, beside tbparse and EventAccumulator.

Generates in a temp dir a stabletrain run log (``--steps`` lines of steps.jsonl) and a TensorBoard
file of ``--steps`` scalars (4 tags x steps/4 steps, written with our own TFRecord framing and a
numpy CRC-32C, since ``SummaryWriter`` needs ~160 µs per scalar), then prints records/s for
``read_run`` on each, the same TB file through ``tbparse`` and tensorboard's ``EventAccumulator``
(``size_guidance={'scalars': 0}``: every point), and ``stabletrain.doctor.diagnose`` end to end.

    .venv/bin/python bench/doctor_speed.py            # 1,000,000 steps / scalars
    .venv/bin/python bench/doctor_speed.py --steps 200000 --skip-competitors
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from stabletrain.logs.read import read_run

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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1_000_000)
    ap.add_argument("--skip-competitors", action="store_true")
    ap.add_argument("--skip-doctor", action="store_true")
    args = ap.parse_args()
    n = args.steps
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


if __name__ == "__main__":
    main()
