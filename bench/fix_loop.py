"""The doctor's closed loop (issue 13): train a broken config, diagnose it, apply the advice, re-train.

For each case of ``bench/fix_cases/cases.yaml`` (written, with its expected outcome, before any
of them ran): train it with the reference trainer (``stabletrain train CONFIG --set ...``, the
guard off so the failure shows), run ``stabletrain doctor RUN --format json``, apply the advice
as ``--set`` overrides, train again, and compare the quality before / after with the model's
stable reference (``configs/digits-cnn.yaml`` / ``configs/tiny-gpt.yaml`` under the same bounds).

Quality (higher is better): the CNN's final val accuracy (``summary.json`` ``final_accuracy``;
missing or non-finite counts as chance, 0.10); the GPT's final val loss (``final_eval_loss``;
missing, non-finite or above chance counts as chance = the stable reference's first-step train
loss, ~ln(vocab)), compared as lower-is-better.

Rules, fixed before the first run:

- **broken**: the broken run falls short of the reference by at least the margin (CNN 3 accuracy
  points, GPT 0.10 nats of val loss). A case that is not broken is reported as ``n.b.`` and left
  out of the repair rate (its advice is still applied, and a fix that makes it worse by more than
  the margin is counted as ``worse``).
- **repaired**: the advice was applied and the re-trained run closes at least half of the gap:
  ``after - broken >= 0.5 * (reference - broken)`` on the quality scale (so it is never worse
  than the broken run). A case with no advice, or whose re-run fails, is not repaired.
- **conflict**: a key given two or more different values (compared at 6 significant digits) by
  what the mode applies (``findings``: all changes of every warning/error finding's fixes;
  ``changeset``: the change set). ``report_conflicts`` counts the same over every fix of the
  report's warning/error findings in any mode, for information.
- **wrong direction**: an instability case (``lr_rule: down``) whose applied ``optim.lr`` is
  higher than the configured one, or an underfitting case (``lr_rule: up``) whose applied
  ``optim.lr`` is lower. The configured LR is the broken run's own ``config.yaml`` value.
- **refused**: an advised override the trainer's config refuses (unknown key, bad value, or a
  combination it rejects); tried greedily in order, re-tried once more after the rest; counted,
  reported, never a crash.

Modes (``--apply``): ``findings`` (the protocol the issue measured: every change of every fix of
every warning/error finding, in order, the last value wins), ``changeset`` (the report's
``change_set.changes``, a flat {key: value}; falls back to ``findings`` when the report has none,
and says so), ``patch`` (``stabletrain doctor RUN --patch CONFIG -o FIXED --format json`` on the broken
run's resolved config, whose report is the one counted, then ``train FIXED``; only where that
doctor has ``--patch``).

``--code PATH`` runs the stabletrain of another source tree (``PYTHONPATH=PATH/src``; e.g.
``--code /work/base`` for the session-start code); the default is this working tree. The stable
references are trained once per model per invocation. The split rule (alternate tune/heldout
within each group, in file order) is in the case file.

    .venv/bin/python bench/fix_loop.py [--code PATH] [--apply findings|changeset|patch]
        [--split tune|heldout|all] [--cases a,b] [--jobs N] [--json OUT] [--work DIR] [--details tune|all]
        [--cases-file bench/fix_cases/cases2.yaml] [--reuse-broken] [--broken-from DIR] [--train-only]
    .venv/bin/python bench/fix_loop.py --from OUT.json [--split S] [--details tune]

``--cases-file`` selects a case file (``cases2.yaml``: round 2, ``cases3.yaml``: round 3,
``cases4.yaml``: round 4, ``cases5.yaml``: round 5, each written before any of it ran).
``--reuse-broken`` with a ``--work`` of an earlier invocation of the same code takes its stable
references and broken runs (a stamp beside each run dir records code, config and overrides) and
only re-runs the doctor and the fixed runs: e.g. ``--apply patch`` after ``--apply changeset``.
``--broken-from DIR`` first copies into ``--work`` the references and broken runs of ``DIR``, a
``--work`` of another code tree (e.g. the first-sight run of ``--code /work/base``), as if this
code had trained them, then reuses them: only valid when the two trees' trainer and guard are the
same (``git log A..B -- src/stabletrain/train src/stabletrain/guard`` empty) — the doctor and
the fixed runs are this code's.

``--train-only`` trains the stable references and the broken runs and prints, per case, the
broken run's quality against the reference and the verdict (broken or not, by the margin): how a
new round's "truly broken" verdicts are written down before any doctor runs on it. A later
``--broken-from`` that work dir reuses those runs.

``--details tune`` prints the findings, change set and applied overrides of the tune cases only:
the held-out half is reported as numbers, so nobody tunes the doctor on it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
CASES_FILE = ROOT / "bench" / "fix_cases" / "cases.yaml"
MARGIN = {"cnn": 0.03, "gpt": 0.10}
CNN_CHANCE = 0.10
CLOSE_FRACTION = 0.5
TRAIN_TIMEOUT_S = 900
DOCTOR_TIMEOUT_S = 300
_VALIDATE = """
import json, sys
from stabletrain.train.config import load_config
cfg, base, fixes = json.loads(sys.stdin.read())
ok, refused = [], {}
for _ in range(2):
    for o in fixes:
        if o in ok:
            continue
        try:
            load_config(cfg, base + [x for x in fixes if x in ok or x == o])
        except Exception as e:
            refused[o] = str(e).splitlines()[0][:300]
        else:
            ok.append(o)
            refused.pop(o, None)
