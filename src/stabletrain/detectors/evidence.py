"""Minimum evidence: a warning or an error must rest on enough records for its statistic to mean
something.

A log pasted into a bug report may hold two records; a statistic computed from them (a robust
z-score against one earlier value, a counter reset seen on one line, a trend through three
epoch times) is an anecdote, not a measurement. Each detector states, next to its rule, the fewest
records its statistic needs (and why); below that it still reports what it saw — hiding it would
lose information — but at ``info`` severity, saying so: :func:`too_few`.

Minima in use (each detector's docstring gives the reasoning):

- ``run-restart``: :data:`MIN_SEGMENT_RECORDS` train records on each side of a reset;
- ``slow-steps`` level shift: :data:`MIN_TREND_POINTS` epoch/stretch durations (its 3× jump
  and steady-drift rules already ask for ≥ 3 bins / 6 blocks of ≥ 3 durations each);
- ``clip-saturated`` from a logged clip fraction: ``ClippingDetector.min_logged`` intervals;
- ``eval-unstable`` / ``overfitting``: :data:`~stabletrain.detectors.robust.MIN_NOISE_POINTS`
  inner evals that are not peaks (the eval curve's noise estimate);
- ``chance-level`` from accuracy without a class count: ``AccuracyFloor.min_records`` (a note
  in any case: without the class count it is a bound, not a verdict).

- ``loss-spike`` / ``grad-spike`` found by the early-window rule (the first values of a log,
  judged against the values just before them): ``SpikeDetector.early_window`` (3) values — a
  median and a spread of two numbers is an anecdote — unless the loss rose by orders of
  magnitude (``spikes.evident_jump``: 100x the highest value before it and by more than 1),
  which no noise explains whatever the spread.
"""

from __future__ import annotations

from dataclasses import replace

from stabletrain.records import Finding

__all__ = ["MIN_SEGMENT_RECORDS", "MIN_TREND_POINTS", "TOO_FEW", "too_few"]

#: the words a demoted finding carries (tests and the report look for them)
TOO_FEW = "too few records to be sure"

#: a counter reset is a pattern of two counters: the old one ran (≥ 3 records, i.e. it counted
#: up at least twice) and the new one runs too; one stray line with a lower step is a misread or
#: a summary, not a second run
MIN_SEGMENT_RECORDS = 3

#: a trend or a level shift through fewer than 8 points has too many ways to arise by chance
#: (a rank correlation ≥ 0.8 of 6 random points: ~4 %; the two levels of a split of 8 points
#: rest on ≥ 3 points each)
MIN_TREND_POINTS = 8


def too_few(finding: Finding, n: int, minimum: int, what: str = "records") -> Finding:
    """``finding`` unchanged when ``n ≥ minimum``; else the same finding at ``info`` severity,
    its title and explanation saying it rests on only ``n`` of the ``minimum`` ``what`` its
    statistic needs, and the counts in its evidence."""
    if n >= minimum or finding.severity == "info":
        return finding
    note = f"{TOO_FEW}: {n} {what}, the rule needs ≥ {minimum}"
    return replace(
        finding,
        severity="info",
        title=f"{finding.title} ({TOO_FEW})",
        explanation=(
            f"{finding.explanation} This is a note, not a warning: {note}. A longer log would "
            "confirm or clear it."
        ),
        evidence={**finding.evidence, "evidence_records": n, "evidence_min_records": minimum},
    )
