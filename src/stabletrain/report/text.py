"""Terminal rendering of a Report with rich: one block per finding, read top to bottom.

Each block reads like the seed postmortems: the symptom with its numbers and where it shows,
why it happens, what to change (a config diff in the user's keys), and what to watch after.
Findings are printed in the doctor's cause → effect order; ``related`` ids are shown as
"follows from" (listed earlier) or "leads to" (listed later). Above them, the *change set*: the
one set of config changes to apply (root cause first, one value per key), its alternatives and
the fixes it left out; each finding's own fixes follow as evidence.
"""

from __future__ import annotations

import io
import sys
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.table import Table
from rich.text import Text

from stabletrain.records import Finding
from stabletrain.report.advice import watch_for
from stabletrain.report.changeset import ChangeSet, reasons_by_fix
from stabletrain.report.fmt import (
    SEVERITY_MARK,
    config_diff,
    evidence_items,
    fix_files,
    headline,
    read_items,
    where,
)
from stabletrain.report.model import Report
from stabletrain.report.timeline import timeline_lines

_STYLE = {"error": "bold red", "warning": "bold yellow", "info": "cyan"}


def _t(value: object, style: str = "") -> Text:
    """A cell as plain text: rich never parses markup in it. Paths, metric names, keys, values
    and reasons come from the user's files; ``[/tmp/a.yaml]`` read as markup would crash the
    report (a closing tag) or vanish (``[grad-spike]`` read as a style)."""
    return Text(str(value), style=style)


def renderables(report: Report) -> list[RenderableType]:
    """The report as rich renderables (the CLI prints them; tests render them to plain text)."""
    out: list[RenderableType] = [_header(report)]
    for note in report.notes:
        out.append(Text(f"  note: {note}", style="dim"))
    for line in timeline_lines(report.guard_timeline):  # the guard's actions, one line a group
        out.append(Text(f"  guard: {line}"))
    cs = report.change_set
    if cs or cs.dropped:
        out.append(Text(""))
        out.append(_change_set(cs, report))
    order = [f.id for f in report.findings]
    for i, f in enumerate(report.findings):
        out.append(Text(""))
        out.append(_finding(f, report, order, i))
    if not report.problems:
        out.append(Text(""))
        what = "run" if report.kind == "doctor" else "config"
        out.append(Text(f"Nothing to change: this {what} shows no stability problems.", "green"))
    return out


# wide enough that no line of a report is ever wrapped: a file or pipe gets one line per item
_NO_WRAP = 100_000


def render(report: Report, *, width: int | None = None, color: bool = False) -> str:
    """The report as a string (plain text unless ``color``).

    ``width=None`` (the default, for files and pipes) never wraps a line, so a path or a command
    stays whole and ``grep`` finds it; a width wraps at words, as a terminal would.
    """
    buf = io.StringIO()
    console = Console(
        file=buf,
        width=width or _NO_WRAP,
        no_color=not color,
        color_system="standard" if color else None,
        force_terminal=color,
        highlight=False,
        emoji=False,
    )
    for r in renderables(report):
        console.print(r)
    # rich pads blocks to their width; trailing blanks only add noise to files and diffs
    return "\n".join(line.rstrip() for line in buf.getvalue().splitlines()) + "\n"


def write(report: Report, file: TextIO | None = None) -> None:
    """Print the report: styled and wrapped to a terminal, unwrapped plain text to a pipe or file."""
    out = file if file is not None else sys.stdout
    isatty = getattr(out, "isatty", None)
    if isatty is not None and isatty():
        console = Console(file=out, highlight=False, emoji=False)
        for r in renderables(report):
            console.print(r)
    else:
        out.write(render(report))


def _header(report: Report) -> RenderableType:
    s = report.summary()
    # what was read, as a grid: a long path or metric list wraps under its text, not its label
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold dim", no_wrap=True, min_width=11)
    grid.add_column(style="dim", overflow="fold")
    for label, value in read_items(report, s):
        grid.add_row(_t(f"{label}:"), _t(value))
    verdict = Text()
    worst = report.worst_severity
    style = _STYLE.get(worst or "", "green") if report.problems else "bold green"
    verdict.append("Verdict: ", style="bold")
    verdict.append(headline(report.counts()), style=style)
    title = Text(f"stabletrain {report.kind}", style="bold")
    return Group(title, Padding(grid, (0, 0, 0, 2), expand=False), verdict)