print(json.dumps({"ok": [o for o in fixes if o in ok], "refused": refused}))
"""


@dataclass
class Case:
    name: str
    group: str
    split: str
    model: str
    config: str
    overrides: list[str]
    fault: str
    lr_rule: str
    cause: str
    expect: str
    repair: str
    first_sight: str


@dataclass
class Run:
    """One training run: its exit code, summary and quality (higher is better)."""

    dir: str
    rc: int
    quality: float
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    seconds: float = 0.0


@dataclass
class Advice:
    """What a mode takes from a report: overrides in order, conflicts, where they came from."""

    overrides: list[str]
    applied: dict[str, Any]
    conflicts: dict[str, list[Any]]
    source: str
    note: str = ""


@dataclass
class Outcome:
    case: str
    split: str
    model: str
    fault: str
    lr_rule: str
    before: float
    after: float
    reference: float
    broken: bool
    repaired: bool
    worse: bool
    no_advice: bool
    conflicts: dict[str, list[Any]]
    report_conflicts: dict[str, list[Any]]
    wrong_direction: bool
    configured_lr: float | None
    applied_lr: float | None
    proposed_lrs: list[float]
    refused: dict[str, str]
    applied: list[str]
    source: str
    note: str
    findings: list[dict[str, Any]]
    change_set: Any
    seconds: float
    error: str = ""


def load_cases(path: Path = CASES_FILE) -> tuple[dict[str, Any], list[Case]]:
    data = yaml.safe_load(path.read_text())
    return data, [Case(**c) for c in data["cases"]]


class Tree:
    """The stabletrain of one source tree, run as subprocesses."""

    def __init__(self, code: Path | None) -> None:
        self.code = code
        self.env = dict(os.environ)
        self.env.pop("PYTHONPATH", None)
        if code is not None:
            self.env["PYTHONPATH"] = str(code / "src")
        self.env.setdefault("OMP_NUM_THREADS", "1")
        self.env["PYTHONWARNINGS"] = "ignore"

    def _run(
        self, args: list[str], timeout: float, stdin: str | None = None
    ) -> tuple[int, str, str]:
        try:
            p = subprocess.run(
                [sys.executable, *args],
                input=stdin,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=self.env,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            return 124, "", f"timed out after {timeout:.0f} s"
        return p.returncode, p.stdout, p.stderr

    def where(self) -> str:
        rc, out, err = self._run(["-c", "import stabletrain; print(stabletrain.__file__)"], 60)
        return out.strip() if rc == 0 else f"import failed: {err.strip()[-200:]}"

    def doctor_help(self) -> str:
        return self._run(["-m", "stabletrain.cli", "doctor", "--help"], 60)[1]

    def train(self, config: str | Path, overrides: list[str], run_dir: Path) -> tuple[int, str]:
        args = ["-m", "stabletrain.cli", "train", str(config), "--run-dir", str(run_dir)]
        args += [a for o in overrides for a in ("--set", o)]
        rc, out, err = self._run([*args, "--no-progress", "--overwrite"], TRAIN_TIMEOUT_S)
        return rc, (err.strip() or out.strip())[-400:]

    def doctor(self, run_dir: Path, *extra: str) -> tuple[dict[str, Any] | None, str]:
        """The JSON report; with ``--patch CONFIG -o FIXED`` in ``extra``, of the patching call."""
        args = ["-m", "stabletrain.cli", "doctor", str(run_dir), *extra, "--format", "json"]
        rc, out, err = self._run([*args, "--fail-on", "never"], DOCTOR_TIMEOUT_S)
        try:
            return json.loads(out), ""
        except json.JSONDecodeError:
            return None, f"doctor rc {rc}: {(err or out).strip()[-300:]}"

    def validate(
        self, config: str, base: list[str], fixes: list[str]
    ) -> tuple[list[str], dict[str, str]]:
        rc, out, err = self._run(["-c", _VALIDATE], 120, json.dumps([config, base, fixes]))
        if rc != 0:
            return [], {o: f"validation crashed: {err.strip()[-200:]}" for o in fixes}
        res = json.loads(out)
        return res["ok"], res["refused"]


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def quality(model: str, summary: dict[str, Any], chance: float) -> float:
    """Higher is better: val accuracy (CNN) or minus the val loss (GPT), failures at chance."""
    if model == "cnn":
        acc = summary.get("final_accuracy")
        return float(acc) if _finite(acc) else CNN_CHANCE
    loss = summary.get("final_eval_loss")
    return -min(float(loss), chance) if _finite(loss) else -chance


def show(model: str, q: float) -> str:
    return f"{100 * q:5.1f}%" if model == "cnn" else f"{-q:6.3f}"


def train_run(
    tree: Tree,
    model: str,
    config: str | Path,
    overrides: list[str],
    run_dir: Path,
    chance: float,
    reuse: bool = False,
) -> Run:
    """Train (or, with ``reuse``, take the finished run of the same code, config and overrides)."""
    t0 = time.perf_counter()
    stamp = json.dumps([str(tree.code), str(config), overrides])
    stamp_path = run_dir.parent / f"{run_dir.name}.trained.json"
    summary_path = run_dir / "summary.json"
    if reuse and summary_path.exists() and stamp_path.exists() and stamp_path.read_text() == stamp:
        summary = json.loads(summary_path.read_text())
        return Run(str(run_dir), 0, quality(model, summary, chance), summary, "", 0.0)
    rc, msg = tree.train(config, overrides, run_dir)
    stamp_path.write_text(stamp)
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    err = "" if summary else f"train rc {rc}: {msg}"
    run = Run(str(run_dir), rc, quality(model, summary, chance), summary, err)
    run.seconds = time.perf_counter() - t0
    return run


def adopt_runs(src: Path, dst: Path, code: Path | None) -> int:
    """Copy the stable references and broken runs of the work dir ``src`` into ``dst``, their
    stamps rewritten to ``code`` (config and overrides kept, so a case whose setup changed is
    still re-trained); returns how many were copied."""
    import shutil

    stamps = [*src.glob("ref_*.trained.json"), *src.glob("*/broken.trained.json")]
    for stamp in stamps:
        run = stamp.parent / stamp.name.removesuffix(".trained.json")
        target = dst / run.relative_to(src)
        shutil.copytree(run, target, dirs_exist_ok=True)
        old = json.loads(stamp.read_text())
        target.parent.joinpath(stamp.name).write_text(json.dumps([str(code), *old[1:]]))
    return len(stamps)


def _norm(v: Any) -> Any:
    if isinstance(v, float) and math.isfinite(v):
        return float(f"{v:.6g}")
    if isinstance(v, list):
        return tuple(_norm(x) for x in v)
    return v if not isinstance(v, dict) else json.dumps(v, sort_keys=True)


def conflicts_of(pairs: list[tuple[str, Any]]) -> dict[str, list[Any]]:
    """Keys given two or more different values, with the values in order."""
    seen: dict[str, list[Any]] = {}
    for key, value in pairs:
        vals = seen.setdefault(key, [])
        if all(_norm(value) != _norm(v) for v in vals):
            vals.append(value)
    return {k: v for k, v in seen.items() if len(v) > 1}


def finding_changes(report: dict[str, Any]) -> list[tuple[str, Any]]:
    """Every (key, value) of every fix of every warning/error finding, in report order."""
    pairs: list[tuple[str, Any]] = []
    for f in report.get("findings") or []:
        if f.get("severity") not in ("warning", "error"):
            continue
        for fix in f.get("fix") or []:
            pairs.extend((fix.get("changes") or {}).items())
    return pairs


def as_set(key: str, value: Any) -> str:
    return f"{key}={json.dumps(value)}"


def advice(report: dict[str, Any], mode: str) -> Advice:
    if mode == "changeset":
        cs = report.get("change_set")
        changes = cs.get("changes") if isinstance(cs, dict) else None
        if isinstance(changes, dict):
            pairs = list(changes.items())
            return Advice([as_set(k, v) for k, v in pairs], dict(pairs), {}, "change_set")
        note = "no change_set in the report: findings mode used"
    else:
        note = ""
    pairs = finding_changes(report)
    applied = dict(pairs)  # the last value wins
    return Advice(
        [as_set(k, v) for k, v in applied.items()], applied, conflicts_of(pairs), "findings", note
    )


def _lr(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def configured_lr(run_dir: Path) -> float | None:
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.exists():
        return None
    data = yaml.safe_load(cfg_path.read_text()) or {}
    return _lr((data.get("optim") or {}).get("lr"))


def wrong_direction(rule: str, configured: float | None, applied: float | None) -> bool:
    if configured is None or applied is None:
        return False
    if rule == "down":
        return applied > configured * (1 + 1e-9)
    if rule == "up":
        return applied < configured * (1 - 1e-9)
    return False


def _flat(data: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(data, dict):
        return {prefix: data}
    out: dict[str, Any] = {}
    for k, v in data.items():
        out.update(_flat(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}": v})
    return out


def config_diff(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The settings a patch changed, as ``key=value`` (``run.*`` bookkeeping aside)."""
    a, b = _flat(before), _flat(after)
    return [
        as_set(k, b.get(k))
        for k in sorted(set(a) | set(b))
        if not k.startswith("run.") and _norm(a.get(k)) != _norm(b.get(k))
    ]


