from __future__ import annotations

import json
import math
from pathlib import Path

from stabletrain.records import ConfigFacts, Finding, Fix, StepRecord
from stabletrain.report import html, jsonfmt, markdown, plots, text
from stabletrain.report.fmt import config_diff, fmt_ranges
from stabletrain.report.model import Report


def _records(n: int = 400, with_scale: bool = True) -> list[StepRecord]:
    out = []
    for i in range(n):
        out.append(
            StepRecord(
                step=i,
                loss=2.0 / (1 + i / 50) + (2.5 if i == 201 else 0.0),
                grad_norm=float("inf") if i == 300 else 3.5 + 0.3 * math.sin(i),
                lr=2e-4,
                loss_scale=65536.0 / 2 ** (i // 100) if with_scale else None,
            )
        )
    out += [StepRecord(step=i, kind="eval", eval_loss=1.0) for i in range(0, n, 100)]
    return out


def _report(findings: list[Finding], records: list[StepRecord] | None = None) -> Report:
    facts = ConfigFacts(source="training_args.json")
    facts.set("max_grad_norm", 4.0, key="max_grad_norm")
    facts.set("lr", 2e-4, key="learning_rate")
    return Report(findings, facts, source="runs/cnn", format="tensorboard", records=records or [])


CLIP = Finding(
    "clip-near-threshold",
    "warning",
    "Grad norm hovers at 3.5, just under max_grad_norm 4.0",
    explanation="Clipping never engages.",
    steps=list(range(10, 300)),
    evidence={"median_grad_norm": 3.5},
    fixes=[Fix("Lower the clip value", {"max_grad_norm": 2.0, "learning_rate": 1.5e-4})],
    source="both",
)


def test_text_shows_numbers_diff_in_user_keys_and_what_to_watch() -> None:
    out = text.render(_report([CLIP], _records()))
    assert "Verdict: 1 warning" in out
    assert "clip-near-threshold" in out and "steps 10–299 (290)" in out
    assert "- max_grad_norm: 4.0" in out and "+ max_grad_norm: 2.0" in out
    assert "- learning_rate: 0.0002" in out and "+ learning_rate: 0.00015" in out
    assert "# training_args.json" in out
    assert "Watch:" in out and "median grad norm 3.5" in out
    assert not any(line != line.rstrip() for line in out.splitlines())


def test_clean_report_says_nothing_is_wrong() -> None:
    info = Finding("slow-steps", "info", "one slow step")
    for out in (text.render(_report([info])), markdown.render(_report([info]))):
        assert "no problems found (1 note)" in out
        assert "Nothing to change" in out
    assert "Nothing to change" in html.render(_report([]))


def test_markdown_has_diff_block_and_images() -> None:
    out = markdown.render(_report([CLIP]), {"loss": "r_loss.png"})
    assert "```diff\n# training_args.json\n- max_grad_norm: 4.0\n+ max_grad_norm: 2.0" in out
    assert "![loss](r_loss.png)" in out and "**Watch after:**" in out


def test_html_is_self_contained_and_pngs_are_written_beside(tmp_path: Path) -> None:
    report = _report([CLIP], _records())
    files = html.write(report, tmp_path / "report.html")
    names = sorted(p.name for p in files)
    assert names == [
        "report.html",
        "report_grad_norm.png",
        "report_loss.png",
        "report_loss_scale.png",
        "report_lr.png",
    ]
    doc = (tmp_path / "report.html").read_text()
    assert doc.count("data:image/png;base64,") == 4
    assert "http://" not in doc and "https://" not in doc and "<script" not in doc
    assert "max_grad_norm: 4.0" in doc
    for p in files[1:]:
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_markdown_write_links_pngs(tmp_path: Path) -> None:
    files = markdown.write(_report([CLIP], _records(with_scale=False)), tmp_path / "r.md")
    assert {p.name for p in files} == {"r.md", "r_loss.png", "r_grad_norm.png", "r_lr.png"}
    assert "![grad_norm](r_grad_norm.png)" in (tmp_path / "r.md").read_text()


def test_only_panels_with_data() -> None:
    recs = [StepRecord(step=i, loss=1.0 / (i + 1)) for i in range(20)]
    assert plots.available(_report([], recs)) == ["loss"]
    assert plots.available(_report([])) == []
    assert plots.render_panels(_report([])) == {}


def test_decimation_keeps_a_one_step_spike() -> None:
    xs = [float(i) for i in range(1_000_000)]
    ys = [1.0] * len(xs)
    ys[654_321] = 50.0
    dx, dy = plots.decimate(xs, ys, 2000)
    assert len(dx) <= 2000 and max(dy) == 50.0 and 654_321.0 in dx


def test_json_renderer_is_strict() -> None:
    f = Finding("nonfinite-loss", "error", "nan", evidence={"loss": float("nan")})
    data = json.loads(jsonfmt.render(_report([f], _records(10))))
    assert data["findings"][0]["evidence"]["loss"] == "nan"


def test_step_ranges() -> None:
    assert fmt_ranges([3, 4, 5, 9]) == "3–5, 9 (4)"
    assert fmt_ranges([7]) == "7"
    assert fmt_ranges(list(range(0, 40, 2)), limit=3).endswith("… (20 in all)")


def test_command_line_flags_read_as_a_command_line() -> None:
    # Megatron-LM has no config file: its fixes are flags, and a switch is added or dropped
    facts = ConfigFacts(source="megatron.log", format="megatron")
    facts.set("max_grad_norm", 1.0, key="--clip-grad")
    fix = Fix("bf16, tighter clip", {"--fp16": False, "--bf16": True, "--clip-grad": 0.5})
    assert config_diff(fix, facts) == [
        "- --fp16",
        "+ --bf16",
        "- --clip-grad 1.0",
        "+ --clip-grad 0.5",
    ]
    f = Finding("loss-spike", "warning", "spike", steps=[5], fixes=[fix])
    report = Report([f], facts, source="megatron.log", format="megatron")
    assert "+ --bf16" in text.render(report) and "+ --clip-grad 0.5" in markdown.render(report)
    # a config key keeps the key: value form
    assert config_diff(Fix("x", {"fp16.enabled": False}), facts) == ["+ fp16.enabled: false"]


def test_a_precision_switch_shows_the_value_the_file_holds() -> None:
    """ds_config's fp16.enabled is true in the file; the fact holds the normalised "fp16"."""
    facts = ConfigFacts(source="ds_config.json", format="deepspeed")
    facts.set("precision", "fp16", key="fp16.enabled", file="ds_config.json")
    fix = Fix("bf16", {"fp16.enabled": False, "bf16.enabled": True})
    assert config_diff(fix, facts) == [
        "- fp16.enabled: true",
        "+ fp16.enabled: false",
        "+ bf16.enabled: true",
    ]
    hf = ConfigFacts(source="training_args.json", format="hf")
    hf.set("precision", "fp16", key="fp16")
    assert config_diff(Fix("bf16", {"fp16": False}), hf) == ["- fp16: true", "+ fp16: false"]


# -- what was read, at the top of every report (issue 11) -----------------------------------
def _read_report() -> Report:
    r = _report([CLIP], _records())
    r.dialect = "hf-trainer"
    r.roles = {"train/loss": "loss", "train/grad_norm": "grad_norm", "eval/loss": "eval_loss"}
    r.lines_total, r.lines_understood = 1000, 950
    return r


def test_every_report_starts_with_what_was_read() -> None:
    r = _read_report()
    read = r.to_json()["read"]
    assert next(iter(r.to_json())) == "read"
    assert read["file"] == "runs/cnn" and read["format"] == "tensorboard"
    assert read["dialect"] == "hf-trainer"
    assert read["config"] == "none given (the run's own settings read from training_args.json)"
    assert read["train_records"] == 400 and read["eval_records"] == 4
    assert read["roles"]["train/grad_norm"] == "grad_norm"
    assert read["lines_total"] == 1000 and read["understood"] == 0.95
    for out in (text.render(r), markdown.render(r), html.render(r)):
        head = out[: out.index("Verdict")]
        for want in ("runs/cnn", "tensorboard", "hf-trainer", "400 train", "4 eval", "95%",
                     "950 of 1000", "train/grad_norm", "grad_norm", "Config", "none"):  # fmt: skip
            assert want in head, (want, head)


def test_header_renders_what_is_present_and_says_when_the_share_is_unknown() -> None:
    r = _report([], _records())
    r.config = "cfg.yaml"
    out = text.render(r)
    head = out[: out.index("Verdict")]
    assert "cfg.yaml" in head and "400 train" in head
    assert "lines understood" not in head  # the reader did not count them: nothing invented
    assert r.to_json()["read"]["understood"] is None


# -- Markdown escaping (issue 12, item 2) ---------------------------------------------------
_EVIL = '<img src=x onerror="alert(1)">'


def _evil_report() -> Report:
    facts = ConfigFacts(source=f"cfg{_EVIL}.yaml")
    facts.set("max_grad_norm", 4.0, key=f"trainer.{_EVIL}")
    f = Finding(
        "clip-near-threshold",
        "warning",
        f"Grad norm of {_EVIL} hovers [x](javascript:alert(1))",
        explanation=f"The metric `{_EVIL}` | hovers under {_EVIL}.",
        evidence={_EVIL: _EVIL},
        fixes=[Fix(f"Lower {_EVIL}", {f"trainer.{_EVIL}": 2.0}, code=f"x = 1  # {_EVIL}")],
    )
    r = Report([f], facts, source=f"runs/{_EVIL}", format="jsonl", config=f"cfg{_EVIL}.yaml",
               records=_records(50))  # fmt: skip
    r.roles = {_EVIL: "loss"}
    return r


def test_markdown_escapes_names_that_come_from_the_users_files() -> None:
    out = markdown.render(_evil_report())
    try:
        import markdown as python_markdown
    except ImportError:  # pragma: no cover - the dev extra installs it
        python_markdown = None
    if python_markdown is not None:
        for extensions in ([], ["fenced_code", "tables"]):
            rendered = python_markdown.markdown(out, extensions=extensions)
            assert "<img" not in rendered, extensions
            assert '<a href="javascript' not in rendered, extensions
    outside_code = out.split("```")[::2]
    for part in outside_code:
        assert "<img" not in part
    assert "&lt;img" in out


def test_values_at_the_float_range_edge_are_marked_not_drawn(tmp_path: Path) -> None:
    # a grad norm of 1e308 is finite, but no axis can be scaled to it: marked like inf
    recs = [StepRecord(step=i, loss=1.0 / (i + 1), grad_norm=1e308 if i % 5 == 0 else 1.0,
                       lr=1e-3, loss_scale=1e300) for i in range(50)]  # fmt: skip
    panels = plots.render_panels(_report([], recs))
    assert set(panels) == {"loss", "grad_norm", "lr", "loss_scale"}
    assert all(png.startswith(b"\x89PNG") for png in panels.values())
