"""Real-log generalisation bench: the doctor and its peers on bench/doctor_corpus (issue 11).

Every log in ``bench/doctor_corpus/labels.yaml`` (real public training logs, labelled before any
doctor was run on them, split into a DEV and a HELD-OUT half; 48 from the first collection, 26
from round 3, 24 from round 4, 12 from round 5 (all held-out), 15 from round 6 and 26 from round 7,
``round: N``, whose halves are reported apart as "r3 dev" / "r3 heldout" ... "r7 dev" / "r7 heldout")
is given to

- stabletrain: ``python -m stabletrain.cli doctor LOG --format json`` in a child process (the
  child inherits PYTHONPATH, so ``PYTHONPATH=/work/base/src`` measures the session-start code);
- runmedic, trainproof, trainspotter: their CLIs, run and mapped by bench/doctor_tools.py;

each with a time cap, and scored the same way:

- read: the tool produced a judgement on records it found. Not read = an error exit or "cannot
  read" answer, a crash, a time-out, or (stabletrain) a report over zero records, which is counted
  separately as a *silent pass* when it exited 0;
- problems found: a labelled problem is found when one of its ids (or an alias below) is among
  the tool's warning-or-worse findings; problems of an unread log are missed;
- healthy runs quiet: a healthy log is quiet when it was read and gave no warning-or-worse
  finding outside its ``acceptable`` ids; an unread healthy log is not quiet (it got no verdict).

Usage:
    PYTHONPATH=/work/base/src .venv/bin/python bench/doctor_corpus.py          # session-start code
    .venv/bin/python bench/doctor_corpus.py --tools stabletrain --split dev    # current tree
    options: --json OUT (per-log outcomes), --details, --timeout S, --only NAME[,NAME], --round 1|3|4|5|6|7,
             --from-json OUT (print the tables of a saved run without running anything)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from doctor_tools import ToolRun, run_case

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CORPUS = HERE / "doctor_corpus"
PEERS = ("runmedic", "trainproof", "trainspotter")
TOOLS = ("stabletrain", *PEERS)
ALARM = ("warning", "error", "critical")

# Documented equivalent names for a finding id (written with the labels, before any run): a
# finding under one of these names counts as the labelled id. Peers' codes are mapped to ids by
# the tables in bench/doctor_tools.py.
ALIASES: dict[str, frozenset[str]] = {
    "nonfinite-loss": frozenset({"nan-loss", "loss-nan", "loss-nonfinite", "nonfinite"}),
    "nonfinite-grad": frozenset({"nan-grad", "grad-nan", "grad-nonfinite", "nonfinite-gradient"}),
    "loss-spike": frozenset({"spike", "loss-spikes"}),
    "grad-spike": frozenset({"grad-norm-spike", "gradient-spike"}),
    "loss-divergence": frozenset({"divergence", "diverged", "loss-diverged"}),
    "grad-norm-growth": frozenset({"grad-growth", "gradient-growth", "grad-norm-rising"}),
    "loss-scale-collapse": frozenset({"loss-scale-floor", "amp-scale-collapse"}),
    "fp16-overflow": frozenset({"overflow", "amp-overflow"}),
    "chance-level": frozenset({"no-learning", "not-learning", "stuck", "plateau", "stalled"}),
    "overfitting": frozenset({"overfit", "generalisation-gap", "generalization-gap"}),
    "eval-unstable": frozenset({"eval-instability", "eval-noise", "noisy-eval"}),
    "duplicate-logging": frozenset({"duplicate-records", "duplicated-lines", "rank-duplicates"}),
    "run-restart": frozenset({"restart", "step-reset", "resumed-run"}),
    "slow-steps": frozenset({"slowdown", "throughput-drop", "step-time-drift"}),
    "clip-saturated": frozenset({"clipping-saturated"}),
}


def canonical(ids: Iterable[str]) -> set[str]:
    """Ids plus every label id they are an alias of."""
    out = set(ids)
    for label, names in ALIASES.items():
        if out & names:
            out.add(label)
    return out


@dataclass
class Case:
    name: str
    file: str
    dialect: str
    split: str
    healthy: bool
    problems: list[list[str]]
    acceptable: list[str]
    why: str = ""
    round: int = 1

    @property
    def half(self) -> str:
        """The split, named with its collection round after the first ("r3 dev")."""
        return self.split if self.round == 1 else f"r{self.round} {self.split}"

    @property
    def path(self) -> Path:
        return CORPUS / self.file


def load_cases() -> list[Case]:
    doc = yaml.safe_load((CORPUS / "labels.yaml").read_text())
    cases = []
    for c in doc["logs"]:
        expect = c["expect"]
        problems = [] if expect == "quiet" else [list(p) for p in expect]
        cases.append(
            Case(
                name=c["name"],
                file=c["file"],
                dialect=c["dialect"],
                split=c["split"],
                healthy=bool(c["healthy"]),
                problems=problems,
                acceptable=list(c.get("acceptable") or []),
                why=c.get("why", ""),
                round=int(c.get("round", 1)),
            )
        )
    return cases


# ---- running ---------------------------------------------------------------------------------
@dataclass
class Outcome:
    read: bool
    reason: str = ""
    ids: list[str] = field(default_factory=list)  # warning-or-worse finding ids (tool's own)
    candidates: list[list[str]] = field(default_factory=list)  # per finding: ids it may stand for
    silent_pass: bool = False  # exit 0 with zero records
    rc: int | None = None
    seconds: float = 0.0
    summary: dict[str, Any] = field(default_factory=dict)


def _tail(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return (lines[-1] if lines else "")[:200]


def run_stabletrain(path: Path, timeout: float) -> Outcome:
    cmd = [sys.executable, "-m", "stabletrain.cli", "doctor", str(path), "--format", "json"]
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=str(REPO))
    except subprocess.TimeoutExpired:
        return Outcome(False, f"timed out after {timeout:.0f}s", rc=124, seconds=timeout)
    dt = time.perf_counter() - t0
    try:
        doc = json.loads(p.stdout)
    except json.JSONDecodeError:
        kind = "unreadable" if p.returncode == 2 else "crash"
        return Outcome(
            False, f"{kind} (exit {p.returncode}): {_tail(p.stderr)}", rc=p.returncode, seconds=dt
        )
    summary = doc.get("summary") or {}
    records = summary.get("records")
    evals = summary.get("evals") or 0
    if records is not None and (records or 0) + (evals or 0) == 0:
        return Outcome(
            False,
            f"zero records (exit {p.returncode})",
            rc=p.returncode,
            silent_pass=p.returncode == 0,
            seconds=dt,
            summary=summary,
        )
    ids = [f["id"] for f in doc.get("findings", []) if f.get("severity") in ALARM]
    return Outcome(
        True,
        ids=ids,
        candidates=[[i] for i in ids],
        rc=p.returncode,
        seconds=dt,
        summary={k: summary.get(k) for k in ("format", "records", "evals")},
    )


def run_peer(tool: str, path: Path, timeout: float) -> Outcome:
    t0 = time.perf_counter()
    res: ToolRun = run_case(tool, path, REPO / ".venv", timeout)
    dt = time.perf_counter() - t0
    if not res.read:
        return Outcome(False, res.reason[:200], seconds=dt)
    return Outcome(
        True,
        ids=[f.code for f in res.flags],
        candidates=[sorted(f.candidates) for f in res.flags],
        seconds=dt,
    )


def run_tool(tool: str, case: Case, timeout: float) -> Outcome:
    if tool == "stabletrain":
        return run_stabletrain(case.path, timeout)
    return run_peer(tool, case.path, timeout)


# ---- scoring ---------------------------------------------------------------------------------
@dataclass
class Verdict:
    hits: list[str] = field(default_factory=list)
    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)  # on healthy logs only
    extra: list[str] = field(default_factory=list)  # unlabelled findings on problem logs

    @property
    def quiet(self) -> bool:
        return not self.false_alarms


def judge(case: Case, out: Outcome) -> Verdict:
    v = Verdict()
    found = [canonical(c) for c in out.candidates] if out.read else []
    for p in case.problems:
        names = "|".join(p)
        (v.hits if any(f & set(p) for f in found) else v.missed).append(names)
    allowed = set(case.acceptable) | {i for p in case.problems for i in p}
    for code, f in zip(out.ids, found, strict=False):
        if f & allowed:
            continue
        target = v.false_alarms if case.healthy else v.extra
        if code not in target:
            target.append(code)
    return v


@dataclass
class Tally:
    logs: int = 0
    read: int = 0
    silent: int = 0
    problems: int = 0
    found: int = 0
    healthy: int = 0
    quiet: int = 0

    def add(self, case: Case, out: Outcome, v: Verdict) -> None:
        self.logs += 1
        self.read += out.read
        self.silent += out.silent_pass
        self.problems += len(case.problems)
        self.found += len(v.hits)
        if case.healthy:
            self.healthy += 1
            self.quiet += out.read and v.quiet


def pct(a: int, b: int) -> str:
    return f"{a}/{b} ({100 * a / b:.0f}%)" if b else "-"


def table(cases: list[Case], results: dict[str, dict[str, Outcome]], tools: list[str]) -> str:
    rows = [
        "| tool | half | logs read | silent zero-record passes | problems found | healthy runs quiet |",
        "|---|---|---|---|---|---|",
    ]
    halves = sorted({c.half for c in cases}, key=lambda h: (h.startswith("r"), h))
    for tool in tools:
        for half in (*halves, "all"):
            t = Tally()
            for c in cases:
                if half != "all" and c.half != half:
                    continue
                out = results[tool][c.name]
                t.add(c, out, judge(c, out))
            rows.append(
                f"| {tool} | {half} | {pct(t.read, t.logs)} | {t.silent} | "
                f"{pct(t.found, t.problems)} | {pct(t.quiet, t.healthy)} |"
            )
    return "\n".join(rows)


def details(cases: list[Case], results: dict[str, dict[str, Outcome]], tools: list[str]) -> str:
    rows = [
        "| log | half | dialect | expected | " + " | ".join(tools) + " |",
        "|---|---|---|---|" + "---|" * len(tools),
    ]
    for c in cases:
        expected = "quiet" if c.healthy else "; ".join(" / ".join(p) for p in c.problems)
        cells = []
        for tool in tools:
            out = results[tool][c.name]
            if not out.read:
                cells.append("NOT READ" + (" (silent pass)" if out.silent_pass else ""))
                continue
            v = judge(c, out)
            parts = []
            if c.problems:
                parts.append(f"{len(v.hits)}/{len(c.problems)} found")
            if v.false_alarms:
                parts.append("FA: " + ", ".join(v.false_alarms))
            elif c.healthy:
                parts.append("quiet")
            if v.extra:
                parts.append("also: " + ", ".join(v.extra))
            cells.append("; ".join(parts))
        rows.append(
            f"| {c.name} | {c.half} | {c.dialect} | {expected} | " + " | ".join(cells) + " |"
        )
    return "\n".join(rows)


def render_saved(path: Path, split: str, rnd: str, with_details: bool) -> int:
    doc = json.loads(path.read_text())
    names = {c["name"] for c in doc["cases"]}
    cases = [c for c in load_cases() if c.name in names and split in ("all", c.split)]
    cases = [c for c in cases if rnd in ("all", str(c.round))]
    results = {
        tool: {n: Outcome(**{k: v for k, v in o.items() if k != "verdict"}) for n, o in r.items()}
        for tool, r in doc["results"].items()
    }
    tools = list(results)
    print(f"# saved run {path} (stabletrain from {doc.get('stabletrain_from')})")
    print(table(cases, results, tools))
    if with_details:
        print()
        print(details(cases, results, tools))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--tools", default=",".join(TOOLS))
    ap.add_argument("--split", choices=("dev", "heldout", "all"), default="all")
    ap.add_argument("--round", default="all", help="collection round: 1, 3, 4, 5, 6, 7 or all")
    ap.add_argument("--only", default="", help="comma-separated log names")
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--json", type=Path, help="write per-log outcomes here")
    ap.add_argument("--details", action="store_true", help="print the per-log table too")
    ap.add_argument("--from-json", type=Path, help="render the tables of a saved --json run")
    args = ap.parse_args(argv)
    if args.from_json:
        return render_saved(args.from_json, args.split, args.round, args.details)

    tools = [t for t in args.tools.split(",") if t]
    cases = [c for c in load_cases() if args.split in ("all", c.split)]
    cases = [c for c in cases if args.round in ("all", str(c.round))]
    if args.only:
        keep = set(args.only.split(","))
        cases = [c for c in cases if c.name in keep]

    where = subprocess.run(
        [sys.executable, "-c", "import stabletrain; print(stabletrain.__file__)"],
        capture_output=True,
        text=True,
        cwd=str(REPO),
    ).stdout.strip()
    print(f"# doctor corpus: {len(cases)} logs; stabletrain imported from {where}")
    print(
        f"# PYTHONPATH={os.environ.get('PYTHONPATH', '')!r}; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )

    results: dict[str, dict[str, Outcome]] = {t: {} for t in tools}
    jobs = [(t, c) for t in tools for c in cases]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outs = pool.map(lambda tc: run_tool(tc[0], tc[1], args.timeout), jobs)
        for (tool, case), out in zip(jobs, outs, strict=True):
            results[tool][case.name] = out

    print()
    print(table(cases, results, tools))
    if args.details:
        print()
        print(details(cases, results, tools))
    if args.json:
        doc = {
            "stabletrain_from": where,
            "cases": [asdict(c) for c in cases],
            "results": {
                t: {
                    n: {**asdict(o), "verdict": asdict(judge(c, o))}
                    for c in cases
                    for n, o in [(c.name, results[t][c.name])]
                }
                for t in tools
            },
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
