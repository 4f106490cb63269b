"""Tried as a new user: run the README's commands in order, as written, and time each one.

Every line of the README's ```bash blocks runs verbatim in a scratch directory (``configs/``
linked into it, so the run dirs land there), followed by the README's hand-loop Python snippet,
with the repo's ``.venv/bin`` first on PATH. Printed per command: wall seconds, exit status and,
when it failed, its last line of output; then the demo's figures (the README's figures table
cites them) and the machine.

- ``make demo`` is timed as the command it runs (``stabletrain demo``): the one-time install a
  bare machine does first (about 2 minutes of pip, mostly torch) is not re-measured here, a
  fresh venv per run being too slow on the shared 2-core box.
- ``make test`` runs only with ``--with-tests``.
- The README's doctor/lint examples name a user's own files (``train.log``,
  ``trainer_state.json``...). Each gets a real stand-in at that path: logs from
  ``bench/doctor_corpus/`` and ``tests/fixtures/`` (public logs, SOURCE.txt beside each), the
  hand loop's run dir from the snippet itself, a TrainingArguments JSON and a ``ds_config.json``
  written here, a CSV of the demo's steps. The table says which.
- The snippet gets what it leaves to the user: a ``Linear(8, 2)``, AdamW, a constant schedule and
  a 4-batch loader holding one NaN sample (as ``tests/test_readme.py`` does).

    .venv/bin/python bench/new_user.py [--out new_user.json] [--markdown] [--with-tests]
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import re
import resource
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"

#: the README's placeholder paths → (a real file standing in, what it is)
STAND_INS: dict[str, tuple[Path | None, str]] = {
    "output/checkpoint-500/trainer_state.json": (
        REPO / "bench/doctor_corpus/hf_cpt_10ep/trainer_state.json",
        "a real HF trainer_state.json (bench/doctor_corpus/hf_cpt_10ep)",
    ),
    "lightning_logs/version_0/metrics.csv": (
        REPO / "bench/doctor_corpus/lightning_slm_wikitext/metrics.csv",
        "a real Lightning metrics.csv (bench/doctor_corpus/lightning_slm_wikitext)",
    ),
    "train.log": (
        REPO / "tests/fixtures/logs/megatron_core_756/log.txt",
        "a real Megatron-core console log (tests/fixtures/logs/megatron_core_756)",
    ),
    "training_args.json": (None, "a TrainingArguments JSON written here"),
    "ds_config.json": (None, "a ds_config.json written here (fp16, ZeRO 2, clip 1.0)"),
    "config.yaml": (REPO / "configs/seed001-plateau-too-slow.yaml", "configs/seed001-*.yaml"),
    "my.yaml": (
        REPO / "configs/unstable-digits.yaml",
        "a trainer config, configs/unstable-digits.yaml",
    ),
    "metrics.csv": (None, "a CSV (step, train_loss, lr) of the demo's digits-cnn steps"),
}
TRAINING_ARGS = {"learning_rate": 5e-5, "per_device_train_batch_size": 8,
                 "gradient_accumulation_steps": 4, "warmup_ratio": 0.03, "max_grad_norm": 1.0,
                 "lr_scheduler_type": "cosine", "num_train_epochs": 3, "fp16": True}  # fmt: skip
DS_CONFIG = {"train_micro_batch_size_per_gpu": 8, "gradient_accumulation_steps": 4,
             "gradient_clipping": 1.0, "fp16": {"enabled": True, "loss_scale": 0},
             "zero_optimization": {"stage": 2}}  # fmt: skip
SNIPPET_PRELUDE = """
import torch, torch.nn.functional as F
torch.manual_seed(0)
model = torch.nn.Linear(8, 2)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0)
x, y = torch.randn(64, 8), torch.randint(0, 2, (64,))
x[20] = float("nan")
loader = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
def compute_loss(model, batch):
    return F.cross_entropy(model(batch[0]), batch[1])
"""


def readme_steps(readme: str, with_tests: bool) -> list[tuple[str, list[str]]]:
    """(the README's text of each step, argv) in README order: bash lines, then the snippet."""
    steps: list[tuple[str, list[str]]] = []
    for block in re.findall(r"```bash\n(.*?)```", readme, re.S):
        for line in block.splitlines():
            cmd = line.split(" #")[0].strip()
            if not cmd:
                continue
            if cmd == "make demo":
                steps.append((cmd, [str(BIN / "stabletrain"), "demo"]))
            elif cmd == "make test":
                if with_tests:
                    steps.append((cmd, ["make", "-C", str(REPO), "test"]))
            else:
                steps.append((cmd, shlex.split(cmd)))
    snippet = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "guard.step" in b)
    steps.insert(
        1, ("README hand-loop snippet (python)", [sys.executable, "-c", SNIPPET_PRELUDE + snippet])
    )
    return steps


