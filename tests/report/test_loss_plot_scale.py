"""The doctor's loss plot on a real guarded run with a 1e6-scaled batch: one spike must not
flatten the curve (log axis, peak annotated) and the guard's skipped steps are marked."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stabletrain.doctor import diagnose
from stabletrain.report import plots

from ..train.helpers import train


def test_a_loss_spike_puts_the_panel_on_a_log_axis_and_marks_skips(tmp_path: Path) -> None:
    run = tmp_path / "rescued"
    # unstable-digits: NaN batch at step 30, a 1e6-scaled batch at step 50 (loss ~1e5)
    train("unstable-digits.yaml", run, "train.epochs=3")
    report = diagnose(run)
    losses = plots.series([r for r in report.records if r.kind == "train"], "loss")[1]
    assert max(losses) > 1e4 and min(losses) < 1.0  # the real spike, not a faked one
    fig, ax = plt.subplots()
    try:
        plots.draw_panel(ax, "loss", report)
        assert ax.get_yscale() == "log"
        notes = [t.get_text() for t in ax.texts]
        assert any("at step 50" in n for n in notes), notes
        labels = ax.get_legend_handles_labels()[1]
        assert any(lb.startswith("skipped step (") for lb in labels), labels
    finally:
        plt.close(fig)
    assert plots.render_panels(report)["loss"].startswith(b"\x89PNG")


def test_a_smooth_loss_stays_on_a_linear_axis() -> None:
    assert plots.y_scale([2.3, 1.5, 0.9, 0.4, 0.1]) == "linear"
    assert plots.y_scale([0.1, 1.2e5, 0.09]) == "log"
    assert plots.y_scale([-0.5, 1.2e5, 0.09]) == "symlog"
