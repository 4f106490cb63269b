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
import datetime as dt
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
COMPETITORS = ("trainspotter", "trainproof", "runmedic")
TOOLS = ("stabletrain", *COMPETITORS)

# ---- mapping tables: tool code -> candidate stabletrain ids --------------------------------
# trainspotter: keyed by finding title (its detectors are metric-generic); eval-metric variants
# of growth/spike findings describe the eval curve, hence the separate entries.
TRAINSPOTTER_MAP: dict[str, set[str]] = {
    "Loss spike": {"loss-spike"},
    "Loss spike@eval": {"eval-unstable"},
    "Diverged (sustained growth)": {"loss-divergence"},
    "Diverged (sustained growth)@eval": {"overfitting", "eval-unstable"},
    "Diverged (non-finite values)": {"nonfinite-loss", "nonfinite-grad", "loss-divergence"},
    "Plateau": {"chance-level", "lr-constant"},
    "Overfitting onset": {"overfitting"},
    "No LR warmup detected": {"warmup-short"},
    "LR discontinuity": {"lr-constant", "scheduler-late"},
    "LR increased after its peak": {"scheduler-late"},
    "Gradient-norm explosion": {"grad-spike", "grad-norm-growth", "nonfinite-grad"},
    "Gradient clipping likely saturated": {"clip-saturated", "clip-near-threshold"},
    "Throughput regression": {"slow-steps"},
    "Eval metric too noisy to rank checkpoints": {"eval-unstable"},
    "Suspiciously low loss early (heuristic)": set(),
}
TRAINPROOF_MAP: dict[str, set[str]] = {
    "TP-NAN": {"nonfinite-loss"},
    "TP-NAN-GRAD": {"nonfinite-grad"},
    "TP-FLAT": {"chance-level", "lr-zero", "lr-constant"},
    "TP-DIVERGE": {"loss-divergence", "loss-spike"},
    "TP-DEAD-RUN": {"chance-level"},
    "TP-GRAD-SPIKE": {"grad-spike"},
    "TP-ZERO-LR": {"lr-zero"},
    "TP-ZERO-LR-PARTIAL": {"lr-zero"},
    "TP-OVERFIT": {"overfitting"},
    "TP-STEP-CLIFF": {"slow-steps"},
    "TP-LOADER-BOUND": {"slow-steps"},
    "TP-ZERO-LOSS": set(),
    "TP-ZERO-LOSS-ONSET": set(),
    "TP-ZERO-GRAD": set(),
}
# runmedic: keyed by check name; non_finite is split by the metric it names.
RUNMEDIC_MAP: dict[str, set[str]] = {
    "non_finite": {"nonfinite-loss"},
    "non_finite@grad": {"nonfinite-grad"},
    "divergence": {"loss-divergence", "loss-spike"},
    "loss_spikes": {"loss-spike"},
    "grad_spikes": {"grad-spike", "grad-norm-growth"},
    "no_learning": {"chance-level", "lr-zero"},
    "overfitting": {"overfitting"},
    "constant_lr_plateau": {"lr-constant", "scheduler-late"},
    "slow_steps": {"slow-steps"},
    "slowdown": {"slow-steps"},
    "input_bound": {"slow-steps"},
    "log:amp_overflow": {"fp16-overflow", "loss-scale-collapse"},
    "log:anomaly_nan": {"nonfinite-loss", "nonfinite-grad"},
    "val_below_train": set(),
    "memory_growth": set(),
}

# Config vocabulary of the frameworks these logs come from (HF TrainingArguments, DeepSpeed,
# Lightning Trainer, Megatron args, stabletrain's YAML): a fix naming one of these with a value
# is a concrete config change. Keys found in the log's own files count too.
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
_FIX_RE = re.compile(
    r"`?([A-Za-z_][\w.\-]*)`?\s*(?:=|:|->|→|\bto\b)\s*`?[-+]?(?:\d|\.\d|true\b|false\b|bf16|fp16|fp32|null\b|none\b)",
    re.IGNORECASE,
)

_IMPERATIVE = re.compile(
    r"(?:^|[\s(\-*•])(set|use|lower|raise|reduce|increase|decrease|change|try|add|enable|disable|"
    r"switch|pass|keep|cap)\b",
    re.IGNORECASE,
)


@dataclass
class Flag:
    code: str
    candidates: set[str]
    fixes: list[str] = field(default_factory=list)
    changes: list[tuple[str, Any]] = field(default_factory=list)  # structured config diff


@dataclass
class ToolRun:
    read: bool
    reason: str = ""
    flags: list[Flag] = field(default_factory=list)
    unavailable: bool = False


# ---- runners ---------------------------------------------------------------------------------
def _run(cmd: list[str], timeout: float) -> tuple[int, str, str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return 124, "", f"timed out after {timeout:.0f}s"
    except OSError as e:
        return 127, "", str(e)
    return p.returncode, p.stdout, p.stderr


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:160]


