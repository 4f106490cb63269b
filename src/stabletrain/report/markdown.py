"""Markdown rendering of a Report — the document the seed postmortems were written by hand.

First the change set (the one set of config changes to apply, root cause first; its
alternatives and what it left out), then per finding: the symptom with its numbers and where it shows, why, the fix as a ``diff`` block
in the user's config keys, and what to watch after. Plots are referenced as PNG files written
beside the report (``write`` does both); ``render`` alone links nothing.
"""

from __future__ import annotations

from pathlib import Path

from stabletrain.records import Finding
from stabletrain.report.advice import watch_for
from stabletrain.report.changeset import reasons_by_fix
from stabletrain.report.fmt import (
    SEVERITY_MARK,
    config_diff,
    evidence_items,
    fix_files,
    headline,
    md_fence,
    md_text,
    read_items,
    where,
)
from stabletrain.report.model import Report
from stabletrain.report.timeline import timeline_lines


def render(report: Report, images: dict[str, str] | None = None) -> str:
    """The report as Markdown; ``images`` maps panel name → relative PNG path to embed.

    Everything that comes from the user's files (file names, config keys, metric names, and the
    titles and explanations that quote them) is escaped with :func:`md_text`, as the HTML report
    escapes it: a name such as ``<img onerror=…>`` stays text in any Markdown renderer."""
    s = report.summary()
    lines = [f"# stabletrain {report.kind}: {md_text(report.source or '')}", ""]
    lines += [f"- **{label}:** {md_text(value)}" for label, value in read_items(report, s)]
    lines += ["", f"**Verdict: {headline(report.counts())}.**", ""]
    for note in report.notes:
        lines.append(f"> note: {md_text(note)}")
    if report.notes:
        lines.append("")
    timeline = timeline_lines(report.guard_timeline)  # the guard's actions, one line a group
    if timeline:
        lines += ["## Guard actions", ""] + [f"- {md_text(t)}" for t in timeline] + [""]
    if not report.problems:
        what = "run" if report.kind == "doctor" else "config"
        lines += [f"Nothing to change: this {what} shows no stability problems.", ""]
    lines += _change_set(report)
    if report.findings:
        lines += ["## Findings", "", "| | id | where | title |", "|---|---|---|---|"]
        for f in report.findings:
            lines.append(
                f"| {SEVERITY_MARK[f.severity]} {f.severity} | `{f.id}` | {where(f)} "
                f"| {md_text(f.title)} |"
            )
        lines.append("")
    for f in report.findings:
        lines += _finding(f, report)
    if images:
        lines += ["## Curves", ""]
        for name, rel in images.items():
            lines += [f"![{md_text(name)}]({rel})", ""]
    return "\n".join(lines).rstrip() + "\n"


def _change_set(report: Report) -> list[str]:
    """The one set of changes to apply (root cause first), its alternatives and what it left out."""
    cs = report.change_set
    if not (cs or cs.dropped):
        return []
    out = ["## Change set", ""]
    if cs.changes:
        fix = cs.as_fix()
        out += [f"The one set of changes to apply (serves `{cs.cause}`):", "", "```diff"]
        files = fix_files(fix, report.facts)
        if files:
            out.append(md_fence(f"# {', '.join(files)}"))
        out += [md_fence(line) for line in config_diff(fix, report.facts)]
        out += ["```", ""]
        out += [
            f"- `{md_text(', '.join(keys))}`: {md_text(why)}"
            for why, keys in reasons_by_fix(cs).items()
        ]
        base = cs.base_line()
        if base:
            out.append(f"- LR base: {md_text(base)}")
        out.append("")
    elif not cs.actions:
        out += ["No config change can be recommended with confidence.", ""]
    if cs.actions:
        out += [f"**First** (the root cause `{cs.cause}` is not a setting):", ""]
        out += [
            f"- {md_text(a.description)}" + (f" (`{md_text(a.code)}`)" if a.code else "")
            for a in cs.actions
        ]
        out.append("")
    if cs.alternatives:
        out += ["**Alternatives:**", ""]
        out += [
            f"- {md_text(a.description)}" + (f" (`{md_text(a.code)}`)" if a.code else "")
            for a in cs.alternatives
        ]
        out.append("")
    if cs.dropped:
        out += ["**Left out:**", ""] + [f"- {md_text(d)}" for d in cs.dropped] + [""]
    return out


def _finding(f: Finding, report: Report) -> list[str]:
    out = [f"### {SEVERITY_MARK[f.severity]} `{f.id}` — {md_text(f.title)}", ""]
    src = {"both": " (predicted by the config, confirmed by the log)", "config": " (config)"}.get(
        f.source, ""
    )
    out += [f"**Where:** {where(f)}{src}", ""]
    ev = evidence_items(f)
    if ev:
        out += ["**Evidence:** " + "; ".join(f"{md_text(k)}: {md_text(v)}" for k, v in ev), ""]
    if f.explanation:
        out += [f"**Why:** {md_text(f.explanation)}", ""]
    for fix in f.fixes:
        out += [f"**Fix:** {md_text(fix.description)}", ""]
        diff = config_diff(fix, report.facts)
        if diff:
            files = fix_files(fix, report.facts)
            out.append("```diff")
            if files:
                out.append(md_fence(f"# {', '.join(files)}"))
            out += [md_fence(line) for line in diff]
            out += ["```", ""]
        if fix.code:
            out += ["```python", md_fence(fix.code), "```", ""]
    out += [f"**Watch after:** {watch_for(f.id)}", ""]
    present = {g.id for g in report.findings}
    related = [r for r in f.related if r in present]  # a detector may name ids this run lacks
    if related:
        out += ["**Related:** " + ", ".join(f"`{r}`" for r in related), ""]
    return out


def write(report: Report, path: str | Path) -> list[Path]:
    """Write the Markdown report and its PNG panels beside it; return every file written."""
    from stabletrain.report.html import write_panels

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pngs = write_panels(report, path)
    images = {name: p.name for name, p in pngs.items()}
    path.write_text(render(report, images), encoding="utf-8")
    return [path, *pngs.values()]
