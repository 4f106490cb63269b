"""``stabletrain doctor`` and ``stabletrain lint``: the console side of the doctor and lint.

Exit codes (so both can gate CI; the table is :class:`stabletrain.errors.ExitCode`): 0 clean
(nothing at or above ``--fail-on``), 1 findings at or above ``--fail-on`` — default ``error``, as
linters do; ``--fail-on never`` reports only — 2 unreadable input or an unwritable ``-o``: one
line on stderr naming the file and the reason, never a traceback.

``--format text`` prints with rich; ``md``/``html`` with ``-o`` write the report and one PNG per
plot panel beside it; ``json`` is the machine format (``Report.to_json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from stabletrain import safe_io
from stabletrain.errors import ConfigError, ExitCode, LogReadError
from stabletrain.records import Severity
from stabletrain.report.model import Report


def parse_mapping(items: list[str] | None) -> dict[str, str] | None:
    """``["loss=train_loss", ...]`` → ``{"loss": "train_loss"}``; ConfigError on a bad item."""
    if not items:
        return None
    out: dict[str, str] = {}
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field.strip() or not column.strip():
            raise ConfigError(f"--map {item!r}: expected FIELD=COLUMN, e.g. --map loss=train_loss")
        out[field.strip()] = column.strip()
    return out


def run_doctor(args: argparse.Namespace) -> int:
    """``stabletrain doctor PATH [--config FILE] [--format F] [-o OUT] [--fail-on S] [--map F=C]``."""
    from stabletrain.doctor import diagnose

    try:
        mapping = parse_mapping(getattr(args, "map", None))
        path = Path(args.path)
        if path.exists() and not path.is_dir():  # a FIFO or a device would block or never end
            safe_io.regular_file(path, error=LogReadError)
        report = diagnose(args.path, getattr(args, "config", None), mapping=mapping)
    except (LogReadError, ConfigError, OSError) as e:
        return _unreadable("doctor", e)
    return _finish("doctor", report, args)


def run_lint(args: argparse.Namespace) -> int:
    """``stabletrain lint FILE... [--format text|json] [--fail-on S]``."""
    from stabletrain.lint import lint

    try:
        report = lint(list(args.files))
    except (LogReadError, ConfigError, OSError) as e:
        return _unreadable("lint", e)
    return _finish("lint", report, args)


def _finish(command: str, report: Report, args: argparse.Namespace) -> int:
    try:
        _emit(report, args.format, getattr(args, "output", None))
    except OSError as e:  # -o into a missing/readonly place, or a full disk
        where = f"{e.filename}: " if e.filename else ""
        return _unreadable(command, OSError(f"{where}cannot write the report ({e.strerror or e})"))
    return ExitCode.FINDINGS if report.fails(_fail_on(args)) else ExitCode.CLEAN


def _fail_on(args: argparse.Namespace) -> Severity | None:
    """``--fail-on``: a severity, or ``never``; ``error`` when the caller did not say."""
    value = getattr(args, "fail_on", "error")
    levels: dict[str, Severity | None] = {"never": None, "info": "info", "warning": "warning"}
    return levels.get(value, "error")


def _unreadable(command: str, e: BaseException) -> int:
    reason = " ".join(str(e).split()) or type(e).__name__
    print(f"stabletrain {command}: {reason[:500]}", file=sys.stderr)
    return ExitCode.UNUSABLE_INPUT


def _emit(report: Report, fmt: str, output: str | None) -> None:
    if fmt == "json":
        from stabletrain.report import jsonfmt

        _out(jsonfmt.render(report), output)
    elif fmt == "md":
        from stabletrain.report import markdown

        if output:
            files = markdown.write(report, output)
            _written(report, files)
        else:
            _out(markdown.render(report), None)
    elif fmt == "html":
        from stabletrain.report import html

        if output:
            files = html.write(report, output)
            _written(report, files)
        else:
            from stabletrain.report.plots import render_panels

            _out(html.render(report, render_panels(report)), None)
    else:
        from stabletrain.report import text

        if output:
            _out(text.render(report), output)
            _written(report, [Path(output)])
        else:
            text.write(report)


def _out(content: str, output: str | None) -> None:
    if output:
        p = Path(output)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(content, encoding="utf-8")
    else:
        sys.stdout.write(content)


def _written(report: Report, files: list[Path]) -> None:
    from stabletrain.report.fmt import headline

    extra = f" (+{len(files) - 1} plot{'s' if len(files) != 2 else ''})" if len(files) > 1 else ""
    print(
        f"stabletrain {report.kind}: {headline(report.counts())} — report written to {files[0]}{extra}",
        file=sys.stderr,
    )