_ST_SNIPPET = textwrap.dedent(
    """
    import json, sys
    try:
        import stabletrain
        from stabletrain.errors import LogReadError, ConfigError
        diagnose = stabletrain.diagnose
    except Exception as e:
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"})); sys.exit(0)
    try:
        rep = diagnose(sys.argv[1])
    except (LogReadError, ConfigError) as e:
        print(json.dumps({"unreadable": str(e)})); sys.exit(0)
    except (ImportError, AttributeError, NotImplementedError) as e:
        print(json.dumps({"unavailable": f"{type(e).__name__}: {e}"})); sys.exit(0)
    print(json.dumps(rep.to_json(), default=str))
    """
)


def run_stabletrain(path: Path, timeout: float) -> ToolRun:
    rc, out, err = _run([sys.executable, "-c", _ST_SNIPPET, str(path)], timeout)
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        return ToolRun(False, f"crash (rc {rc}): {_first_line(err)}")
    if "unavailable" in doc:
        return ToolRun(False, doc["unavailable"], unavailable=True)
    if "unreadable" in doc:
        return ToolRun(False, doc["unreadable"])
    flags = []
    for f in doc.get("findings", []):
        if f.get("severity") not in ("warning", "error", "critical"):
            continue
        fixes, changes = [], []
        for x in f.get("fix") or f.get("fixes") or []:
            fixes.append(str(x.get("description", "")))
            changes += list((x.get("changes") or {}).items())
        flags.append(Flag(f["id"], {f["id"]}, fixes, changes))
    return ToolRun(True, flags=flags)


def run_trainspotter(path: Path, venv: Path, timeout: float) -> ToolRun:
    cmd = [str(venv / "bin" / "trainspotter"), "analyze", str(path), "--output", "json"]
    rc, out, err = _run(cmd, timeout)
    if rc != 0 or not out.strip():
        return ToolRun(False, _first_line(err or out) or f"exit {rc}")
    doc = json.loads(out)
    flags = []
    for f in doc.get("findings", []):
        if f.get("severity") not in ("warning", "error"):
            continue
        title = f.get("title", "")
        metric = str(f.get("metric", ""))
        is_eval = metric.startswith(("eval", "val")) or "/eval" in metric or "val/" in metric
        key = f"{title}@eval" if is_eval and f"{title}@eval" in TRAINSPOTTER_MAP else title
        flags.append(Flag(key, set(TRAINSPOTTER_MAP.get(key, set())), list(f.get("fixes", []))))
    return ToolRun(True, flags=flags)


def run_trainproof(path: Path, venv: Path, timeout: float) -> ToolRun:
    rc, out, err = _run([str(venv / "bin" / "trainproof"), "doctor", str(path), "--json"], timeout)
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        return ToolRun(False, _first_line(err or out) or f"exit {rc}")
    if doc.get("error") or not doc.get("reports"):
        reason = doc.get("error") or f"not judged: {doc.get('not_judged', {}).get('unreadable')}"
        return ToolRun(False, str(reason)[:160])
    flags = []
    for r in doc["reports"]:
        for f in r.get("findings", []):
            if f.get("id") in ("TP-NO-RECORDS", "TP-NO-LOSS") and len(doc["reports"]) == 1:
                return ToolRun(False, f.get("message", f["id"]))
            if f.get("level") not in ("FAIL", "WARN"):
                continue
            # trainproof has no fix field: any advice it gives lives in the message text.
            text = f"{f.get('message', '')} {f.get('evidence', '')}"
            flags.append(Flag(f["id"], set(TRAINPROOF_MAP.get(f["id"], set())), [text]))
    return ToolRun(True, flags=flags)


def run_runmedic(path: Path, venv: Path, timeout: float) -> ToolRun:
    rc, out, err = _run([str(venv / "bin" / "runmedic"), "diagnose", str(path), "--json"], timeout)
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        return ToolRun(False, _first_line(err or out) or f"exit {rc}")
    flags = []
    for run in doc:
        if "train_loss" not in (run.get("roles") or {}) and not run.get("findings"):
            continue
        for f in run.get("findings", []):
            if f.get("severity") not in ("critical", "warning"):
                continue
            code = f["check"]
            if code == "non_finite" and "grad" in str(f.get("metric", "")).lower():
                code = "non_finite@grad"
            flags.append(Flag(code, set(RUNMEDIC_MAP.get(code, set())), list(f.get("fixes", []))))
    if not doc:
        return ToolRun(False, "no runs found")
    return ToolRun(True, flags=flags)


