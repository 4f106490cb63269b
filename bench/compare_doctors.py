"""Side-by-side: stabletrain's doctor vs the log doctors on PyPI, on the same real logs.

Runs ``stabletrain.diagnose`` and the CLIs of ``trainspotter``, ``trainproof`` and ``runmedic``
(installed in a SEPARATE venv so their dependencies never touch the project's) on every real log
listed in ``bench/ground_truth.yaml``, maps each tool's findings to stabletrain's finding ids with
the explicit tables below, and prints per tool: logs read, problems found, problems missed, false
alarms, and on how many logs a true finding came with a concrete config change (a key the user's
config or framework has, with a new value).

Scoring rules (also printed into docs/benchmarks-doctor.md):
- only warning-or-worse findings count (info/PASS lines are not alarms);
- a tool's finding maps to a SET of candidate ids (a symptom-level message such as "loss never
  improved" may fairly mean several of ours); it hits a ground-truth problem when the sets meet;
- a finding that meets neither a problem nor the log's ``acceptable`` ids is a false alarm,
  counted once per distinct finding code per log (ten "Loss spike" lines = one false alarm);
- a log a tool cannot read (error, exit code, "no records") counts as read-failure and its
  problems as missed.

Limits: ground truth is one careful human reading (justified per log in the YAML), not a label
set from the runs' authors; several logs come from trainproof's own repository.

Usage:
    .venv/bin/python bench/compare_doctors.py --setup      # create the competitor venv once
    .venv/bin/python bench/compare_doctors.py --write-md docs/benchmarks-doctor.md
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compare_report import render, write_md
from doctor_tools import Flag, ToolRun, run_case, run_cmd
from framework_keys import ALL_KEYS, case_vocabulary, normalise

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMPETITORS = ("trainspotter", "trainproof", "runmedic")
TOOLS = ("stabletrain", *COMPETITORS)

# Config vocabulary of the frameworks these logs come from (HF TrainingArguments, DeepSpeed,
# Lightning Trainer, Megatron args, stabletrain's YAML, and all of bench/framework_keys.py): a fix
# naming one of these with a value is a concrete config change. Keys found in the log's own
# files count too. "In the log's own key names" is stricter: a key of the frameworks that wrote
# THIS log (framework_keys.CASE_FRAMEWORKS), or spelled in its own files.
CONFIG_KEYS = {
    "learning_rate",
    "lr",
    "max_grad_norm",
    "gradient_clip_val",
    "clip_grad",
    "clip-grad",
    "warmup_steps",
    "warmup_ratio",
    "lr_warmup_iters",
    "lr-warmup-iters",
    "lr_scheduler_type",
    "fp16",
    "bf16",
    "precision",
    "initial_scale_power",
    "loss_scale",
    "loss_scale_window",
    "min_loss_scale",
    "hysteresis",
    "init_scale",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "accumulate_grad_batches",
    "logging_nan_inf_filter",
    "early_stopping_patience",
    "num_train_epochs",
    "max_steps",
    "adam_epsilon",
    "adam_beta2",
    "eps",
    "plateau_patience",
    "plateau_factor",
    "min_lr",
    "batch_size",
    "grad_accum",
}
CONFIG_KEYS |= ALL_KEYS  # every documented key of the frameworks in bench/framework_keys.py
_FIX_RE = re.compile(
    r"`?([A-Za-z_][\w.\-]*)`?\s*(?:=|:|->|→|\bto\b)\s*`?[-+]?(?:\d|\.\d|true\b|false\b|bf16|fp16|fp32|null\b|none\b)",
    re.IGNORECASE,
)

_IMPERATIVE = re.compile(
    r"(?:^|[\s(\-*•])(set|use|lower|raise|reduce|increase|decrease|change|try|add|enable|disable|"
    r"switch|pass|keep|cap)\b",
    re.IGNORECASE,
)


# ---- scoring ---------------------------------------------------------------------------------
def case_text(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return "\n".join(p.read_bytes()[:2_000_000].decode("utf-8", "ignore") for p in files)


def _is_config_key(key: str, user_text: str, own: frozenset[str] | None = None) -> bool:
    """A key of some framework's config (``own`` None), or — with ``own``, the vocabulary of the
    frameworks that wrote this log — a key in the log's own vocabulary: one of ``own`` or spelled
    in the log's own files (the key or its last dotted part, e.g. optim.lr -> lr)."""
    key = normalise(key)
    last = key.split(".")[-1]
    spelled = (
        len(last) > 1 and re.search(rf"(?<![\w-]){re.escape(last)}(?![\w-])", user_text) is not None
    )
    if own is not None:
        return key in own or spelled
    return key in CONFIG_KEYS or last in CONFIG_KEYS or spelled


def concrete_fix(
    flags: list[Flag], user_text: str, own: frozenset[str] | None = None
) -> str | None:
    """A config change from these findings: a structured diff, or an imperative sentence naming
    a config key with a value ("Set max_grad_norm to 1.0"); a sentence that only describes a
    cause ("... with fp16=False ...") does not count. With ``own``: only keys of the log's own
    vocabulary count (see ``_is_config_key``)."""
    for f in flags:
        keyed = [(k, v) for k, v in f.changes if _is_config_key(str(k), user_text, own)]
        if keyed:
            return "; ".join(f"{k}: {v}" for k, v in keyed)
    for f in flags:
        for text in f.fixes:
            for sentence in re.split(r"(?<=[.;!?])\s+", text):
                if not _IMPERATIVE.search(sentence):
                    continue
                if any(
                    _is_config_key(m.group(1), user_text, own) for m in _FIX_RE.finditer(sentence)
                ):
                    return sentence
    return None


