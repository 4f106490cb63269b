"""Self-contained HTML rendering of a Report: inline CSS, plots embedded as base64 PNG.

``write(report, path)`` also writes each panel as ``<stem>_<panel>.png`` beside the HTML file, so
the plots can be pasted into an issue. No JavaScript, no external assets: the file opens the
same offline, in a browser, or attached to a CI run.
"""

from __future__ import annotations

import base64
from html import escape
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
    read_items,
    where,
)
from stabletrain.report.model import Report
from stabletrain.report.timeline import timeline_lines

_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:0;
 background:#f6f7f9;color:#1d2330;line-height:1.45}
main{max-width:1120px;margin:0 auto;padding:28px 32px 48px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.meta{color:#5b6475;font-size:13px;word-break:break-all}
.verdict{margin:14px 0 6px;padding:12px 16px;border-radius:8px;font-weight:600;font-size:16px}
.v-error{background:#fdecec;color:#a11}.v-warning{background:#fff6e0;color:#8a5a00}
.v-ok{background:#e8f6ec;color:#17692f}
.note{color:#5b6475;font-size:13px;margin:2px 0}
table.toc{border-collapse:collapse;width:100%;font-size:13.5px;background:#fff;border-radius:8px;
 overflow:hidden;box-shadow:0 1px 2px rgba(0,0,0,.06)}
table.toc td,table.toc th{padding:7px 10px;border-bottom:1px solid #eceef2;text-align:left;
 vertical-align:top}
table.toc th{background:#fafbfc;font-weight:600;color:#5b6475}
.card{background:#fff;border-radius:8px;margin:14px 0;padding:14px 18px;border-left:5px solid #999;
 box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card.error{border-left-color:#d33}.card.warning{border-left-color:#e0a000}
.card.info{border-left-color:#3b82c4}
.card h3{margin:0 0 2px;font-size:16px}.card .where{color:#5b6475;font-size:13px;margin-bottom:8px}
.sev{display:inline-block;font-size:11px;font-weight:700;text-transform:uppercase;
 padding:1px 7px;border-radius:9px;margin-right:6px;vertical-align:2px}
.sev.error{background:#fdecec;color:#a11}.sev.warning{background:#fff1cc;color:#7a4f00}
.sev.info{background:#e6f0fa;color:#245e94}
.src{font-size:11px;color:#7a3e9d;margin-left:6px}
code{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px}
.ev{display:flex;flex-wrap:wrap;gap:6px;margin:6px 0 10px}
.ev span{background:#f1f3f6;border-radius:5px;padding:2px 8px;font-size:12.5px}
.ev b{font-weight:600;color:#5b6475;margin-right:4px}
.lbl{font-weight:600}
p{margin:6px 0}
pre.diff{background:#0f1720;color:#d7dde7;border-radius:6px;padding:10px 12px;margin:6px 0 10px;
 font-size:13px;overflow-x:auto}
pre.diff .del{color:#ff8b8b}pre.diff .add{color:#7ee2a0}pre.diff .hdr{color:#8895a7}
.watch{color:#31506e;font-size:13.5px}
.grid{display:grid;grid-template-columns:1fr 1fr;gap:10px}
.panel{background:#fff;border-radius:8px;padding:6px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
.panel img{width:100%;display:block}
"""


def render(report: Report, panels: dict[str, bytes] | None = None) -> str:
    """The report as one HTML document; ``panels`` (name → PNG bytes) are embedded inline."""
    s = report.summary()
    title = f"stabletrain {report.kind}: {report.source or ''}"
    read = "".join(
        f"<div class='meta'><b>{escape(label)}:</b> {escape(value)}</div>"
        for label, value in read_items(report, s)
    )
    worst = report.worst_severity if report.problems else None
    vclass = {"error": "v-error", "warning": "v-warning"}.get(worst or "", "v-ok")
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta name='viewport' content='width=device-width'><title>{escape(title)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f"<h1>stabletrain {escape(report.kind)}</h1>",
        f"<div class='meta'><code>{escape(report.source or '')}</code></div>",
        read,
        f"<div class='verdict {vclass}'>Verdict: {escape(headline(report.counts()))}</div>",
    ]
    parts += [f"<div class='note'>note: {escape(n)}</div>" for n in report.notes]
    timeline = timeline_lines(report.guard_timeline)  # the guard's actions, one line a group
    if timeline:
        parts.append("<h2>Guard actions</h2><ul>")
        parts += [f"<li>{escape(t)}</li>" for t in timeline]
        parts.append("</ul>")
    if not report.problems:
        what = "run" if report.kind == "doctor" else "config"
        parts.append(f"<p>Nothing to change: this {what} shows no stability problems.</p>")
    parts += _change_set(report)
    if report.findings:
        parts.append("<h2>Findings (cause → effect)</h2><table class='toc'>")
        parts.append("<tr><th></th><th>id</th><th>where</th><th>what</th></tr>")
        for f in report.findings:
            parts.append(
                f"<tr><td><span class='sev {f.severity}'>{f.severity}</span></td>"
                f"<td><code>{escape(f.id)}</code></td><td>{escape(where(f))}</td>"
                f"<td>{escape(f.title)}</td></tr>"
            )
        parts.append("</table>")
    if panels:
        # the curves come before the details: they are the symptom a reader checks first
        parts.append("<h2>Curves</h2><div class='grid'>")
        for name, png in panels.items():
            b64 = base64.b64encode(png).decode("ascii")
            parts.append(
                f"<div class='panel'><img alt='{escape(name)}' src='data:image/png;base64,{b64}'></div>"
            )
        parts.append("</div>")
    if report.findings:
        parts.append("<h2>Details</h2>")
        parts += [_card(f, report) for f in report.findings]
    parts.append("</main></body></html>\n")
    return "\n".join(parts)


def _change_set(report: Report) -> list[str]:
    """The one set of changes to apply (root cause first), its alternatives and what it left out."""
    cs = report.change_set
    if not (cs or cs.dropped):
        return []
    out = ["<h2>Change set</h2><div class='card'>"]
    if cs.changes:
        fix = cs.as_fix()
        out.append(
            f"<p><span class='lbl'>Apply.</span> the one set of changes to apply (serves "
            f"<code>{escape(cs.cause or '')}</code>)</p>"
        )
        rows = [f"<span class='hdr'># {escape(x)}</span>" for x in fix_files(fix, report.facts)]
        rows += [
            f"<span class='{'del' if d.startswith('-') else 'add'}'>{escape(d)}</span>"
            for d in config_diff(fix, report.facts)
        ]
        out.append("<pre class='diff'>" + "\n".join(rows) + "</pre><ul>")
        out += [
            f"<li><code>{escape(', '.join(keys))}</code>: {escape(why)}</li>"
            for why, keys in reasons_by_fix(cs).items()
        ]
        base = cs.base_line()
        if base:
            out.append(f"<li>LR base: {escape(base)}</li>")
        out.append("</ul>")
    elif not cs.actions:
        out.append("<p>No config change can be recommended with confidence.</p>")
    for a in cs.actions:
        code = f" <code>{escape(a.code)}</code>" if a.code else ""
        out.append(f"<p><span class='lbl'>First.</span> {escape(a.description)}{code}</p>")
    for a in cs.alternatives:
        code = f" <code>{escape(a.code)}</code>" if a.code else ""
        out.append(f"<p><span class='lbl'>Or.</span> {escape(a.description)}{code}</p>")
    for d in cs.dropped:
        out.append(f"<p class='watch'><span class='lbl'>Left out.</span> {escape(d)}</p>")
    out.append("</div>")
    return out


def _card(f: Finding, report: Report) -> str:
    src = {"both": "predicted by the config · confirmed by the log", "config": "from the config"}
    out = [
        f"<div class='card {f.severity}' id='{escape(f.id)}'>",
        f"<h3><span class='sev {f.severity}'>{SEVERITY_MARK[f.severity]} {f.severity}</span>"
        f"<code>{escape(f.id)}</code> — {escape(f.title)}"
        + (f"<span class='src'>{src[f.source]}</span>" if f.source in src else "")
        + "</h3>",
        f"<div class='where'>{escape(where(f))}</div>",
    ]
    ev = evidence_items(f)
    if ev:
        out.append(
            "<div class='ev'>"
            + "".join(f"<span><b>{escape(k)}</b>{escape(v)}</span>" for k, v in ev)
            + "</div>"
        )
    if f.explanation:
        out.append(f"<p><span class='lbl'>Why.</span> {escape(f.explanation)}</p>")
    for fix in f.fixes:
        out.append(f"<p><span class='lbl'>Fix.</span> {escape(fix.description)}</p>")
        diff = config_diff(fix, report.facts)
        if diff:
            rows = [f"<span class='hdr'># {escape(x)}</span>" for x in fix_files(fix, report.facts)]
            rows += [
                f"<span class='{'del' if d.startswith('-') else 'add'}'>{escape(d)}</span>"
                for d in diff
            ]
            out.append("<pre class='diff'>" + "\n".join(rows) + "</pre>")
        if fix.code:
            out.append(f"<pre class='diff'>{escape(fix.code)}</pre>")
    out.append(
        f"<p class='watch'><span class='lbl'>Watch after.</span> {escape(watch_for(f.id))}</p>"
    )
    present = {g.id for g in report.findings}
    related = [r for r in f.related if r in present]  # a detector may name ids this run lacks
    if related:
        links = ", ".join(f"<a href='#{escape(r)}'><code>{escape(r)}</code></a>" for r in related)
        out.append(f"<p class='watch'><span class='lbl'>Related.</span> {links}</p>")
    out.append("</div>")
    return "\n".join(out)


def save_panels(panels: dict[str, bytes], path: Path) -> dict[str, Path]:
    """Write PNG panels as ``<stem>_<panel>.png`` beside ``path``."""
    out: dict[str, Path] = {}
    for name, png in panels.items():
        p = path.with_name(f"{path.stem}_{name}.png")
        p.write_bytes(png)
        out[name] = p
    return out


def write_panels(report: Report, path: Path) -> dict[str, Path]:
    """Render the report's plot panels and write them beside ``path``."""
    from stabletrain.report.plots import render_panels

    return save_panels(render_panels(report), path)


def write(report: Report, path: str | Path) -> list[Path]:
    """Write the HTML report (plots embedded) and the PNG panels beside it; return the files."""
    from stabletrain.report.plots import render_panels

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panels = render_panels(report)
    files = save_panels(panels, path)
    path.write_text(render(report, panels), encoding="utf-8")
    return [path, *files.values()]
