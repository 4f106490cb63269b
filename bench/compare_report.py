"""Output of bench/compare_doctors.py: the terminal table and docs/benchmarks-doctor.md."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from doctor_tools import RUNMEDIC_MAP, TRAINPROOF_MAP, TRAINSPOTTER_MAP, ToolRun

if TYPE_CHECKING:
    from compare_doctors import Score


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


# Sections after this line are written by other bench scripts (doctor_corpus.py, doctor_speed.py):
# a rewrite of the comparison keeps them.
KEEP_MARK = "<!-- Sections below are written by other bench scripts; compare_doctors.py --write-md keeps them. -->"


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
that only names a cause does not count). In brackets: how many of those logs got a fix in the
log's own key names — a key of the framework that wrote the log (`bench/framework_keys.py`:
TrainingArguments for HF logs, `--clip-grad`-style flags for Megatron, ds_config keys for
DeepSpeed, `optim_wrapper.*` for mmengine...; written from each framework's docs, not from
stabletrain's tables) or a key spelled in the log's own files (e.g.
`model.optimizer.weight_decay` from a Lightning hparams.yaml).

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
    kept = out.read_text().partition(KEEP_MARK) if out.exists() else ("", "", "")
    out.write_text(body + ("\n" + KEEP_MARK + kept[2] if kept[1] else ""))
