"""Fuzz ``stabletrain doctor`` and ``stabletrain lint`` with mutated real logs and configs.

Every input runs in its own child process (forked from a parent that has imported stabletrain
once, so 10,000 inputs take minutes, not hours) under a wall-time cap and an address-space cap
(``resource.setrlimit``). For each input the child runs the real CLI ``main(argv)``; the parent
records the exit code, the per-child peak RSS (``os.wait4``) and whether stderr holds a traceback.

Seeds: every log and config file under ``tests/`` and ``configs/``, the real-world corpora
``bench/doctor_corpus`` and ``bench/lint_corpus``, and ``../shared/real-logs`` when present. Mutations (``mutate``): byte flips, truncation, chunk deletion and duplication,
line shuffles, hostile tokens (NaN, Infinity, 400-digit numbers, 1,000-deep brackets, YAML
aliases and Python tags, NUL bytes, a 1 MB line) and number substitution. A separate *garbage*
family (random bytes, number-free words, named like real logs) must be refused: exit 0 there is
a silent pass on input that was not understood.

Outcome classes:

- **crash**: exit 4 (internal error), a signal, any other code, or "Traceback" on stderr;
- **hang**: still running at ``--timeout`` seconds (killed);
- **memory cap**: a MemoryError/``RLIMIT_AS`` hit is a crash whose stderr says so;
- **exit-0-on-garbage**: a garbage input answered with exit 0.

Usage::

    .venv/bin/python bench/fuzz.py --n 10000 --workers 2 --timeout 10 --mem-mb 2048
    .venv/bin/python bench/fuzz.py --n 300 --replay CRASH_DIR   # keep reproducers of failures

Prints a summary table and the distinct failures (command, seed file, mutation, first stderr
line); with ``--keep DIR`` writes each failing input there for reproduction.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import re
import resource
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_LOGS = REPO.parent / "shared" / "real-logs"
SEEDS_INIT = REPO / "tests" / "fixtures" / "seeds" / "__init__.py"

#: Hostile tokens inserted into inputs: each one broke a reader in the issue-12 audit or is kin.
TOKENS: tuple[bytes, ...] = (
    b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"-inf", b"1e400", b"-1e400",
    b"9" * 400, b"-" + b"9" * 400, b"0", b"-0", b"1e-400", b"\x00", b"\xff\xfe", b"\xef\xbb\xbf",
    b"[" * 1000, b'{"a": ' * 1000, b"- " * 500, b"\n" * 2000, b"\r", b"\x1b[31m", b"\t",
    b"x" * 1_000_000, b"loss: nan", b"step: -1", b"epoch: 1e30", b"&a [*a, *a]", b"*a",
    b"!!python/object/apply:os.system ['true']", b"<<: *a", b'"', b",,,,", b"}", b"]",
    b"iteration 9999999999999999999999 | loss 1.0", b"step=inf loss=inf grad_norm=nan",
)  # fmt: skip
_NUMBER = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_HOSTILE_NUMBERS = (b"NaN", b"Infinity", b"-Infinity", b"nan", b"inf", b"1e400", b"9" * 400,
                    b"-0", b"0", b"1e-400", b"-1")  # fmt: skip
LOG_NAMES = ("train.log", "trainer_state.json", "metrics.csv", "steps.jsonl",
             "events.out.tfevents.1700000000.host.1.0", "log.txt")  # fmt: skip
CONFIG_NAMES = ("config.yaml", "ds_config.json", "training_args.json")


def mutate(data: bytes, rng: random.Random, rounds: int | None = None) -> tuple[bytes, str]:
    """``data`` with 1-3 random mutations applied; returns the bytes and what was done."""
    done: list[str] = []
    for _ in range(rounds or rng.randint(1, 3)):
        op = rng.choice(_OPS)
        data, what = op(data, rng)
        done.append(what)
    return data, "; ".join(done)


def _pos(data: bytes, rng: random.Random) -> int:
    return rng.randint(0, len(data)) if data else 0


def _flip(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    if not data:
        return bytes([rng.randrange(256)]), "flip(empty)"
    b = bytearray(data)
    n = rng.randint(1, 16)
    for _ in range(n):
        b[rng.randrange(len(b))] = rng.randrange(256)
    return bytes(b), f"flip {n} bytes"


def _truncate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    at = _pos(data, rng)
    return data[:at], f"truncate at {at}"


def _delete(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    a = _pos(data, rng)
    b = min(len(data), a + rng.randint(1, 4096))
    return data[:a] + data[b:], f"delete {a}:{b}"


def _duplicate(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    a = _pos(data, rng)
    b = min(len(data), a + rng.randint(1, 2048))
    k = rng.choice((2, 10, 100))
    return data[:b] + data[a:b] * k + data[b:], f"duplicate {a}:{b} x{k}"


def _insert(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    tok = rng.choice(TOKENS)
    at = _pos(data, rng)
    return data[:at] + tok + data[
        at:
    ], f"insert {tok[:24]!r}{'...' if len(tok) > 24 else ''} at {at}"


def _numbers(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    spans = [m.span() for m in _NUMBER.finditer(data)]
    if not spans:
        return _insert(data, rng)
    chosen = rng.sample(spans, min(len(spans), rng.choice((1, 3, 20))))
    tok = rng.choice(_HOSTILE_NUMBERS)
    out = bytearray(data)
    for a, b in sorted(chosen, reverse=True):
        out[a:b] = tok
    return bytes(out), f"{len(chosen)} numbers -> {tok[:12]!r}"


def _shuffle_lines(data: bytes, rng: random.Random) -> tuple[bytes, str]:
    lines = data.split(b"\n")
    rng.shuffle(lines)
    return b"\n".join(lines), "shuffle lines"


_OPS = (_flip, _truncate, _delete, _duplicate, _insert, _insert, _numbers, _numbers, _shuffle_lines)


def garbage(rng: random.Random) -> tuple[bytes, str]:
    """Input with no training records at all: random bytes, or number-free words."""
    n = rng.choice((0, 1, 100, 1000, 20000))
    if rng.random() < 0.5:
        return rng.randbytes(n), f"{n} random bytes"
    words = ("lorem", "ipsum", "loss", "step", "epoch", "accuracy", "the", "model", "=", ":", "\n")
    text = " ".join(rng.choice(words) for _ in range(n // 5))
    return text.encode(), f"{n // 5} number-free words"


# -- seeds ---------------------------------------------------------------------------------------


def seed_files(include_shared: bool = True, generated: Path | None = None) -> dict[str, list[Path]]:
    """{"doctor": log files, "lint": config files} from tests/, configs/ and the shared logs;
    with ``generated``, also the five seed postmortems' logs and configs (HF TrainingArguments
    JSON, ds_config.json...) written there by tests/fixtures/seeds."""
    logs: list[Path] = []
    configs = sorted((REPO / "configs").glob("*.yaml"))
    roots = [REPO / "tests" / "fixtures"]
    if include_shared and SHARED_LOGS.is_dir():
        roots.append(SHARED_LOGS)
    if generated is not None:
        configs += _generate_seeds(generated)
        roots.append(generated)
    for root in roots:
        for p in sorted(root.rglob("*")):
            if not p.is_file() or p.suffix == ".py" or p.name in ("SOURCE.txt", "README.md"):
                continue
            if p.stat().st_size > 2_000_000:
                continue
            if p in configs:
                continue
            if p.suffix in (".yaml", ".yml") and "config" in p.name:
                configs.append(p)
            else:
                logs.append(p)
    configs += sorted((REPO / "tests").rglob("*.yaml"))
    # the real-world corpora: logs of every dialect the doctor reads, configs in every format
    # lint reads (YAML, JSON, launch scripts, Python read as literals)
    skip = ("SOURCE.txt", "README.md", "labels.yaml")
    for p in sorted((REPO / "bench" / "doctor_corpus").rglob("*")):
        if p.is_file() and p.name not in skip and p.stat().st_size <= 2_000_000:
            logs.append(p)
    configs += [p for p in sorted((REPO / "bench" / "lint_corpus").rglob("*")) if p.is_file()
                and p.name != "labels.yaml" and p.stat().st_size <= 2_000_000]  # fmt: skip
    return {"doctor": logs, "lint": sorted(set(configs))}


def _generate_seeds(out: Path) -> list[Path]:
    """Write the seed postmortems' logs and configs under ``out``; returns the config files.

    In a subprocess: the generators import torch, which would make the parent (and so every
    forked child's RSS, which counts the pages it shares with the parent) 200 MB bigger.
    """
    import subprocess

    code = (
        "import importlib.util, sys; from pathlib import Path\n"
        f"spec = importlib.util.spec_from_file_location('seeds', {str(SEEDS_INIT)!r})\n"
        "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
        "for name in mod.NAMES: print(mod.generate(name, Path(sys.argv[1]))[1])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, check=True
    )
    return [Path(line) for line in done.stdout.split("\n") if line]


# -- running -------------------------------------------------------------------------------------


@dataclass
class Case:
    command: str  # doctor | lint
    seed: str  # the seed file (or "garbage")
    mutation: str
    data: bytes
    name: str  # file name the input is written under
    garbage: bool = False


@dataclass
class Result:
    case: Case
    code: int | None  # exit code; None: killed (hang)
    signal: int | None
    seconds: float
    rss_mib: float
    err: str

    @property
    def traceback(self) -> bool:
        return "Traceback (most recent call last)" in self.err

    @property
    def kind(self) -> str:
        if self.err.startswith("hang: "):
            return "hang"
        if self.code is None or self.code not in (0, 1, 2) or self.traceback:
            return "crash"
        if self.case.garbage and self.code == 0:
            return "exit-0-on-garbage"
        return "ok"


def _child(case_path: Path, case: Case, out_dir: Path, mem_bytes: int, timeout: float) -> None:
    """In the forked child: caps, redirect output, run the CLI, exit with its code."""
    try:
        resource.setrlimit(resource.RLIMIT_AS, (mem_bytes, mem_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (int(timeout) + 2, int(timeout) + 3))
        fd_out = os.open(out_dir / "stdout", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        fd_err = os.open(out_dir / "stderr", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(fd_out, 1)
        os.dup2(fd_err, 2)
        from stabletrain.cli import main

        # -v: an internal error prints its traceback, so the report can name file and line
        argv = ["-v", case.command, str(case_path), "--format", "json"]
        code = main(argv)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(int(code))
    except BaseException:  # report anything the CLI let through
        import traceback

        traceback.print_exc()
        sys.stderr.flush()
        os._exit(99)


def preload() -> None:
    """Import what the commands import, once, in the parent: each fork then starts warm.

    Nothing is *run* here: libraries that start thread pools on first use (polars) must not
    have started them before a fork.
    """
    import importlib
    import pkgutil

    import stabletrain

    for mod in pkgutil.walk_packages(stabletrain.__path__, "stabletrain."):
        if any(part in mod.name for part in (".train", ".integrations", ".guard", ".measure")):
            continue
        with contextlib.suppress(ImportError):
            importlib.import_module(mod.name)


def run_cases(
    cases: Iterable[Case],
    *,
    total: int,
    workers: int,
    timeout: float,
    mem_mb: int,
    progress: bool = True,
) -> list[Result]:
    preload()
    work = Path(tempfile.mkdtemp(prefix="stabletrain-fuzz-"))
    mem = mem_mb << 20
    results: list[Result] = []
    running: dict[int, tuple[Case, Path, float]] = {}
    # cases are made one at a time and their bytes dropped once written: the parent stays small,
    # so a child's peak RSS (which counts the pages it shares with the parent) is its own
    todo = enumerate(cases)
    pending = next(todo, None)
    t_start = time.perf_counter()
    try:
        while pending is not None or running:
            while pending is not None and len(running) < workers:
                i, case = pending
                pending = next(todo, None)
                d = work / str(i)
                d.mkdir()
                path = d / case.name
                path.write_bytes(case.data)
                case.data = b""
                pid = os.fork()
                if pid == 0:
                    _child(path, case, d, mem, timeout)
                running[pid] = (case, d, time.perf_counter())
            time.sleep(0.002)
            for pid in list(running):
                case, d, t0 = running[pid]
                got, status, usage = os.wait4(pid, os.WNOHANG)
                elapsed = time.perf_counter() - t0
                hung = False
                if got == 0:
                    if elapsed < timeout:
                        continue
                    os.kill(pid, signal.SIGKILL)
                    got, status, usage = os.wait4(pid, 0)
                    hung = True
                del running[pid]
                err = (d / "stderr").read_text(errors="replace") if (d / "stderr").exists() else ""
                code = os.waitstatus_to_exitcode(status)
                res = Result(
                    case,
                    None if (hung or code < 0) else code,
                    signal.SIGKILL if hung else (-code if code < 0 else None),
                    elapsed,
                    usage.ru_maxrss / 1024,
                    ("hang: " if hung else "") + err,
                )
                if res.kind != "ok":  # keep the input of a failure for --keep
                    case.data = (d / case.name).read_bytes()
                results.append(res)
                shutil.rmtree(d, ignore_errors=True)
                if progress and len(results) % 500 == 0:
                    rate = len(results) / (time.perf_counter() - t_start)
                    print(f"  {len(results)}/{total} ({rate:.1f}/s)", file=sys.stderr)
    finally:
        for pid in running:
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)
    return results


def build_cases(
    n: int, seed: int, include_shared: bool, garbage_share: float, only: str | None = None
) -> Iterator[Case]:
    rng = random.Random(seed)
    seeds = seed_files(include_shared, generated=Path(tempfile.mkdtemp(prefix="fuzz-seeds-")))
    contents = {p: p.read_bytes() for files in seeds.values() for p in files}
    for _ in range(n):
        if rng.random() < garbage_share:
            command = only or rng.choice(("doctor", "doctor", "lint"))
            data, what = garbage(rng)
            names = LOG_NAMES if command == "doctor" else CONFIG_NAMES
            yield Case(command, "garbage", what, data, rng.choice(names), garbage=True)
            continue
        command = only or ("lint" if rng.random() < 0.3 else "doctor")
        p = rng.choice(seeds[command])
        data, what = mutate(contents[p], rng)
        yield Case(command, str(p.relative_to(p.anchor)), what, data, p.name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10_000, help="inputs to run")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per input")
    ap.add_argument("--mem-mb", type=int, default=2048, help="address-space cap per input")
    ap.add_argument("--garbage-share", type=float, default=0.1)
    ap.add_argument("--no-shared", action="store_true", help="skip ../shared/real-logs")
    ap.add_argument("--keep", type=Path, help="write failing inputs here")
    ap.add_argument("--only", choices=["doctor", "lint"], help="fuzz one command only")
    args = ap.parse_args()
    os.environ.setdefault("POLARS_MAX_THREADS", "1")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    cases = build_cases(args.n, args.seed, not args.no_shared, args.garbage_share, args.only)
    print(f"{args.n} inputs, {args.workers} workers, cap {args.timeout:.0f} s / {args.mem_mb} MiB")
    t0 = time.perf_counter()
    results = run_cases(
        cases, total=args.n, workers=args.workers, timeout=args.timeout, mem_mb=args.mem_mb
    )
    wall = time.perf_counter() - t0
    report(results, wall, args.keep)
    return 0


def report(results: list[Result], wall: float, keep: Path | None) -> None:
    kinds = Counter(r.kind for r in results)
    codes = Counter((r.case.command, r.code) for r in results)
    garbage_n = sum(r.case.garbage for r in results)
    peak = max((r.rss_mib for r in results), default=0.0)
    slowest = max((r.seconds for r in results), default=0.0)
    print(f"\ninputs {len(results)} (garbage {garbage_n}) in {wall:.0f} s")
    print(f"crashes            {kinds['crash']}")
    print(f"hangs              {kinds['hang']}")
    parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"peak RSS           {peak:.0f} MiB (per child, max; the parent's pages count: {parent:.0f} MiB)"
    )
    print(f"slowest input      {slowest:.1f} s")
    print(f"exit-0-on-garbage  {kinds['exit-0-on-garbage']}")
    print(
        "exit codes         "
        + ", ".join(f"{c} {k}: {v}" for (c, k), v in sorted(codes.items(), key=str))
    )
    for r in sorted(results, key=lambda r: -r.seconds)[:3]:
        print(
            f"  slow: {r.seconds:.1f} s  {r.case.command} {r.case.seed} :: {r.case.mutation[:100]}"
        )
    bad = [r for r in results if r.kind != "ok"]
    groups: dict[str, list[Result]] = {}
    for r in bad:
        groups.setdefault(f"{r.kind} {r.case.command} {_signature(r.err)}", []).append(r)
    if groups:
        print(f"\n{len(groups)} distinct failures (kind, command, last stderr line):")
    for sig, rs in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        r = rs[0]
        print(
            f"  {len(rs):5d}  {sig[:160]}\n         e.g. {r.case.seed} :: {r.case.mutation[:120]}"
        )
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        for i, (_sig, rs) in enumerate(sorted(groups.items())):
            r = rs[0]
            d = keep / f"{i:03d}-{r.kind}-{r.case.command}"
            d.mkdir(exist_ok=True)
            (d / r.case.name).write_bytes(r.case.data)
            (d / "WHAT.txt").write_text(
                f"command: stabletrain {r.case.command} {r.case.name} --format json\n"
                f"seed: {r.case.seed}\nmutation: {r.case.mutation}\nexit: {r.code}\n"
                f"stderr:\n{r.err[-4000:]}\n",
                encoding="utf-8",
            )
        print(f"\nreproducers in {keep}")


def _signature(err: str) -> str:
    """Where it broke: the last 'File ..., line N' of a traceback plus the error, else line 1."""
    frames = re.findall(r'File "([^"]+)", line (\d+), in (\w+)', err)
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    last = lines[-1] if lines else ""
    if frames:
        f, n, fn = frames[-1]
        return f"{last[:100]} @ {f.split('/src/')[-1]}:{n} {fn}"
    return re.sub(r"/tmp/\S+", "<input>", last)[:140]


if __name__ == "__main__":
    sys.exit(main())
