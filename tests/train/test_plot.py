"""The trainer's ``training_history.png`` shows what the guard did, on real tiny runs.

The loss panel marks the skipped steps and the rollbacks the run's ``events.jsonl`` records (with
their counts in the legend), labels the peak of a loss spanning orders of magnitude, and marks a
diverged run's NaN/inf losses, which a line cannot show.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from stabletrain.logs.runlog import EVALS_FILE, STEPS_FILE
from stabletrain.train.plot import draw_loss, guard_marks
from stabletrain.train.summary import read_records

from .helpers import read_jsonl, train


def _loss_panel(run: Path) -> tuple[list[str], list[str], list[float]]:
    """Legend labels, annotations and the x of every vertical line of the run's loss panel."""
    steps = read_records(run / STEPS_FILE)
    fig, ax = plt.subplots()
    try:
        draw_loss(ax, steps, read_records(run / EVALS_FILE), guard_marks(run, steps))
        assert ax.get_yscale() == "log"
        labels = ax.get_legend_handles_labels()[1]
        notes = [t.get_text() for t in ax.texts]
        lines = [float(ln.get_xdata()[0]) for ln in ax.lines if len(ln.get_xdata()) == 2
                 and ln.get_xdata()[0] == ln.get_xdata()[1]]  # fmt: skip
    finally:
        plt.close(fig)
    return labels, notes, lines


def test_the_guards_skips_and_rollbacks_are_marked(tmp_path: Path) -> None:
    # unstable-digits with the guard rolling back on spikes: the NaN batch at step 30 is
    # skipped, the 1e6-scaled batch at step 50 (loss ~1e5) brings a rollback
    run = tmp_path / "rescued"
    assert train("unstable-digits.yaml", run, "train.epochs=3", "guard.spike_action=rollback") == 0
    events = read_jsonl(run / "events.jsonl")
    skips = {e["step"] for e in events if e["event"] == "skip"}
    rollbacks = [e["step"] for e in events if e["event"] == "rollback"]
    assert 30 in skips and rollbacks, (skips, rollbacks)

    labels, notes, lines = _loss_panel(run)
    assert f"skipped step ({len(skips)})" in labels
    assert f"rollback ({len(rollbacks)})" in labels
    assert skips | set(rollbacks) <= set(lines)
    assert any(n.endswith("at step 50") for n in notes), notes  # the 1e6-scaled batch's loss
    assert (run / "training_history.png").stat().st_size > 10_000


def test_a_diverged_runs_nan_losses_are_marked(tmp_path: Path) -> None:
    run = tmp_path / "diverged"
    train("digits-cnn.yaml", run, "guard.preset=off", "optim.lr=1e3", "train.epochs=1")
    nan_steps = [
        r["step"] for r in read_jsonl(run / "steps.jsonl") if r.get("loss") in ("nan", "inf")
    ]
    assert nan_steps  # the real divergence, not a faked loss
    labels, _, lines = _loss_panel(run)
    assert f"NaN/inf loss ({len(nan_steps)})" in labels
    assert not any(lb.startswith(("skipped step", "rollback")) for lb in labels)  # guard off
    assert lines == []