@dataclass
class Score:
    hits: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    fix: str | None = None
    own_fix: bool = False  # a fix's key is in the log's own vocabulary (framework or files)


def score(case: dict[str, Any], res: ToolRun, user_text: str) -> Score:
    s = Score()
    own = case_vocabulary(case["name"])
    problems = case.get("problems") or []
    allowed = set(case.get("acceptable") or [])
    for p in problems:
        allowed |= set(p["ids"])
    for p in problems:
        hit = [f for f in res.flags if f.candidates & set(p["ids"])] if res.read else []
        (s.hits if hit else s.missed).append("|".join(p["ids"]))
        if hit and s.fix is None:
            s.fix = concrete_fix(hit, user_text)
        if hit and not s.own_fix:
            s.own_fix = concrete_fix(hit, user_text, own) is not None
    for f in res.flags:
        if not (f.candidates & allowed) and f.code not in s.false_alarms:
            s.false_alarms.append(f.code)
    return s


# ---- setup / versions / output ---------------------------------------------------------------
def setup_venv(venv: Path) -> None:
    if not (venv / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q"]
    # trainspotter's TensorBoard reader is an extra (tbparse + tensorboard, no torch).
    subprocess.run(
        [*pip, "trainspotter[tensorboard]==0.2.6", "trainproof==0.22.0", "runmedic==0.1.1"],
        check=True,
    )


def versions(venv: Path) -> dict[str, str]:
    out = {}
    _, sha, _ = run_cmd(["git", "rev-parse", "--short", "HEAD"], 10)
    _, ver, _ = run_cmd(
        [sys.executable, "-c", "import stabletrain;print(stabletrain.__version__)"], 60
    )
    out["stabletrain"] = f"{ver.strip() or '?'} (git {sha.strip() or '?'})"
    for t in COMPETITORS:
        rc, o, e = run_cmd([str(venv / "bin" / t), "--version"], 60)
        out[t] = (o or e).strip().split()[-1] if rc == 0 and (o or e).strip() else "not installed"
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--logs",
        type=Path,
        default=Path(os.environ.get("STABLETRAIN_REAL_LOGS", "/work/shared/real-logs")),
    )
    ap.add_argument("--truth", type=Path, default=HERE / "ground_truth.yaml")
    ap.add_argument(
        "--compare-venv",
        type=Path,
        default=Path(os.environ.get("STABLETRAIN_COMPARE_VENV", "/tmp/compare-venv")),
    )
    ap.add_argument("--setup", action="store_true", help="create the competitor venv and exit")
    ap.add_argument("--tools", default=",".join(TOOLS), help="comma-separated subset")
    ap.add_argument("--timeout", type=float, default=120.0, help="seconds per tool per log")
    ap.add_argument("--write-md", type=Path, default=None, help="also write the Markdown report")
    ap.add_argument("--dump", type=Path, default=None, help="write raw mapped results as JSON")
    args = ap.parse_args(argv)

    if args.setup:
        setup_venv(args.compare_venv)
        print(f"competitor venv ready at {args.compare_venv}")
        return 0
    tools = [t for t in args.tools.split(",") if t in TOOLS]
    cases = yaml.safe_load(args.truth.read_text())["cases"]
    results: dict[str, dict[str, tuple[ToolRun, Score]]] = {}
    for c in cases:
        path = args.logs / c["path"]
        text = case_text(path)
        results[c["name"]] = {}
        for t in tools:
            res = run_case(t, path, args.compare_venv, args.timeout)
            results[c["name"]][t] = (res, score(c, res, text))
        print(
            f"  {c['name']}: "
            + ", ".join(
                f"{t}={'read' if results[c['name']][t][0].read else 'unread'}" for t in tools
            ),
            file=sys.stderr,
        )
    summary, detail = render(cases, results, tools)
    vers = versions(args.compare_venv)
    print(summary)
    print()
    print(detail)
    print()
    print("versions: " + ", ".join(f"{k} {v}" for k, v in vers.items()))
    not_read = {
        t: [
            c["name"] + ": " + results[c["name"]][t][0].reason
            for c in cases
            if not results[c["name"]][t][0].read
        ]
        for t in tools
    }
    if args.dump:
        args.dump.write_text(
            json.dumps(
                {
                    c["name"]: {
                        t: {
                            "read": r.read,
                            "reason": r.reason,
                            "flags": [[f.code, sorted(f.candidates)] for f in r.flags],
                            "hits": s.hits,
                            "missed": s.missed,
                            "false_alarms": s.false_alarms,
                            "fix": s.fix,
                        }
                        for t, (r, s) in results[c["name"]].items()
                    }
                    for c in cases
                },
                indent=1,
            )
        )
    if args.write_md:
        write_md(args.write_md, summary, detail, vers, not_read, results, cases, argv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
