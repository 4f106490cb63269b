"""``stabletrain train`` and ``stabletrain demo``: the console side of the reference trainer.

The CLI owns the console, so this module (called only from cli.py) prints with rich; the library
modules it drives only log. ``run_demo`` is a list of stages over a shared context, so showing
the doctor's verdict later is one more small stage function. The demo owns its run dirs and
replaces them on each run; ``train`` refuses to reuse a run dir without ``--resume`` or
``--overwrite`` (``train.rundir``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from stabletrain.errors import ExitCode
from stabletrain.train.config import TrainConfig, load_config, parse_config
from stabletrain.train.default_configs import DIGITS_CNN, UNSTABLE_DIGITS
from stabletrain.train.distributed import shutdown_distributed
from stabletrain.train.loop import train
from stabletrain.train.plot import plot_history
from stabletrain.train.rundir import prepare_run_dir
from stabletrain.train.summary import build_summary, summary_lines, write_summary

#: summary statuses ``train`` exits 3 (``ExitCode.RUN_FAILED``) on
RUN_FAILED_STATUSES = ("aborted", "diverged")


@dataclass
class RunResult:
    run_dir: Path
    summary: dict[str, Any]
    summary_path: Path | None
    plot_path: Path | None


def run_config(
    cfg: TrainConfig,
    run_dir: Path,
    console: Console,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
) -> RunResult:
    """Train one config; write summary.json and the plot (rank 0); print the final summary.

    A run dir that already holds a run needs ``resume`` (same config) or ``overwrite``.
    """
    cfg.run.dir = str(run_dir)
    prepare_run_dir(cfg, run_dir, resume=resume, overwrite=overwrite)
    bar = None
    if progress and console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TimeElapsedColumn(), console=console, transient=True,
        )  # fmt: skip
    with bar if bar is not None else _nothing():
        st, p = train(cfg, run_dir, resume=resume, echo=console.print, progress=bar)
    summary: dict[str, Any] = {}
    summary_path = plot_path = None
    if p.dist.is_main:
        extra = {"abort_reason": st.abort_reason} if st.abort_reason else {}
        summary = build_summary(run_dir, status=st.status or "completed", epochs=st.epoch,
                                wall_time=st.wall_time, name=cfg.run.name, **extra)  # fmt: skip
        summary_path = write_summary(run_dir, summary)
        plot_path = plot_history(run_dir, clip=cfg.train.max_grad_norm, title=cfg.run.name)
        for line in summary_lines(summary):
            console.print(line)
    shutdown_distributed(p.dist)
    return RunResult(run_dir, summary, summary_path, plot_path)


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _console() -> Console:
    # the command's one console: progress bar, summary and (on a terminal) the log lines
    from stabletrain.cli import route_logging_to

    console = Console(soft_wrap=True)
    route_logging_to(console)
    return console


def run_train(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    run_dir = Path(args.run_dir) if args.run_dir else cfg.run_dir()
    console = _console()
    res = run_config(
        cfg,
        run_dir,
        console,
        resume=args.resume,
        overwrite=getattr(args, "overwrite", False),
        progress=not args.no_progress,
    )
    if res.summary_path is not None:
        console.print(f"run dir {res.run_dir}  summary {res.summary_path}  plot {res.plot_path}")
    # a run that left no usable model fails, whether the guard stopped it or it diverged (its
    # last loss NaN/inf): a CI script or a sweep reads the exit status before summary.json
    failed = res.summary.get("status") in RUN_FAILED_STATUSES
    return ExitCode.RUN_FAILED if failed else ExitCode.CLEAN


# -- the demo ----------------------------------------------------------------------------------


@dataclass
class DemoContext:
    root: Path
    console: Console
    progress: bool
    results: dict[str, RunResult] = field(default_factory=dict)


def _stage_train_digits(ctx: DemoContext) -> None:
    cfg = parse_config(DIGITS_CNN, source="embedded digits-cnn")
    res = run_config(
        cfg, ctx.root / "digits-cnn", ctx.console, overwrite=True, progress=ctx.progress
    )
    ctx.results["digits-cnn"] = res
    ctx.console.print(
        f"run dir  {res.run_dir}\nsummary  {res.summary_path}\nplot     {res.plot_path}"
    )


def _stage_guard_rescue(ctx: DemoContext) -> None:
    rows = []
    for preset in ("off", "default"):
        data = {**UNSTABLE_DIGITS, "guard": {"preset": preset}}
        cfg = parse_config(data, source=f"embedded unstable-digits (guard {preset})")
        name = f"unstable-digits-guard-{preset}"
        ctx.console.print(f"[bold]unstable-digits with guard preset {preset!r}[/bold]")
        res = run_config(cfg, ctx.root / name, ctx.console, overwrite=True, progress=ctx.progress)
        ctx.results[name] = res
        rows.append((preset, res.summary))
    ctx.console.print("\n[bold]unstable-digits (NaN + 1e6-scaled batches, high LR):[/bold]")
    ctx.console.print(f"  {'guard':<10}{'final val acc':>15}{'skipped steps':>15}  status")
    for preset, s in rows:
        acc = s.get("final_accuracy")
        acc_s = f"{acc:.2%}" if acc is not None else "-"
        ctx.console.print(
            f"  {preset:<10}{acc_s:>15}{s.get('skipped_steps', 0):>15}  {s.get('status')}"
        )


def _stage_doctor(ctx: DemoContext) -> None:
    # The doctor reads the run directories the previous stages wrote, like any user's run.
    from stabletrain.doctor import diagnose

    for name in ("digits-cnn", "unstable-digits-guard-off", "unstable-digits-guard-default"):
        res = ctx.results.get(name)
        if res is None:
            continue
        report = diagnose(res.run_dir)
        counts = report.counts()
        verdict = ", ".join(f"{n} {sev}" for sev, n in counts.items() if n) or "no findings"
        ctx.console.print(f"[bold]stabletrain doctor {res.run_dir}[/bold]  ->  {verdict}")
        for finding in report.findings:
            if finding.severity != "info":
                ctx.console.print(f"  {finding.severity:<8}{finding.id:<22}{finding.title}")
    worst = ctx.results.get("unstable-digits-guard-off")
    if worst is not None:
        ctx.console.print(
            f"\nfull report: stabletrain doctor {worst.run_dir} --format html -o report.html"
        )


#: What ``stabletrain demo`` shows, in order; adding a stage is one more function.
DEMO_STAGES: list[tuple[str, Callable[[DemoContext], None]]] = [
    ("train the digits CNN", _stage_train_digits),
    ("the guard rescues an unstable run", _stage_guard_rescue),
    ("the doctor's verdict on these runs", _stage_doctor),
]


def run_demo(args: argparse.Namespace) -> int:
    console = _console()
    ctx = DemoContext(Path(args.run_dir or "runs/demo"), console, progress=not args.no_progress)
    for i, (title, stage) in enumerate(DEMO_STAGES, 1):
        console.rule(f"[{i}/{len(DEMO_STAGES)}] {title}")
        stage(ctx)
    digits = ctx.results.get("digits-cnn")
    acc = digits.summary.get("final_accuracy") if digits else None
    if acc is None or acc < 0.9:
        print(f"demo: digits CNN reached only {acc} val accuracy (expected > 90%)", file=sys.stderr)
        return ExitCode.FINDINGS
    return ExitCode.CLEAN
