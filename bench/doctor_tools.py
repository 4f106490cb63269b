"""The log doctors compared by bench/compare_doctors.py: how to run each, and how its findings map.

Each runner turns one tool's output on one log into Flags (a tool code plus the stabletrain ids it
can stand for). The mapping tables are the whole of the judgement about a competitor's output;
the scoring lives in compare_doctors.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

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
def run_cmd(cmd: list[str], timeout: float) -> tuple[int, str, str]:
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
    rc, out, err = run_cmd([sys.executable, "-c", _ST_SNIPPET, str(path)], timeout)
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
    rc, out, err = run_cmd(cmd, timeout)
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
    rc, out, err = run_cmd(
        [str(venv / "bin" / "trainproof"), "doctor", str(path), "--json"], timeout
    )
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
    rc, out, err = run_cmd(
        [str(venv / "bin" / "runmedic"), "diagnose", str(path), "--json"], timeout
    )
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