def place_stand_ins(root: Path, demo_dir: Path) -> dict[str, str]:
    used = {}
    for rel, (src, what) in STAND_INS.items():
        dst = root / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel == "training_args.json":
            dst.write_text(json.dumps(TRAINING_ARGS, indent=2))
        elif rel == "ds_config.json":
            dst.write_text(json.dumps(DS_CONFIG, indent=2))
        elif rel == "metrics.csv":
            steps = demo_dir / "digits-cnn" / "steps.jsonl"
            if not steps.is_file():
                continue
            with dst.open("w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["step", "train_loss", "lr"])
                for line in steps.read_text().splitlines():
                    r = json.loads(line)
                    w.writerow([r["step"], r.get("loss"), r.get("lr")])
        elif src is not None:
            shutil.copyfile(src, dst)
        used[rel] = what
    return used


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict[str, Any]:
    """Wall seconds, CPU seconds (all its processes: the steadier figure on a shared box), exit
    status and the last line of output of one command."""
    cpu0, t0 = _children_cpu(), time.perf_counter()
    try:
        p = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
        code, out = p.returncode, (p.stdout + p.stderr)
    except subprocess.TimeoutExpired as e:
        code, out = "timeout", str(e)
    except FileNotFoundError as e:
        code, out = "not found", str(e)
    wall, cpu = time.perf_counter() - t0, _children_cpu() - cpu0
    last = next((ln for ln in reversed(out.splitlines()) if ln.strip()), "")
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "exit": code, "last_line": last[:200]}


def demo_figures(demo_dir: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in ("digits-cnn", "unstable-digits-guard-off", "unstable-digits-guard-default"):
        path = demo_dir / name / "summary.json"
        if path.is_file():
            s = json.loads(path.read_text())
            keep = ("status", "final_accuracy", "best_accuracy", "skipped_steps", "wall_time_s")
            out[name] = {k: s.get(k) for k in keep}
    return out


def machine() -> dict[str, Any]:
    import torch

    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "loadavg": [round(x, 2) for x in os.getloadavg()],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, help="write the results as JSON here")
    ap.add_argument("--with-tests", action="store_true", help="also time `make test`")
    ap.add_argument("--timeout", type=float, default=600.0, help="per command, seconds")
    ap.add_argument("--markdown", action="store_true", help="also print the table as Markdown")
    args = ap.parse_args()
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("PYTHONPATH", None)
    started = dt.datetime.now(dt.timezone.utc)
    load_start = [round(x, 2) for x in os.getloadavg()]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()  # fmt: skip
    results = []
    with tempfile.TemporaryDirectory(prefix="stabletrain-new-user-") as tmp:
        root = Path(tmp)
        (root / "configs").symlink_to(REPO / "configs")
        stand_ins: dict[str, str] = {}
        for i, (text, argv) in enumerate(readme_steps(readme, args.with_tests)):
            if i == 2:  # after the demo and the snippet: the doctor's examples need their files
                stand_ins = place_stand_ins(root, root / "runs" / "demo")
            res = run(argv, root, env, args.timeout)
            res["command"] = text
            results.append(res)
            status = res["exit"]
            note = "" if status == 0 else f"  <- {res['last_line']}"
            print(f"{res['wall_s']:8.2f} s wall {res['cpu_s']:8.2f} s CPU  exit {status!s:<4} "
                  f"{text}{note}", flush=True)  # fmt: skip
        figures = demo_figures(root / "runs" / "demo")
    print("\nstand-ins for the README's own-file examples:")
    for rel, what in stand_ins.items():
        print(f"  {rel}: {what}")
    print("\nthe demo's figures:")
    for name, s in figures.items():
        print(f"  {name}: {s}")
    total, cpu = sum(r["wall_s"] for r in results), sum(r["cpu_s"] for r in results)
    failed = [r["command"] for r in results if r["exit"] != 0]
    info = {**machine(), "loadavg_start": load_start}
    print(f"\n{len(results)} commands, {total:.1f} s wall / {cpu:.1f} s CPU in all, "
          f"{len(failed)} non-zero exits")  # fmt: skip
    print(f"{started:%Y-%m-%d %H:%M} UTC, git {head}, {info}")
    if args.markdown:
        print("\n| README command | wall s | CPU s | exit |\n|---|---|---|---|")
        for r in results:
            print(f"| `{r['command']}` | {r['wall_s']:.1f} | {r['cpu_s']:.1f} | {r['exit']} |")
    if args.out:
        payload = {"date": started.isoformat(timespec="seconds"), "git": head, "machine": info,
                   "commands": results, "demo": figures, "stand_ins": stand_ins}  # fmt: skip
        args.out.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
