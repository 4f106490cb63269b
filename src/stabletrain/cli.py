"""The ``stabletrain`` command: ``train``, ``demo``, ``doctor``, ``lint``.

The CLI owns the console; library code only logs. Each subcommand lives in the module that owns
the job (``train.entry``, ``doctor_cli``) and is imported only when used, so ``stabletrain lint``
never imports torch-heavy code it does not need.

Exit codes (one table for every command, :class:`stabletrain.errors.ExitCode`): 0 clean,
1 findings at or above ``--fail-on`` (default ``error``; ``never`` opts out), 2 unusable input
(one line naming the file and the reason), 3 a ``train`` run failed (the guard stopped it, or
it diverged), 4 an internal error (one line asking for a report; the traceback only with ``-v``),
130 interrupted.
"""

from __future__ import annotations

import argparse
import errno
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from stabletrain import __version__
from stabletrain.errors import ExitCode, StableTrainError

FAIL_ON = ["info", "warning", "error", "never"]
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


_FAIL_ON_HELP = (
    "exit 1 when a finding is at or above this severity (default: error; never: always 0)"
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="stabletrain", description="Keep PyTorch training runs stable."
    )
    p.add_argument("--version", action="version", version=f"stabletrain {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging, full tracebacks")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # -v also after the command (``stabletrain doctor -v X``); SUPPRESS keeps the global value
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS
    )

    t = sub.add_parser(
        "train", parents=[common], help="train from a config file (reference trainer)"
    )
    t.add_argument("config", help="YAML config (see configs/)")
    t.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set optim.lr=3e-4 (repeatable)",
    )
    t.add_argument("--run-dir", help="where the run log and checkpoints go")
    t.add_argument(
        "--resume", action="store_true", help="continue from the run dir's last checkpoint"
    )
    t.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the run already in --run-dir (without it, reusing a run dir is refused)",
    )
    t.add_argument("--no-progress", action="store_true", help="no progress bar")

    d = sub.add_parser(
        "demo", parents=[common], help="train the embedded default (digits CNN) and show the result"
    )
    d.add_argument("--run-dir", help="where the demo runs go (default: runs/demo)")
    d.add_argument("--no-progress", action="store_true", help="no progress bar")

    doc = sub.add_parser(
        "doctor", parents=[common], help="diagnose a run from its logs (and config)"
    )
    doc.add_argument("path", help="run directory or log file (format detected from content)")
    doc.add_argument("--config", help="the run's config (YAML, TrainingArguments JSON, ds_config)")
    doc.add_argument("--format", choices=["text", "md", "html", "json"], default="text")
    doc.add_argument("-o", "--output", help="write the report here (html/md get plots beside it)")
    doc.add_argument("--fail-on", choices=FAIL_ON, default="error", help=_FAIL_ON_HELP)
    doc.add_argument(
        "--map",
        action="append",
        default=[],
        metavar="FIELD=COLUMN",
        help="column mapping for generic CSV/JSONL, e.g. --map loss=train_loss (repeatable)",
    )
    doc.add_argument(
        "--patch",
        metavar="CONFIG",
        help="write the report's change set into a copy of CONFIG (YAML, TrainingArguments JSON, "
        "ds_config): -o names the copy (default CONFIG.fixed.EXT); CONFIG is the run's config "
        "unless --config says otherwise",
    )
    doc.add_argument(
        "--verify",
        action="store_true",
        help="with --patch, for a stabletrain run dir: re-train the patched config for a few "
        "steps, diagnose it and print the symptom before and after",
    )
    doc.add_argument(
        "--verify-steps",
        type=int,
        metavar="N",
        help="steps of the --verify run (default: the run's steps, at most 300)",
    )
    doc.add_argument(
        "--verify-dir", help="run dir of the --verify run (default: beside the patched config)"
    )

    li = sub.add_parser("lint", parents=[common], help="findings from config files alone")
    li.add_argument("files", nargs="+", help="YAML, TrainingArguments JSON, or ds_config.json")
    li.add_argument("--format", choices=["text", "json"], default="text")
    li.add_argument("--fail-on", choices=FAIL_ON, default="error", help=_FAIL_ON_HELP)
    li.add_argument(
        "--patch",
        action="store_true",
        help="write lint's change set into a copy of each config file holding a change "
        "(FILE.fixed.EXT; -o names the copy of a single file)",
    )
    li.add_argument(
        "-o", "--output", help="with --patch: the patched copy (default FILE.fixed.EXT)"
    )
    return p


class _ConsoleLogHandler(logging.Handler):
    """Library log lines, to stderr, or through the command's rich Console once one is attached.

    A rich Console prints above its live progress bar; a line written to the same terminal
    behind its back lands at the bar's end (``0/23 0:00:00WARNING stabletrain.guard...``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.console: Any = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            msg = self.format(record)
            if self.console is not None:
                self.console.print(msg, markup=False, highlight=False, emoji=False, soft_wrap=True)
            else:
                sys.stderr.write(msg + "\n")
                sys.stderr.flush()
        except Exception:  # a log line must never end the run
            self.handleError(record)


_LOG_HANDLER = _ConsoleLogHandler()


def route_logging_to(console: Any) -> None:
    """Print log lines through ``console`` while it is a terminal (it also draws the progress
    bar), so they stack above the bar; piped output keeps plain lines on stderr."""
    _LOG_HANDLER.console = console if console is not None and console.is_terminal else None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    root = logging.getLogger()
    _LOG_HANDLER.console = None
    if not root.handlers:  # as logging.basicConfig: leave a host's (or pytest's) handlers alone
        root.setLevel(logging.DEBUG if args.verbose else logging.INFO)
        _LOG_HANDLER.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        root.addHandler(_LOG_HANDLER)
    try:
        if args.command == "train":
            from stabletrain.train.entry import run_train

            return run_train(args)
        if args.command == "demo":
            from stabletrain.train.entry import run_demo

            return run_demo(args)
        if args.command == "doctor":
            from stabletrain.doctor_cli import run_doctor

            return run_doctor(args)
        if args.command == "lint":
            from stabletrain.doctor_cli import run_lint

            return run_lint(args)
    except StableTrainError as e:
        print(f"stabletrain {args.command}: {_one_line(e)}", file=sys.stderr)
        return ExitCode.UNUSABLE_INPUT
    except OSError as e:  # a file we must write or read: full disk, permissions, a bad path
        where = f"{e.filename}: " if e.filename else ""
        full = " (disk full: free space and rerun)" if e.errno in _DISK_FULL else ""
        print(f"stabletrain {args.command}: {where}{e.strerror or e}{full}", file=sys.stderr)
        return ExitCode.UNUSABLE_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except Exception as e:  # the last line of defence: one line, not a traceback
        return internal_error(args.command, e, verbose=args.verbose)
    return ExitCode.UNUSABLE_INPUT


def internal_error(command: str, e: BaseException, *, verbose: bool) -> int:
    """A bug in stabletrain: one line asking for a report; the traceback only with ``-v``."""
    if verbose:
        traceback.print_exception(e, file=sys.stderr)
    how = "the command and the traceback" if verbose else "the command and the output of -v"
    print(
        f"stabletrain {command}: internal error ({type(e).__name__}: {_one_line(e)}): "
        f"a bug in stabletrain, please report it with {how}",
        file=sys.stderr,
    )
    return ExitCode.INTERNAL_ERROR


def _one_line(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return text[:500] if text else type(e).__name__


if __name__ == "__main__":
    sys.exit(main())