def run_tool(tool: str, path: Path, venv: Path, timeout: float) -> ToolRun:
    if tool == "stabletrain":
        return run_stabletrain(path, timeout)
    if not (venv / "bin" / tool).exists():
        return ToolRun(False, f"not installed in {venv} (run with --setup)", unavailable=True)
    fn = {"trainspotter": run_trainspotter, "trainproof": run_trainproof, "runmedic": run_runmedic}
    return fn[tool](path, venv, timeout)


def run_case(tool: str, path: Path, venv: Path, timeout: float) -> ToolRun:
    """The run dir first; if the tool cannot read it, each file in it (union of what reads)."""
    res = run_tool(tool, path, venv, timeout)
    if res.read or res.unavailable or not path.is_dir():
        return res
    merged = ToolRun(False, res.reason)
    for f in sorted(p for p in path.iterdir() if p.is_file() and p.name != "SOURCE.txt"):
        r = run_tool(tool, f, venv, timeout)
        if r.read:
            merged.read = True
            merged.flags += r.flags
    return merged


# ---- scoring ---------------------------------------------------------------------------------
def case_text(path: Path) -> str:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return "\n".join(p.read_bytes()[:2_000_000].decode("utf-8", "ignore") for p in files)


def _is_config_key(key: str, user_text: str, own_only: bool = False) -> bool:
    key = key.strip("`")
    last = key.split(".")[-1]
    # own_only: the key (or its last dotted part, e.g. optim.lr -> lr) is spelled in the log's files
    own = (
        len(last) > 1 and re.search(rf"(?<![\w-]){re.escape(last)}(?![\w-])", user_text) is not None
    )
    return own if own_only else (key in CONFIG_KEYS or last in CONFIG_KEYS or own)


def concrete_fix(flags: list[Flag], user_text: str, own_only: bool = False) -> str | None:
    """A config change from these findings: a structured diff, or an imperative sentence naming
    a config key with a value ("Set max_grad_norm to 1.0"); a sentence that only describes a
    cause ("... with fp16=False ...") does not count."""
    for f in flags:
        keyed = [(k, v) for k, v in f.changes if _is_config_key(str(k), user_text, own_only)]
        if keyed:
            return "; ".join(f"{k}: {v}" for k, v in keyed)
    for f in flags:
        for text in f.fixes:
            for sentence in re.split(r"(?<=[.;!?])\s+", text):
                if not _IMPERATIVE.search(sentence):
                    continue
                if any(
                    _is_config_key(m.group(1), user_text, own_only)
                    for m in _FIX_RE.finditer(sentence)
                ):
                    return sentence
    return None


@dataclass
class Score:
    hits: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    fix: str | None = None
    own_fix: bool = False  # the fix's key is spelled as in the log's own files


def score(case: dict[str, Any], res: ToolRun, user_text: str) -> Score:
    s = Score()
    problems = case.get("problems") or []
    allowed = set(case.get("acceptable") or [])
    for p in problems:
        allowed |= set(p["ids"])
    for p in problems:
        hit = [f for f in res.flags if f.candidates & set(p["ids"])] if res.read else []
        (s.hits if hit else s.missed).append("|".join(p["ids"]))
        if hit and s.fix is None:
            s.fix = concrete_fix(hit, user_text)
            s.own_fix = (
                s.fix is not None and concrete_fix(hit, user_text, own_only=True) is not None
            )
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
    _, sha, _ = _run(["git", "rev-parse", "--short", "HEAD"], 10)
    _, ver, _ = _run(
        [sys.executable, "-c", "import stabletrain;print(stabletrain.__version__)"], 60
    )
    out["stabletrain"] = f"{ver.strip() or '?'} (git {sha.strip() or '?'})"
    for t in COMPETITORS:
        rc, o, e = _run([str(venv / "bin" / t), "--version"], 60)
        out[t] = (o or e).strip().split()[-1] if rc == 0 and (o or e).strip() else "not installed"
    return out