def _finding(f: Finding, report: Report, order: list[str], index: int) -> RenderableType:
    title = Text()
    title.append(f"{SEVERITY_MARK[f.severity]} {f.severity.upper():7} ", style=_STYLE[f.severity])
    title.append(f.id, style="bold")
    title.append(f"  {f.title}")
    loc = where(f)
    if f.source == "both":
        loc += "  (predicted by the config, confirmed by the log)"
    elif f.source == "config":
        loc += "  (from the config)"
    # a two-column grid, so wrapped lines hang under the text and not under the label
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=9)
    grid.add_column(overflow="fold")
    grid.add_row(_t("Where:"), _t(loc))
    ev = evidence_items(f)
    if ev:
        grid.add_row(_t("Evidence:"), _t(" · ".join(f"{k} {v}" for k, v in ev)))
    if f.explanation:
        grid.add_row(_t("Why:"), _t(f.explanation))
    for fix in f.fixes:
        grid.add_row(_t("Fix:"), _t(fix.description))
        files = fix_files(fix, report.facts)
        diff = config_diff(fix, report.facts)
        if diff:
            block = Text()
            if files:
                block.append(f"# {', '.join(files)}\n", style="dim")
            for j, line in enumerate(diff):
                block.append(line, style="red" if line.startswith("-") else "green")
                if j < len(diff) - 1:
                    block.append("\n")
            grid.add_row(_t(""), block)
        if fix.code:
            grid.add_row(_t(""), _t(fix.code, "dim"))
    grid.add_row(_t("Watch:"), _t(watch_for(f.id)))
    rel = _related(f, order, index)
    if rel:
        grid.add_row(_t("Chain:"), _t(rel))
    return Group(title, Padding(grid, (0, 0, 0, 2), expand=False))


def _change_set(cs: ChangeSet, report: Report) -> RenderableType:
    title = Text()
    title.append("Change set", style="bold")
    if cs.changes or cs.actions:
        title.append(f"  the one set of changes to apply (serves {cs.cause})")
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="bold", no_wrap=True, min_width=9)
    grid.add_column(overflow="fold")
    if cs.changes:
        fix = cs.as_fix()
        block = Text()
        files = fix_files(fix, report.facts)
        if files:
            block.append(f"# {', '.join(files)}\n", style="dim")
        diff = config_diff(fix, report.facts)
        for j, line in enumerate(diff):
            block.append(line, style="red" if line.startswith("-") else "green")
            if j < len(diff) - 1:
                block.append("\n")
        grid.add_row(_t("Apply:"), block)
        for why, keys in reasons_by_fix(cs).items():
            grid.add_row(_t("Why:"), _t(f"{', '.join(keys)}: {why}"))
    elif not cs.actions:
        grid.add_row(_t("Apply:"), _t("no config change can be recommended with confidence"))
    for act in cs.actions:
        grid.add_row(_t("First:"), _t(act.description + (f"  {act.code}" if act.code else "")))
    base = cs.base_line()
    if base:
        grid.add_row(_t("LR base:"), _t(base))
    for alt in cs.alternatives:
        grid.add_row(_t("Or:"), _t(alt.description + (f"  {alt.code}" if alt.code else "")))
    for line in cs.dropped:
        grid.add_row(_t("Left out:"), _t(line))
    return Group(title, Padding(grid, (0, 0, 0, 2), expand=False))


def _related(f: Finding, order: list[str], index: int) -> str:
    before = [r for r in f.related if r in order and order.index(r) < index]
    after = [r for r in f.related if r in order and order.index(r) > index]
    parts = []
    if before:
        parts.append("follows from " + ", ".join(before))
    if after:
        parts.append("leads to " + ", ".join(after))
    return "; ".join(parts)


__all__ = ["render", "renderables", "write"]
