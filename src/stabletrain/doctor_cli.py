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
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stabletrain import safe_io
from stabletrain.configs.patch import ADDED
from stabletrain.errors import CheckpointError, ConfigError, ExitCode, LogReadError
from stabletrain.records import Severity
from stabletrain.report.model import Report

if TYPE_CHECKING:
    from stabletrain.verify import Verification


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
    """``stabletrain doctor PATH [--config FILE] [--format F] [-o OUT] [--fail-on S] [--map F=C]
    [--patch CONFIG [--verify [--verify-steps N] [--verify-dir D]]]``."""
    from stabletrain.doctor import diagnose

    patch = getattr(args, "patch", None)
    given = getattr(args, "config", None)
    try:
        if getattr(args, "verify", False) and not patch:
            raise ConfigError("--verify re-trains the patched config: give --patch CONFIG too")
        mapping = parse_mapping(getattr(args, "map", None))
        path = Path(args.path)
        if path.exists() and not path.is_dir():  # a FIFO or a device would block or never end
            safe_io.regular_file(path, error=LogReadError)
        # the config to patch is the run's config, unless --config names another one
        config, given_as = (given, "--config") if given or not patch else (patch, "--patch")
        report = diagnose(args.path, config, mapping=mapping, given_as=given_as)
    except (LogReadError, ConfigError, OSError) as e:
        return _unreadable("doctor", e)
    if patch is None:
        return _finish("doctor", report, args)
    return _patch("doctor", report, [patch], args)


def run_lint(args: argparse.Namespace) -> int:
    """``stabletrain lint FILE... [--format text|json] [--fail-on S] [--patch [-o FIXED]]``."""
    from stabletrain.lint import lint

    try:
        if getattr(args, "patch", False) and len(args.files) > 1 and args.output:
            raise ConfigError(
                f"lint --patch with {len(args.files)} files writes each change into the file "
                "that holds its setting, as FILE.fixed.EXT beside it: -o names one file; drop it"
            )
        report = lint(list(args.files))
    except (LogReadError, ConfigError, OSError) as e:
        return _unreadable("lint", e)
    if getattr(args, "patch", False):
        return _patch("lint", report, list(args.files), args)
    return _finish("lint", report, args)


def _finish(
    command: str, report: Report, args: argparse.Namespace, *, output: str | None = None
) -> int:
    """Print or write the report (``output``: the report's file, ``-o`` unless patching)."""
    if output is None and not getattr(args, "patch", None):
        output = getattr(args, "output", None)
    try:
        _emit(report, args.format, output)
    except OSError as e:  # -o into a missing/readonly place, or a full disk
        where = f"{e.filename}: " if e.filename else ""
        return _unreadable(command, OSError(f"{where}cannot write the report ({e.strerror or e})"))
    return ExitCode.FINDINGS if report.fails(_fail_on(args)) else ExitCode.CLEAN


def _patch(command: str, report: Report, configs: list[str], args: argparse.Namespace) -> int:
    """The report, then its change set written into a copy of the config (``-o``; with several
    lint files each change goes to the file holding its setting, as ``FILE.fixed.EXT``), then —
    with ``--verify`` — the patched config re-trained and judged. The exit code is the report's;
    with ``--verify`` it is the re-run's (1 when it still has findings at or above ``--fail-on``).

    Text: the lines follow the report on stdout; md/html: they go to stderr. JSON: the report
    gets ``"patch"`` (config, output, written, edits, refused, notes; ``"patches"``, a list, for
    several files) and ``"verify"`` objects, and the lines go to stderr.
    """
    from stabletrain.configs.patch import default_output, route

    machine = args.format == "json"  # the report waits for the patch and verify objects
    code = ExitCode.FINDINGS if report.fails(_fail_on(args)) else ExitCode.CLEAN
    if not machine:
        _finish(command, report, args)
    # stdout is the report's when it is a document (json, md, html): the lines go to stderr
    say = sys.stdout if args.format == "text" else sys.stderr
    extra: dict[str, Any] = {}
    changes = report.change_set.changes
    if not changes:
        print(f"stabletrain {command}: nothing to patch (the change set is empty)", file=say)
        extra["patch"] = {"config": configs[0], "output": None, "written": False, "edits": []}
        return _json(report, extra, code) if machine else code
    try:
        routed = route(changes, configs) if len(configs) > 1 else {configs[0]: changes}
        done = []
        for config, part in routed.items():
            out = Path(args.output) if getattr(args, "output", None) else default_output(config)
            done.append((out, _write_patch(config, part, out, say)))
    except (ConfigError, OSError) as e:
        return _unreadable(command, e)
    if len(configs) > 1:
        extra["patches"] = [obj for _, obj in done]
        return _json(report, extra, code) if machine else code
    out, extra["patch"] = done[0]
    if getattr(args, "verify", False):
        if not extra["patch"]["written"]:
            print("stabletrain doctor: nothing to verify (no change could be written)", file=say)
        else:
            try:
                v = _verify(report, out, args, say)
            except (ConfigError, CheckpointError, OSError) as e:
                return _unreadable("doctor", e)
            extra["verify"] = v.to_json()
            failed = v.report is not None and v.report.fails(_fail_on(args))
            code = ExitCode.FINDINGS if failed else ExitCode.CLEAN
    return _json(report, extra, code) if machine else code


def _write_patch(config: str, changes: dict[str, Any], out: Path, say: Any) -> dict[str, Any]:
    """Patch ``config`` into ``out``, print the lines; the JSON object of what was done."""
    from stabletrain.configs.patch import plan_patch, write_patch

    plan = plan_patch(config, changes)
    if plan.edits:
        write_patch(plan, out)
    head = f"patched {config} → {out}" if plan.edits else f"nothing written to {out}"
    print(f"\n{head}:", file=say)
    for line in plan.summary():
        print(f"  {line}", file=say)
    return {
        "config": config,
        "output": str(out) if plan.edits else None,
        "written": bool(plan.edits),
        "edits": [
            {"key": e.key, "old": None if e.old == ADDED else e.old, "new": e.new, "from": e.change}
            for e in plan.edits
        ],
        "refused": list(plan.refused),
        "notes": list(plan.notes),
    }


def _verify(report: Report, fixed: Path, args: argparse.Namespace, say: Any) -> Verification:
    from stabletrain.verify import default_verify_dir, verify

    run_dir = Path(args.verify_dir) if args.verify_dir else default_verify_dir(fixed)
    print(f"\nverify: training {fixed} into {run_dir} ...", file=say, flush=True)
    # a run already in the default dir is an earlier --verify's; one named by the user stays
    v = verify(report, fixed, run_dir, steps=args.verify_steps, replace=not args.verify_dir)
    for line in v.lines():
        print(line, file=say)
    return v


def _json(report: Report, extra: dict[str, Any], code: int) -> int:
    """The report's JSON with the patch/verify objects added, on stdout; returns ``code``."""
    data = {**report.to_json(), **_strict(extra)}
    sys.stdout.write(json.dumps(data, indent=2, allow_nan=False) + "\n")
    return code


def _strict(v: Any) -> Any:
    """Strict JSON: non-finite floats as strings (as the report does), anything else as text."""
    if isinstance(v, float):
        return v if math.isfinite(v) else str(v)
    if isinstance(v, dict):
        return {str(k): _strict(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_strict(x) for x in v]
    return v if v is None or isinstance(v, (bool, int, str)) else str(v)


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
