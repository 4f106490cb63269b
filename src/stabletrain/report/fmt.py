"""Formatting shared by the text, Markdown and HTML renderers: numbers, step ranges, config diffs.

The config diff is the heart of a fix: ``- max_grad_norm: 4.0`` / ``+ max_grad_norm: 2.0`` in
the user's own key names, with the current value taken from the facts the config reader found
(each Fact remembers its file and dotted key).
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from stabletrain.detectors.fixes import value_for
from stabletrain.records import ConfigFacts, Finding, Fix

if TYPE_CHECKING:
    from stabletrain.report.model import Report

SEVERITY_MARK = {"error": "✖", "warning": "▲", "info": "●"}


def fmt_value(v: Any) -> str:
    """A number the way a person writes it: 4 significant digits, exponent for tiny/huge."""
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "null"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if v == int(v) and abs(v) < 1e6:
            return str(int(v)) if abs(v) >= 10 else f"{v:.1f}"
        a = abs(v)
        if a >= 1e5 or a < 1e-3:
            return f"{v:.3g}"
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        items = [fmt_value(x) for x in v[:8]]
        more = f", … (+{len(v) - 8})" if len(v) > 8 else ""
        return "[" + ", ".join(items) + more + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {fmt_value(x)}" for k, x in list(v.items())[:8]) + "}"
    return str(v)


def fmt_ranges(values: list[int], limit: int = 6) -> str:
    """``[3,4,5,9]`` → ``3–5, 9``; long lists end with ``… (N in all)``."""
    if not values:
        return ""
    vs = sorted(set(values))
    runs: list[tuple[int, int]] = []
    start = prev = vs[0]
    for v in vs[1:]:
        if v == prev + 1:
            prev = v
            continue
        runs.append((start, prev))
        start = prev = v
    runs.append((start, prev))
    parts = [str(a) if a == b else f"{a}–{b}" for a, b in runs[:limit]]
    text = ", ".join(parts)
    if len(runs) > limit:
        text += f", … ({len(vs)} in all)"
    elif len(vs) > 1:
        text += f" ({len(vs)})"
    return text


def where(f: Finding) -> str:
    """Where a finding shows: ``steps 120–180 (61)``, ``epochs 13–14``, or ``config``."""
    parts = []
    if f.epochs:
        parts.append(("epoch " if len(set(f.epochs)) == 1 else "epochs ") + fmt_ranges(f.epochs))
    if f.steps:
        parts.append(("step " if len(set(f.steps)) == 1 else "steps ") + fmt_ranges(f.steps))
    if not parts:
        return "config" if f.source == "config" else "whole run"
    return "; ".join(parts)


#: precision switch keys (``fp16.enabled``, HF's ``fp16: true``) → the precision they switch on
_SWITCHES = {"fp16": "fp16", "half": "fp16", "bf16": "bf16"}


def _current(facts: ConfigFacts, key: str) -> tuple[bool, Any]:
    """The current value for a user key (or a normalised fact name), if the config had it."""
    for fact in facts.facts.values():
        if fact.key == key or (fact.key is None and fact.name == key):
            if fact.name == "precision" and isinstance(fact.value, str):
                # the fact holds the normalised precision ("fp16"); a switch key holds a boolean
                parts = [p.lstrip("-").lower() for p in key.split(".")]
                switch = parts[-2] if parts[-1] == "enabled" and len(parts) > 1 else parts[-1]
                if switch in _SWITCHES:
                    return True, fact.value == _SWITCHES[switch]
            # in the key's own unit: ``initial_scale_power: 32`` holds 2**32 as the fact
            return True, value_for(key, fact.value)
    if key in facts.facts:
        return True, facts.facts[key].value
    return False, None


def config_diff(fix: Fix, facts: ConfigFacts) -> list[str]:
    """Unified-diff lines for a fix's config changes, in the user's keys.

    Command-line flags (keys starting with ``--``, Megatron-LM's) read as a command line does:
    ``+ --clip-grad 0.5``; a switch is added (``+ --bf16``) or dropped (``- --fp16``).
    """
    lines: list[str] = []
    for key, new in fix.changes.items():
        found, old = _current(facts, key)
        if key.startswith("--"):
            lines.extend(_flag_diff(key, found, old, new))
            continue
        if found:
            lines.append(f"- {key}: {fmt_value(old)}")
        lines.append(f"+ {key}: {fmt_value(new)}")
    return lines


def _flag_diff(flag: str, found: bool, old: Any, new: Any) -> list[str]:
    if isinstance(new, bool):
        return [f"+ {flag}"] if new else [f"- {flag}"]
    lines = [f"- {flag} {fmt_value(old)}"] if found else []
    return [*lines, f"+ {flag} {fmt_value(new)}"]


def fix_files(fix: Fix, facts: ConfigFacts) -> list[str]:
    """The config files a fix touches (from the facts' origins), for the diff header."""
    files: list[str] = []
    for key in fix.changes:
        for fact in facts.facts.values():
            if fact.key == key and fact.file and fact.file not in files:
                files.append(fact.file)
    return files


def evidence_items(f: Finding) -> list[tuple[str, str]]:
    """Evidence as ``(label, value)`` pairs with readable labels."""
    return [(k.replace("_", " "), fmt_value(v)) for k, v in f.evidence.items()]


def headline(counts: dict[str, int]) -> str:
    """``2 errors, 1 warning`` or ``no problems found``."""
    parts = [
        f"{n} {name}{'s' if n != 1 else ''}"
        for name, n in (("error", counts["error"]), ("warning", counts["warning"]))
        if n
    ]
    if not parts:
        return "no problems found" + (
            f" ({counts['info']} note{'s' if counts['info'] != 1 else ''})"
            if counts["info"]
            else ""
        )
    return ", ".join(parts)


#: metric roles shown in the header before "+N more"
_ROLES_SHOWN = 12


def read_items(report: Report, summary: dict[str, Any] | None = None) -> list[tuple[str, str]]:
    """What was read, as (label, text) rows for the top of the text, Markdown and HTML reports.

    Plain text: each renderer escapes it for its format. Rows the reader gave no data for are
    left out (a share of lines understood is never invented)."""
    r = report.read(summary)
    rows = []
    what = r["format"] or "?"
    if r["dialect"] and r["dialect"] != r["format"]:
        what += f", dialect {r['dialect']}"
    rows.append(("Read", f"{r['file'] or '?'} ({what})"))
    if report.kind == "doctor":
        span = ""
        if r["first_step"] is not None:
            span = f" (steps {r['first_step']}–{r['last_step']})"
        rows.append(("Records", f"{r['train_records']} train{span}, {r['eval_records']} eval"))
    if r["understood"] is not None:
        rows.append(
            (
                "Understood",
                f"{r['understood']:.0%} of lines ({r['lines_understood']} of "
                f"{r['lines_total']} lines understood)",
            )
        )
    roles = list(r["roles"].items())
    if roles:
        shown = ", ".join(f"{name} → {role}" for name, role in roles[:_ROLES_SHOWN])
        if len(roles) > _ROLES_SHOWN:
            shown += f", +{len(roles) - _ROLES_SHOWN} more"
        rows.append(("Metrics", shown))
    if report.kind == "doctor":
        rows.append(("Config", r["config"]))
    return rows


_MD_SPECIAL = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        "`": "\\`",
        "[": "\\[",
        "]": "\\]",
        "|": "\\|",
        "*": "\\*",
        "\\": "\\\\",
    }
)


def md_text(value: object) -> str:
    """Text from the user's files (keys, metric names, file names) made inert in Markdown: HTML
    as entities (Python-Markdown passes raw HTML through), and the characters that open code
    spans, links, emphasis or table cells backslash-escaped."""
    return str(value).translate(_MD_SPECIAL)


_TAG = re.compile(r"<(?=[A-Za-z/!?])")


def md_fence(text: str) -> str:
    """Text for a fenced code block, inert where fences are not understood (Python-Markdown
    without ``fenced_code`` reads the block as paragraphs and passes raw HTML through): what
    would open an HTML tag is an entity, and a line that would close the fence is broken up.
    A comparison such as ``a < b`` is left alone."""
    return _TAG.sub("&lt;", text).replace("```", "`\u200b``")
