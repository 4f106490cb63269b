"""Render a doctor HTML report and screenshot it in headless Chromium, to check the layout by eye.

Usage::

    .venv/bin/python bench/report_screenshot.py [--seed seed003] [--out runs/screenshot]
    .venv/bin/python bench/report_screenshot.py --html some/report.html

Without ``--html`` it generates the seed fixture (tests/fixtures/seeds/<seed>.py) into the output
directory, runs ``stabletrain doctor --format html`` on it with the seed's config, and
screenshots the result. Needs Debian's ``chromium`` (``apt-get install -y chromium``). Prints the
paths of the report and the screenshot and the PNG size.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SEEDS = REPO / "tests" / "fixtures" / "seeds"


def _load_seed(name: str) -> object:
    spec = importlib.util.spec_from_file_location(f"seed_{name}", SEEDS / f"{name}.py")
    if spec is None or spec.loader is None:
        raise SystemExit(f"no seed fixture {SEEDS / name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def build_report(seed: str, out: Path) -> Path:
    from stabletrain.doctor import diagnose
    from stabletrain.report import html

    mod = _load_seed(seed)
    log, config = mod.generate(out / seed)  # type: ignore[attr-defined]
    report = diagnose(log, config)
    path = out / f"{seed}_report.html"
    html.write(report, path)
    return path


def screenshot(html_path: Path, png: Path, size: str = "1280,2000") -> Path:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise SystemExit("chromium not found: apt-get update && apt-get install -y chromium")
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--screenshot={png}",
            f"--window-size={size}",
            html_path.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    return png


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", default="seed003", help="seed fixture name (seed000..seed004)")
    p.add_argument("--html", help="screenshot this HTML file instead of generating one")
    p.add_argument("--out", default="runs/screenshot", help="output directory")
    p.add_argument("--size", default="1280,2000", help="window size W,H")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    html_path = Path(args.html) if args.html else build_report(args.seed, out)
    png = screenshot(html_path, out / f"{html_path.stem}.png", args.size)
    print(f"report:     {html_path}")
    print(f"screenshot: {png} ({png.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