def brief_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "id": f.get("id"),
            "severity": f.get("severity"),
            "title": f.get("title"),
            "fixes": [fx.get("changes") or {} for fx in f.get("fix") or []],
        }
        for f in report.get("findings") or []
    ]


class Loop:
    def __init__(self, args: argparse.Namespace, spec: dict[str, Any]) -> None:
        self.args = args
        self.spec = spec
        self.tree = Tree(args.code)
        self.work: Path = args.work
        self.refs: dict[str, Run] = {}
        self.chance: dict[str, float] = {"cnn": CNN_CHANCE, "gpt": math.inf}
        self.lock = threading.Lock()
        self.reuse: bool = args.reuse_broken

    def reference(self, model: str) -> Run:
        ref = self.spec["references"][model]
        overrides = self.spec["bounds"][model] + ref["overrides"]
        ref_dir = self.work / f"ref_{model}"
        run = train_run(self.tree, model, ref["config"], overrides, ref_dir, math.inf, self.reuse)
        if model == "gpt":
            first = run.summary.get("initial_loss")
            self.chance["gpt"] = float(first) if _finite(first) else math.log(256)
            run.quality = quality(model, run.summary, self.chance["gpt"])
        if run.error:
            raise SystemExit(f"the stable reference for {model} failed: {run.error}")
        return run

    def fixed_run(
        self, case: Case, broken: Run, adv: Advice, base: list[str], out: Path, chance: float
    ) -> tuple[Run | None, list[str], dict[str, str], float | None, str]:
        """Re-train with the advice: (run, applied overrides, refused, applied LR, note)."""
        bdir = Path(broken.dir)
        if self.args.apply == "patch":
            fixed_cfg = out / "fixed.yaml"
            if not fixed_cfg.exists():
                if not adv.overrides:  # an empty change set writes no copy: nothing to apply
                    return None, [], {}, None, "no advice (empty change set)"
                return None, [], {"--patch": "no patched config written"}, None, "patch failed"
            data = yaml.safe_load(fixed_cfg.read_text()) or {}
            before = yaml.safe_load((bdir / "config.yaml").read_text()) or {}
            changed = config_diff(before, data)
            if not changed:
                return None, [], {}, None, "no advice (the patched config is unchanged)"
            lr = _lr((data.get("optim") or {}).get("lr"))
            run = train_run(self.tree, case.model, fixed_cfg, [], out / "fixed", chance)
            refused = {"train": run.error} if run.error else {}
            return run, changed, refused, lr, ""
        if not adv.overrides:
            return None, [], {}, None, "no advice"
        ok, refused = self.tree.validate(case.config, base, adv.overrides)
        if not ok:
            return None, [], refused, None, "every advised key refused"
        lr = next(
            (_lr(o.split("=", 1)[1]) for o in reversed(ok) if o.startswith("optim.lr=")), None
        )
        run = train_run(self.tree, case.model, case.config, base + ok, out / "fixed", chance)
        return run, ok, refused, lr, ""

    def run_case(self, case: Case) -> Outcome:
        t0 = time.perf_counter()
        model, chance = case.model, self.chance[case.model]
        out = self.work / case.name
        base = self.spec["bounds"][model] + case.overrides
        broken = train_run(self.tree, model, case.config, base, out / "broken", chance, self.reuse)
        if self.args.apply == "patch":  # the report of the very call that writes the patch
            (out / "fixed.yaml").unlink(missing_ok=True)  # never a copy from an earlier call
            patch_args = (
                "--patch",
                str(out / "broken" / "config.yaml"),
                "-o",
                str(out / "fixed.yaml"),
            )
            report, derr = self.tree.doctor(out / "broken", *patch_args)
        else:
            report, derr = self.tree.doctor(out / "broken")
        report = report or {}
        mode = "findings" if self.args.apply == "findings" else "changeset"
        adv = advice(report, mode)
        run, applied, refused, lr, note = self.fixed_run(case, broken, adv, base, out, chance)
        ref = self.refs[model].quality
        after = run.quality if run is not None and not run.error else broken.quality
        gap = ref - broken.quality
        is_broken = gap >= MARGIN[model]
        repaired = bool(
            is_broken
            and run is not None
            and not run.error
            and after - broken.quality >= CLOSE_FRACTION * gap
        )
        conf_lr = configured_lr(out / "broken")
        proposed = [v for k, v in finding_changes(report) if k == "optim.lr" and _lr(v) is not None]
        return Outcome(
            case=case.name,
            split=case.split,
            model=model,
            fault=case.fault,
            lr_rule=case.lr_rule,
            before=broken.quality,
            after=after,
            reference=ref,
            broken=is_broken,
            repaired=repaired,
            worse=run is not None and after < broken.quality - MARGIN[model],
            no_advice=not applied,
            conflicts=adv.conflicts,
            report_conflicts=conflicts_of(finding_changes(report)),
            wrong_direction=wrong_direction(case.lr_rule, conf_lr, lr),
            configured_lr=conf_lr,
            applied_lr=lr,
            proposed_lrs=[float(v) for v in proposed],
            refused=refused,
            applied=applied,
            source=adv.source if self.args.apply != "patch" else "patch",
            note="; ".join(
                x
                for x in (adv.note, note, derr, broken.error, run.error if run is not None else "")
                if x
            ),
            findings=brief_findings(report),
            change_set=report.get("change_set"),
            seconds=time.perf_counter() - t0,
        )

    def broken_only(self, case: Case) -> str:
        """Train the broken run only: one line with its quality, the reference's and the verdict."""
        model, chance = case.model, self.chance[case.model]
        base = self.spec["bounds"][model] + case.overrides
        out = self.work / case.name / "broken"
        run = train_run(self.tree, model, case.config, base, out, chance, self.reuse)
        ref = self.refs[model].quality
        verdict = "broken" if ref - run.quality >= MARGIN[model] else "not broken"
        return (
            f"| {case.name} | {case.split} | {show(model, run.quality).strip()} | "
            f"{show(model, ref).strip()} | {verdict} | {run.error or '-'} |"
        )

    def progress(self, i: int, n: int, o: Outcome) -> None:
        verdict = "repaired" if o.repaired else ("not broken" if not o.broken else "NOT repaired")
        line = (
            f"[{i}/{n}] {o.case}: {show(o.model, o.before)} -> {show(o.model, o.after)} "
            f"(ref {show(o.model, o.reference)}) {verdict}; {len(o.applied)} applied, "
            f"{len(o.conflicts)} conflicting keys, {len(o.refused)} refused"
            f"{', WRONG DIRECTION' if o.wrong_direction else ''} ({o.seconds:.0f} s)"
        )
        with self.lock:
            print(line, file=sys.stderr, flush=True)

    def references(self, pool: ThreadPoolExecutor, cases: list[Case]) -> None:
        models = sorted({c.model for c in cases})
        for model, run in zip(models, pool.map(self.reference, models), strict=True):
            self.refs[model] = run
            print(
                f"reference {model}: {show(model, run.quality)} ({run.seconds:.0f} s)",
                file=sys.stderr,
                flush=True,
            )

    def train_only(self, cases: list[Case]) -> str:
        with ThreadPoolExecutor(self.args.jobs) as pool:
            self.references(pool, cases)
            rows = list(pool.map(self.broken_only, cases))
        head = "| case | split | broken run | reference | verdict | error |"
        return "\n".join([head, "|" + "---|" * 6, *rows])

    def run(self, cases: list[Case]) -> list[Outcome]:
        with ThreadPoolExecutor(self.args.jobs) as pool:
            self.references(pool, cases)
            done = 0
            results: list[Outcome] = []

            def one(case: Case) -> Outcome:
                nonlocal done
                o = self.run_case(case)
                with self.lock:
                    done += 1
                    i = done
                self.progress(i, len(cases), o)
                return o

            results = list(pool.map(one, cases))
        return results


