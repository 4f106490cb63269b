"""Real-config bench for ``stabletrain lint``: configs nobody on the team wrote (bench/lint_corpus).

Every config in ``bench/lint_corpus/labels.yaml`` (real configs from GitHub issues and public
repositories, labelled and split tune / held-out before lint ran on any of them) is given to the
public CLI in a child process::

    python -m stabletrain.cli lint FILE --format json --fail-on never

The child inherits PYTHONPATH, so ``PYTHONPATH=/work/base/src`` measures the session-start code.
Each run is scored as labels.yaml's header says:

- read: exit 0/1 with a JSON report; refused: exit 2 (one line naming the file); anything else
  (a traceback, exit 4, a time-out) is a crash;
- silent clean: a file in a format lint does not claim (py, sh) answered with exit 0/1 and no
  finding at all - a verdict on text it did not understand;
- problems found: a labelled problem is found when one of its ids is reported at warning or worse
  (what ``--fail-on warning`` stops on); "mentioned" counts any severity, info included;
- quiet: a broken-run or healthy config read with no warning-or-worse finding outside its
  ``acceptable`` ids; a refusal is quiet only where it is the honest answer (py/sh, the formats
  lint does not claim, and labels marked ``read: any``);
- wrong direction: a fix in the change set or in any finding that sets the learning rate above
  the configured one.

Usage:
    .venv/bin/python bench/lint_corpus.py                       # current tree, both halves
    PYTHONPATH=/work/base/src .venv/bin/python bench/lint_corpus.py --code base
    options: --round 1|2|3|all, --split tune|heldout|all, --details, --json OUT,
             --only NAME[,NAME], --timeout S

Rounds: round 1 (session 5) and round 2 (session 6) are development data once round 3 exists;
round 3's held-out half is the untouched one (run it once, with the final tree). Each round and
half prints its own line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "lint_corpus"
ALARM = ("warning", "error", "critical")
UNCLAIMED = ("py", "sh")  # formats lint does not claim to read
_LR_KEY = re.compile(r"(^|[._\[\]-])(lr|lr0|base_lr|learning_rate|warmup_max_lr)$", re.I)


@dataclass
class Outcome:
    name: str
    split: str
    kind: str
    format: str
    status: str = ""  # read | refused | crash
    rc: int | None = None
    seconds: float = 0.0
    findings: list[tuple[str, str]] = field(default_factory=list)  # (id, severity)
    found: list[bool] = field(default_factory=list)  # per labelled problem, warning or worse
    mentioned: list[bool] = field(default_factory=list)  # per labelled problem, any severity
    quiet: bool | None = None  # broken-run / healthy only
    false_alarms: list[str] = field(default_factory=list)
    silent_clean: bool = False
    wrong_direction: list[str] = field(default_factory=list)
    message: str = ""
    round: int = 1


def load_labels() -> list[dict[str, Any]]:
    data = yaml.safe_load((CORPUS / "labels.yaml").read_text(encoding="utf-8"))
    return list(data["configs"])


def run_lint(
    path: Path, timeout: float, inprocess: bool = False
) -> tuple[int | None, str, str, float]:
    argv = ["lint", str(path), "--format", "json", "--fail-on", "never"]
    t0 = time.perf_counter()
    if inprocess:  # the same CLI entry point, in this process (tests/test_lint_corpus.py)
        from stabletrain.cli import main

        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            rc = main(argv)
        return int(rc), out.getvalue(), err.getvalue(), time.perf_counter() - t0
    cmd = [sys.executable, "-m", "stabletrain.cli", *argv]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=os.environ)
    except subprocess.TimeoutExpired:
        return None, "", "timeout", time.perf_counter() - t0
    return p.returncode, p.stdout, p.stderr, time.perf_counter() - t0


def _configured(path: Path, dotted: str) -> float | None:
    """The value at ``dotted`` in the file itself (YAML/JSON), read here, not by stabletrain."""
    try:
        tree: Any = yaml.load(path.read_text(encoding="utf-8"), Loader=_Lenient)
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return None
    for part in re.split(r"\.|\[(\d+)\]", dotted):
        if part is None or part == "":
            continue
        if isinstance(tree, dict) and part in tree:
            tree = tree[part]
        elif isinstance(tree, list) and part.isdigit() and int(part) < len(tree):
            tree = tree[int(part)]
        else:
            return None
    try:
        return float(tree)
    except (TypeError, ValueError):
        return None


class _Lenient(yaml.SafeLoader):
    """SafeLoader that reads unknown tags (``!!python/tuple``) as plain data; never constructs."""


def _plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node)
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node)
    return loader.construct_scalar(node)  # type: ignore[arg-type]


_Lenient.add_multi_constructor("", _plain)


def wrong_direction(report: dict[str, Any], path: Path) -> list[str]:
    """Fixes that set an LR key above the configured LR (change set and every finding's fixes)."""
    changes: list[dict[str, Any]] = []
    cs = report.get("change_set") or {}
    changes.append(cs.get("changes") or {})
    base = cs.get("base_lr")
    for f in report.get("findings", []):
        for fx in f.get("fix") or []:
            changes.append(fx.get("changes") or {})
    out: list[str] = []
    for ch in changes:
        for key, new in ch.items():
            if not _LR_KEY.search(str(key)) or not isinstance(new, (int, float)):
                continue
            old = _configured(path, str(key))
            if old is None and isinstance(base, (int, float)):
                old = float(base)
            if old is not None and new > old * (1 + 1e-9):
                out.append(f"{key}: {old:g} -> {new:g}")
    return sorted(set(out))


def score(label: dict[str, Any], timeout: float, inprocess: bool = False) -> Outcome:
    path = CORPUS / "configs" / label["file"]
    o = Outcome(label["name"], label["split"], label["kind"], label["format"])
    o.round = int(label.get("round", 1))
    rc, out, err, o.seconds = run_lint(path, timeout, inprocess)
    o.rc = rc
    report: dict[str, Any] | None = None
    if rc in (0, 1):
        try:
            report = json.loads(out)
            o.status = "read"
        except json.JSONDecodeError:
            o.status, o.message = "crash", f"exit {rc} without a JSON report"
    elif rc == 2:
        o.status, o.message = "refused", (err.strip().splitlines() or [""])[-1][:200]
    else:
        o.status = "crash"
        o.message = "timeout" if rc is None else (err.strip().splitlines() or [""])[-1][:200]
    if report is not None:
        o.findings = [(f["id"], f["severity"]) for f in report.get("findings", [])]
        o.wrong_direction = wrong_direction(report, path)
        o.silent_clean = label["format"] in UNCLAIMED and not o.findings
    alarms = {i for i, s in o.findings if s in ALARM}
    every = {i for i, _ in o.findings}
    if label["kind"] == "broken":
        for ids in label["expect"]:
            o.found.append(bool(alarms & set(ids)))
            o.mentioned.append(bool(every & set(ids)))
    else:
        acceptable = set(label.get("acceptable") or [])
        o.false_alarms = sorted(alarms - acceptable)
        if o.status == "read":
            o.quiet = not o.false_alarms
        else:  # labels.yaml: refusing py/sh (formats lint does not claim) is an honest answer
            honest = label["format"] in UNCLAIMED or label.get("read") == "any"
            o.quiet = o.status == "refused" and honest
    return o


def totals(outcomes: list[Outcome]) -> dict[str, int]:
    """The figures of one half, as the tables print them."""
    clean = [o for o in outcomes if o.kind != "broken"]
    return {
        "configs": len(outcomes),
        "read": sum(o.status == "read" for o in outcomes),
        "refused": sum(o.status == "refused" for o in outcomes),
        "crashed": sum(o.status == "crash" for o in outcomes),
        "silent_clean": sum(o.silent_clean for o in outcomes),
        "problems": sum(len(o.found) for o in outcomes),
        "found": sum(sum(o.found) for o in outcomes),
        "mentioned": sum(sum(o.mentioned) for o in outcomes),
        "clean": len(clean),
        "quiet": sum(bool(o.quiet) for o in clean),
        "false_alarms": sum(bool(o.false_alarms) for o in clean),
        "wrong_direction": sum(bool(o.wrong_direction) for o in outcomes),
    }


def table(outcomes: list[Outcome], title: str) -> str:
    n = len(outcomes)
    read = sum(o.status == "read" for o in outcomes)
    refused = sum(o.status == "refused" for o in outcomes)
    crash = sum(o.status == "crash" for o in outcomes)
    silent = sum(o.silent_clean for o in outcomes)
    probs = [f for o in outcomes for f in o.found]
    ment = [m for o in outcomes for m in o.mentioned]
    clean = [o for o in outcomes if o.kind != "broken"]
    quiet = sum(bool(o.quiet) for o in clean)
    fa = sum(bool(o.false_alarms) for o in clean)
    wrong = sum(bool(o.wrong_direction) for o in outcomes)
    return (
        f"{title}: {n} configs | read {read}, refused {refused}, crashed {crash}, "
        f"silent clean {silent} | problems found {sum(probs)}/{len(probs)} "
        f"(mentioned at any severity {sum(ment)}/{len(ment)}) | quiet {quiet}/{len(clean)} "
        f"(false alarms on {fa}) | wrong-direction LR fixes {wrong}"
    )


def details(outcomes: list[Outcome]) -> str:
    lines = []
    for o in outcomes:
        if o.kind == "broken":
            verdict = "found " + "".join("+" if f else "-" for f in o.found)
        else:
            verdict = "quiet" if o.quiet else f"ALARM {','.join(o.false_alarms) or o.status}"
        shown = ", ".join(f"{i}:{s[0]}" for i, s in o.findings) or o.message or "-"
        extra = f" WRONG-DIRECTION {o.wrong_direction}" if o.wrong_direction else ""
        extra += " SILENT-CLEAN" if o.silent_clean else ""
        lines.append(f"  {o.split:8} {o.name:42} {o.status:8} {verdict:14} {shown}{extra}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--split", choices=("tune", "heldout", "all"), default="all")
    ap.add_argument("--round", choices=("1", "2", "3", "all"), default="all")
    ap.add_argument("--only", default="")
    ap.add_argument("--details", action="store_true")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--timeout", type=float, default=60.0)
    ap.add_argument("--code", default="current tree", help="label for the printed tables")
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args(argv)
    labels = load_labels()
    if args.split != "all":
        labels = [c for c in labels if c["split"] == args.split]
    if args.round != "all":
        labels = [c for c in labels if int(c.get("round", 1)) == int(args.round)]
    if args.only:
        wanted = set(args.only.split(","))
        labels = [c for c in labels if c["name"] in wanted]
    with ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        outcomes = list(pool.map(lambda c: score(c, args.timeout), labels))
    print(
        f"stabletrain lint on bench/lint_corpus ({args.code}; PYTHONPATH="
        f"{os.environ.get('PYTHONPATH', '') or '-'})"
    )
    for rnd in sorted({o.round for o in outcomes}):
        for split in ("tune", "heldout"):
            part = [o for o in outcomes if o.split == split and o.round == rnd]
            if part:
                print(table(part, f"r{rnd} {split:8}"))
                if args.details:
                    print(details(part))
    if args.json:
        args.json.write_text(json.dumps([asdict(o) for o in outcomes], indent=1), "utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
