"""Every measured figure in README.md and docs/*.md names its source: a ``bench/...`` command,
a date and the machine, near it.

The convention the docs follow: a measurement section (a heading and the text up to the next
heading, with the intro of the sections above it) names the command that produced its
figures, the date it ran and the machine; a table row or paragraph may name its own. A figure
is a number in a measurement's form: a percentage, a duration, a size, a ratio (``1.02×``), a
rate (``steps/s``) or a count out of a total (``26/26``). A number after a comparison (``> 5%``,
``at most 3``) is a threshold, not a measurement. The generated references hold no figures.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
GENERATED = {"reference-guard.md", "reference-cli.md"}

_NUM = r"(?<![\w.\-/])\d[\d,]*(?:\.\d+)?"
FIGURE = re.compile(
    rf"{_NUM}\s?(?:%|×(?!\s?\d)|x(?![\w])(?!\s?\d)"  # not a dimension (4 x 8)
    r"|(?:ms|µs|s|min|minutes|seconds|h)\b(?!/)"
    r"|(?:KB|MB|GB|KiB|MiB|GiB|kB)\b"
    r"|\s?(?:steps|samples|tokens|it|lines|rows)/s\b)"
    r"|(?<![\w.\-/])\d+/\d+(?![\d.\-/])"  # a count out of a total: 26/26
    r"|(?<![\w.\-/])\d+\.\d{2,}(?![\w.\-/])"  # a measured value: 0.993, 1.739 (a setting
    # is rounder, or a `code` span)
)
#: a figure after one of these is a threshold or a setting, not a measured figure
THRESHOLD = re.compile(
    r"(?:[<>≤≥=~±]|\bat (?:most|least)|\bmore than|\bless than|\babove|\bbelow|\bwithin"
    r"|\bevery|\bat|\bcap(?:ped)?|\bdefault"
    r"|\b(?:torch|python|cuda|version|v))\s*\(?$",  # (a version is no figure either)
    re.I,
)
SOURCE = re.compile(r"\bbench/[\w/.-]+\.py\b")
DATE = re.compile(r"\b20\d\d-\d\d-\d\d\b")
MACHINE = re.compile(
    r"\b\d+[- ]cores?\b|\bx86_64\b|\bH100\b|\bH200\b|\bA100\b|\b(?:dev(?:elopment)?|CPU) "
    r"(?:box|machine)\b",
    re.I,
)


@dataclass
class Block:
    """A paragraph, table row, list item or code block, with the text of its section."""

    path: Path
    line: int
    text: str
    section: str


def blocks(path: Path) -> list[Block]:
    """Split a Markdown file into blocks; each carries its section's text (heading to next
    heading) plus the intro text of every enclosing section above it."""
    lines = path.read_text(encoding="utf-8").splitlines()
    fenced, inside = set(), False
    for i, ln in enumerate(lines):
        if ln.startswith("```"):
            inside = not inside
        if inside or ln.startswith("```"):
            fenced.add(i)  # a "# comment" in a code block is no heading
    heads = [  # (level, line index) of every heading
        (len(m.group(1)), i)
        for i, ln in enumerate(lines)
        if i not in fenced and (m := re.match(r"(#{1,6}) ", ln))
    ]
    out: list[Block] = []
    fence = False
    para: list[tuple[int, str]] = []

    def until_next_heading(start: int) -> str:
        end = next((s for _, s in heads if s > start), len(lines))
        return "\n".join(lines[start:end])

    def context(i: int) -> str:
        above = [h for h in heads if h[1] <= i]
        if not above:
            return until_next_heading(0)
        text, level = [], above[-1][0] + 1
        for lvl, start in reversed(above):  # the own section, then each enclosing one's intro
            if lvl < level:
                text.append(until_next_heading(start))
                level = lvl
        return "\n".join(text)

    def flush() -> None:
        if para:
            out.append(
                Block(path, para[0][0] + 1, "\n".join(t for _, t in para), context(para[0][0]))
            )
            para.clear()

    for i, ln in enumerate(lines):
        if ln.startswith("```"):
            fence = not fence
            para.append((i, ln))
            if not fence:
                flush()
            continue
        if fence:
            para.append((i, ln))
        elif not ln.strip() or re.match(r"#{1,6} ", ln):
            flush()
        elif ln.startswith("|") or re.match(r"\s*(?:[-*]|\d+\.) ", ln):
            flush()
            para.append((i, ln))
            flush()
        else:
            para.append((i, ln))
    flush()
    return out


def figures(text: str) -> list[str]:
    """The measured-looking figures of a text (code spans and thresholds left out)."""
    text = re.sub(r"`[^`]*`", " ", text)  # commands, keys, paths
    text = re.sub(r"\[[\d.,\s]+\]", " ", text)  # a list value: [0.9, 0.999]
    found = []
    for m in FIGURE.finditer(text):
        if THRESHOLD.search(text[max(0, m.start() - 12) : m.start()]):
            continue
        found.append(m.group(0))
    return found


def unsourced(path: Path) -> list[str]:
    problems = []
    if path.name in GENERATED:
        return problems
    for b in blocks(path):
        if b.text.startswith("```"):
            continue
        figs = figures(b.text)
        if not figs:
            continue
        where = b.text + "\n" + b.section
        missing = [
            what
            for what, rx in (("a bench/ command", SOURCE), ("a date", DATE), ("a machine", MACHINE))
            if not rx.search(where)
        ]
        if missing:
            rel = path.relative_to(REPO) if path.is_relative_to(REPO) else path.name
            problems.append(f"{rel}:{b.line}: {', '.join(figs[:3])} without {', '.join(missing)}")
    return problems


@pytest.mark.parametrize("path", DOCS, ids=lambda p: p.name)
def test_every_figure_names_its_source_date_and_machine(path: Path) -> None:
    problems = unsourced(path)
    assert not problems, "\n".join(problems)


def _doc(tmp_path: Path, body: str) -> Path:
    doc = tmp_path / "doc.md"
    doc.write_text("# Doc\n\nIntro.\n\n## A section\n\n" + body + "\n", encoding="utf-8")
    return doc


@pytest.mark.parametrize(
    "claim",
    [
        "The guard makes training 37% faster.",
        "A whole diagnosis takes 12.5 s.",
        "The doctor finds 26/26 problems.",
        "The guard costs 1.02x a bare loop.",
        "| digits CNN | 0.973 |",
        "It reads a log in 1.2 GB and 850 steps/s.",
    ],
)
def test_a_made_up_figure_fails_the_check(tmp_path: Path, claim: str) -> None:
    assert unsourced(_doc(tmp_path, claim))


def test_command_date_and_machine_are_each_needed(tmp_path: Path) -> None:
    parts = {
        "command": "Run `python bench/doctor_speed.py --rows 1000000`",
        "date": "on 2026-12-07",
        "machine": "on the shared 2-core dev box.",
    }
    figure = "\n\n| 1M-row CSV | 1.31 s, 248 MB |"
    assert not unsourced(_doc(tmp_path, " ".join(parts.values()) + figure))
    for left_out in parts:
        text = " ".join(v for k, v in parts.items() if k != left_out)
        assert unsourced(_doc(tmp_path, text + figure)), left_out


def test_settings_thresholds_and_code_are_not_figures() -> None:
    assert figures("roll back after 3 bad steps in 25; the LR is capped at 0.5x") == []
    assert (
        figures("worse than the best by > 5%, at most 20 s; `--set optim.betas=[0.9,0.95]`") == []
    )
    assert figures("accumulation 4 x 8, torch 2.13, betas [0.9, 0.999], default 0.02") == []