def totals(outs: list[Outcome]) -> dict[str, Any]:
    broken = [o for o in outs if o.broken]
    return {
        "cases": len(outs),
        "broken": len(broken),
        "repaired": sum(o.repaired for o in broken),
        "not_broken": len(outs) - len(broken),
        "reports_with_conflicts": sum(bool(o.conflicts) for o in outs),
        "conflicting_keys": sum(len(o.conflicts) for o in outs),
        "reports_with_report_conflicts": sum(bool(o.report_conflicts) for o in outs),
        "wrong_direction": sum(o.wrong_direction for o in outs),
        "refused_keys": sum(len(o.refused) for o in outs),
        "no_advice": sum(o.no_advice for o in outs),
        "worse": sum(o.worse for o in outs),
        "findings_fallback": sum(
            o.source == "findings" and bool(o.note) and "change_set" in o.note for o in outs
        ),
    }


def render(outs: list[Outcome], details: str | None) -> str:
    head = (
        "| case | split | fault | before | after | reference | repaired | conflicting keys "
        "| wrong dir. | refused |"
    )
    lines = [head, "|" + "---|" * 10]
    for o in outs:
        verdict = "yes" if o.repaired else ("n.b." if not o.broken else "no")
        if o.worse:
            verdict += " (worse)"
        lines.append(
            f"| {o.case} | {o.split} | {o.fault} | {show(o.model, o.before).strip()} | "
            f"{show(o.model, o.after).strip()} | {show(o.model, o.reference).strip()} | {verdict} | "
            f"{len(o.conflicts)} | {'YES' if o.wrong_direction else '-'} | {len(o.refused)} |"
        )
    lines.append("")
    for split in ("tune", "heldout", "all"):
        sel = [o for o in outs if split == "all" or o.split == split]
        if not sel:
            continue
        t = totals(sel)
        pct = 100 * t["repaired"] / t["broken"] if t["broken"] else 0.0
        lines.append(
            f"{split}: repaired {t['repaired']}/{t['broken']} broken ({pct:.0f}%; "
            f"{t['not_broken']} not broken), reports with a key given 2+ values "
            f"{t['reports_with_conflicts']} ({t['conflicting_keys']} keys; over all warning/error "
            f"fixes: {t['reports_with_report_conflicts']}), wrong direction {t['wrong_direction']}, "
            f"refused keys {t['refused_keys']}, no advice {t['no_advice']}, made worse {t['worse']}"
            + (f", change_set missing {t['findings_fallback']}" if t["findings_fallback"] else "")
        )
    if details:
        for o in outs:
            if details == "tune" and o.split != "tune":
                continue
            lines.append(f"\n## {o.case} ({o.split}, {o.fault}, lr_rule {o.lr_rule})")
            for f in o.findings:
                lines.append(f"- {f['severity']} {f['id']}: {f['title']}  fixes: {f['fixes']}")
            if o.change_set is not None:
                lines.append(f"- change_set: {json.dumps(o.change_set)[:600]}")
            lines.append(f"- applied ({o.source}): {o.applied}")
            if o.conflicts or o.report_conflicts:
                lines.append(f"- conflicts: {o.conflicts}  report-wide: {o.report_conflicts}")
            if o.refused:
                lines.append(f"- refused: {o.refused}")
            lines.append(
                f"- LR configured {o.configured_lr}, applied {o.applied_lr}, "
                f"proposed {o.proposed_lrs}"
            )
            if o.note:
                lines.append(f"- note: {o.note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument(
        "--code",
        type=Path,
        default=None,
        help="source tree whose stabletrain to run (PYTHONPATH=PATH/src)",
    )
    ap.add_argument("--apply", choices=["findings", "changeset", "patch"], default="changeset")
    ap.add_argument("--split", choices=["tune", "heldout", "all"], default="all")
    ap.add_argument("--cases", default="", help="comma-separated case names")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None, help="save the results here")
    ap.add_argument("--work", type=Path, default=None, help="run dirs (default: a new temp dir)")
    ap.add_argument(
        "--details",
        choices=["tune", "all"],
        default=None,
        help="findings and changes per case (tune: the tune half only)",
    )
    ap.add_argument("--cases-file", type=Path, default=CASES_FILE)
    ap.add_argument(
        "--reuse-broken",
        action="store_true",
        help="reuse the references and broken runs already in --work trained by the same code "
        "with the same config and overrides (the fixed runs are always re-trained)",
    )
    ap.add_argument(
        "--broken-from",
        type=Path,
        default=None,
        help="copy the references and broken runs of this --work dir of another code tree with the "
        "same trainer and guard, and reuse them (implies --reuse-broken)",
    )
    ap.add_argument(
        "--train-only",
        action="store_true",
        help="train the references and broken runs only and print the broken/not verdicts "
        "(no doctor)",
    )
    ap.add_argument(
        "--from",
        dest="saved",
        type=Path,
        default=None,
        help="print the tables of a --json file instead of running",
    )
    args = ap.parse_args(argv)
    if args.saved:
        doc = json.loads(args.saved.read_text())
        outs = [Outcome(**c) for c in doc["cases"] if args.split in ("all", c["split"])]
        print(f"{doc['command']}  ({doc['date']}, {doc['machine']}; {doc['stabletrain']})")
        print(render(outs, args.details))
        return 0
    spec, cases = load_cases(args.cases_file)
    if args.cases:
        wanted = args.cases.split(",")
        unknown = sorted(set(wanted) - {c.name for c in cases})
        if unknown:
            ap.error(
                f"unknown case(s) {', '.join(unknown)}; known: {', '.join(c.name for c in cases)}"
            )
        cases = [c for c in cases if c.name in wanted]
    if args.split != "all":
        cases = [c for c in cases if c.split == args.split]
    args.code = args.code.resolve() if args.code else None
    args.work = (args.work or Path(tempfile.mkdtemp(prefix="fix_loop-"))).resolve()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.broken_from is not None:
        copied = adopt_runs(args.broken_from.resolve(), args.work, args.code)
        print(f"--broken-from: {copied} runs of {args.broken_from} reused", file=sys.stderr)
        args.reuse_broken = True
    loop = Loop(args, spec)
    where = loop.tree.where()
    if args.train_only:
        print(f"stabletrain: {where}; train only; work {args.work}", file=sys.stderr)
        print(loop.train_only(cases))
        return 0
    if args.apply == "patch" and "--patch" not in loop.tree.doctor_help():
        print(f"--apply patch: the doctor of {where} has no --patch", file=sys.stderr)
        return 2
    print(
        f"stabletrain: {where}; apply {args.apply}; {len(cases)} cases; work {args.work}",
        file=sys.stderr,
    )
    outs = loop.run(cases)
    print(render(outs, args.details))
    if args.json:
        doc = {
            "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()} {os.cpu_count()} CPUs, {platform.platform()}",
            "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
            "stabletrain": where,
            "apply": args.apply,
            "references": {m: asdict(r) for m, r in loop.refs.items()},
            "cases": [asdict(o) for o in outs],
            "totals": {
                s: totals([o for o in outs if s == "all" or o.split == s])
                for s in ("tune", "heldout", "all")
            },
        }
        args.json.write_text(json.dumps(doc, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
