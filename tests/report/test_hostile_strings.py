"""Every user-derived string (paths, metric names, config keys, evidence values, guard reasons)
is printed as text by every renderer: rich markup in a path must not crash the text report or
vanish from it, HTML must stay inert in Markdown/HTML (issue 13, the change set and timeline)."""

from __future__ import annotations

import html as html_lib

import pytest

from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord
from stabletrain.report import html, markdown, text
from stabletrain.report.model import Report

HOSTILE = ["[/tmp/a.yaml]", "[bold]", "<script>x</script>", "a|b", "`tick`", "[/x]"]


def _report() -> Report:
    facts = ConfigFacts(source="[/tmp/a.yaml]")
    facts.set("lr", 0.5, key="optim.[bold]lr", file="[/tmp/a.yaml]")
    facts.set("max_grad_norm", 4.0, key="train.<script>clip</script>", file="[/tmp/a.yaml]")
    f = Finding(
        "loss-spike",
        "warning",
        "spike in [bold]loss[/bold] <script>x</script>",
        explanation="metric `[/x]` | a|b",
        steps=[5],
        evidence={
            "files": ["/tmp/a.yaml", "[/tmp/a.yaml]"],
            "confirmed_by": ["grad-spike"],
            "metric": "[red]<script>x</script>",
        },
        fixes=[Fix("Lower [/x] the clip", {"train.<script>clip</script>": 1.0}, code="[bold]`x`")],
    )
    records = [StepRecord(step=i, loss=2.0, lr=0.5) for i in range(30)]
    r = Report(
        [f],
        facts,
        source="runs/[/x]",
        format="jsonl",
        config="[/tmp/a.yaml]",
        records=records,
        notes=["seen [/tmp/b.yaml] <script>"],
    )
    r.roles = {"[bold]loss": "loss"}
    r.guard_timeline = [
        {"step": 3, "action": "skip", "reason": "non-finite loss [/x]"},
        {"step": 9, "action": "rollback", "reason": "to step 0: [bold]<script>x</script>"},
    ]
    return r


def test_text_prints_markup_in_user_strings_verbatim() -> None:
    out = text.render(_report())  # crashed with MarkupError: closing tag '[/tmp/a.yaml]'
    assert "['/tmp/a.yaml', '[/tmp/a.yaml]']" in out or "[/tmp/a.yaml, [/tmp/a.yaml]]" in out
    assert "grad-spike" in out  # `confirmed_by: ["grad-spike"]` printed as empty
    assert "[red]<script>x</script>" in out
    assert "metric `[/x]` | a|b" in out
    assert "Lower [/x] the clip" in out and "[bold]`x`" in out
    assert "runs/[/x]" in out and "[bold]loss" in out
    assert "seen [/tmp/b.yaml] <script>" in out
    assert "[bold]<script>x</script>" in out  # the guard timeline's reason


@pytest.mark.parametrize("width", [None, 60])
def test_text_with_color_and_wrapping_does_not_crash(width: int | None) -> None:
    out = text.render(_report(), width=width, color=True)
    assert "grad-spike" in out


def test_markdown_and_html_keep_hostile_strings_inert_including_timeline() -> None:
    r = _report()
    md = markdown.render(r)
    outside_code = md.split("```")[::2]
    for part in outside_code:
        assert "<script>" not in part
    assert "rollback" in md and "to step 0" in md  # the guard timeline is in the Markdown
    doc = html.render(r)
    assert "<script>" not in doc
    assert "rollback" in doc and html_lib.escape("[bold]<script>x</script>") in doc