def render(
    cases: list[dict[str, Any]],
    results: dict[str, dict[str, tuple[ToolRun, Score]]],
    tools: list[str],
) -> tuple[str, str]:
    """(summary table, per-log table) in Markdown."""
    n_problems = sum(len(c.get("problems") or []) for c in cases)
    n_healthy = sum(1 for c in cases if c.get("healthy"))
    rows = [
        "| tool | logs read | problems found | missed | false alarms (on healthy logs) "
        "| logs with a concrete config fix (in the log's own key names) |",
        "|---|---|---|---|---|---|",
    ]
    for t in tools:
        per = [results[c["name"]][t] for c in cases]
        if all(r.unavailable for r, _ in per):
            rows.append(f"| {t} | not available: {per[0][0].reason[:80]} | | | | |")
            continue
        read = sum(1 for r, _ in per if r.read)
        n_na = sum(1 for r, _ in per if r.unavailable)
        # a doctor still under construction: say which logs it could not even be run on
        reasons = [r.reason for r, _ in per if r.unavailable]
        na = f" ({n_na} not available: {reasons[0][:70]})" if reasons else ""
        hits = sum(len(s.hits) for _, s in per)
        fa = sum(len(s.false_alarms) for _, s in per)
        fa_h = sum(
            len(s.false_alarms) for c, (_, s) in zip(cases, per, strict=True) if c.get("healthy")
        )
        fixes = sum(1 for _, s in per if s.fix)
        own = sum(1 for _, s in per if s.own_fix)
        rows.append(
            f"| {t} | {read}/{len(cases)}{na} | {hits}/{n_problems} | {n_problems - hits} "
            f"| {fa} ({fa_h} on {n_healthy} healthy) | {fixes} ({own}) |"
        )
    detail = ["| log | truth | " + " | ".join(tools) + " |", "|---|---|" + "---|" * len(tools)]
    for c in cases:
        truth = (
            "healthy"
            if c.get("healthy")
            else (
                ", ".join("|".join(p["ids"]) for p in c.get("problems") or []) or "(no required id)"
            )
        )
        cells = []
        for t in tools:
            r, s = results[c["name"]][t]
            if not r.read:
                cells.append("unread" if not r.unavailable else "n/a")
                continue
            bits = [f"+{h}" for h in s.hits] + [f"-{m}" for m in s.missed]
            bits += [f"FA:{x}" for x in s.false_alarms]
            if s.fix:
                bits.append("fix(own keys)" if s.own_fix else "fix")
            cells.append(" ".join(bits) or "clean")
        detail.append(f"| {c['name']} | {truth} | " + " | ".join(cells) + " |")
    return "\n".join(rows), "\n".join(detail)


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


def write_md(
    out: Path,
    summary: str,
    detail: str,
    vers: dict[str, str],
    not_read: dict[str, list[str]],
    results: dict[str, dict[str, tuple[ToolRun, Score]]],
    cases: list[dict[str, Any]],
    argv: list[str] | None,
) -> None:
    cmd = "python bench/compare_doctors.py " + " ".join(argv if argv is not None else sys.argv[1:])
    fixes = [
        f"- **{t}** on `{c['name']}`: {s.fix[:200]}"
        for c in cases
        for t, (_, s) in results[c["name"]].items()
        if s.fix
    ]
    unread = [
        f"- **{t}**: {len(v)} logs — "
        + "; ".join(x[:110] for x in v[:4])
        + (" …" if len(v) > 4 else "")
        for t, v in not_read.items()
        if v
    ]
    maps = "\n".join(
        f"- **{name}**: "
        + "; ".join(
            f"`{k}` → {'/'.join(sorted(v)) or '(none of ours: false alarm unless acceptable)'}"
            for k, v in table.items()
        )
        for name, table in (
            ("trainspotter (by title; @eval = on an eval metric)", TRAINSPOTTER_MAP),
            ("trainproof (by id; FAIL/WARN only)", TRAINPROOF_MAP),
            ("runmedic (by check; critical/warning only)", RUNMEDIC_MAP),
        )
    )
    body = f"""# Doctor comparison on real logs

Measured {dt.date.today().isoformat()} with:

```
{cmd}
```

Versions: {", ".join(f"{k} {v}" for k, v in vers.items())}. The three PyPI doctors run from
their own venv (`--setup` creates it; `trainspotter[tensorboard]` for its TensorBoard reader).

Ground truth: `bench/ground_truth.yaml` — one careful human reading of each of the
{len(cases)} logs in `/work/shared/real-logs`, each problem justified with its steps and values;
{sum(1 for c in cases if c.get("healthy"))} logs are healthy. Several logs come from
trainproof's own repository (its gallery and evidence), i.e. its home ground.

## Summary

{summary}

Rules: only warning-or-worse findings count. A tool's finding maps to a set of stabletrain ids
(tables below); it finds a problem when the sets meet. A finding matching neither a problem
nor the log's `acceptable` ids is a false alarm, counted once per finding code per log. An
unreadable log counts its problems as missed. "Concrete config fix": a true finding whose fix
names a config key (framework vocabulary or a key in the log's own files) with a new value
(a structured diff, or an imperative sentence such as "set max_grad_norm to 1.0"; a sentence
that only names a cause does not count). In brackets: how many of those fixes spell the key as
the log's own files do (e.g. `model.optimizer.weight_decay` from a Lightning hparams.yaml).

## Per log

`+` found, `-` missed, `FA:` false alarm (tool's own code), `fix` = concrete config change.

{detail}

## Logs a tool could not read

{chr(10).join(unread) or "none"}

## Config fixes given

{chr(10).join(fixes) or "none"}

## Mapping tables

{maps}
"""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(body)


if __name__ == "__main__":
    raise SystemExit(main())
