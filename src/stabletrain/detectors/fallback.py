"""``run-failed``: the log shows the run failed, for when no other finding names a cause.

The other detectors each know one mechanism; a run can fail in a way none of them recognises. A
report that says nothing about a run whose loss ended above where it started leaves the user
where they began. This detector reads only what any log shows — the training loss at the start
and at the end — and says what that evidence supports, no more:

- **the loss got worse**: it went non-finite and ended so, or the median of its last ``KEEP``
  finite values is above the median of its first ``KEEP`` (the run ended worse than a model that
  never trained). An update that makes the loss worse on the data it trains on is a step too
  large for the curvature — the one cause that needs no other evidence — so the fix lowers the LR
  ``CUT``x, relative to the LR before the problem (the change set computes it, never from the
  log's peak). Warning, class ``instability``: it never raises the LR;
- **it did not learn**: a model with a known class count or vocabulary whose loss stayed within
  5% of where it started, at or above 0.95 ln(C) (a uniform guess). Too large a step (dead units)
  and too small a one both look like this: info, no change, "not sure" said in words.

``evidence["fallback"]`` marks both. The change set (report/changeset.py) uses a fallback finding
only when no other finding at warning or above is present: any detector that names a cause knows
more than this one.
"""

from __future__ import annotations

import math

from stabletrain.detectors.fixes import fmt
from stabletrain.detectors.lossends import KEEP, LossEndsDetector, classes
from stabletrain.records import ConfigFacts, Finding, Fix

__all__ = ["CUT", "FailedRunDetector"]

#: the LR cut when the loss got worse
CUT = 3.0
#: "did not learn": the end within this share of the start, at or above this share of ln(C)
STILL, GUESS = 0.05, 0.95


class FailedRunDetector(LossEndsDetector):
    """The training loss's start and end: worse (lower the LR) or never moved (not sure)."""

    ids: tuple[str, ...] = ("run-failed",)

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        ends = self.ends
        if ends.ends_nonfinite and ends.first_bad is not None:
            return [self._worse(f"the loss went non-finite at step {ends.first_bad} and ended so")]
        both = ends.medians()
        if both is None or len(ends.first) < KEEP or ends.n_loss < 2 * KEEP:
            return []
        first, last = both
        if last > first:
            return [self._worse(f"the training loss ended above its start ({fmt(first)} → "
                                f"{fmt(last)}, medians of the first and last {KEEP} steps)")]  # fmt: skip
        scale = classes(facts)
        if scale is None:
            return []
        c = scale[0]
        if last < (1 - STILL) * first or last < GUESS * math.log(c):
            return []
        return [
            Finding(
                id="run-failed",
                severity="info",
                title=f"The model did not learn: the loss stayed at {fmt(last)}, a uniform "
                f"guess's ln({c}) = {fmt(math.log(c))}; cause not sure",
                explanation=(
                    f"The training loss went from {fmt(first)} to {fmt(last)} and stays at a "
                    "uniform guess's level, and no finding names a cause. Too large a step (units "
                    "that died early), too small a one, an initialisation that starves the "
                    "signal, or labels that do not match the inputs all look like this; the log "
                    "cannot tell them apart, so no setting is changed. Check that one batch can "
                    "be overfitted, then the LR in both directions."
                ),
                steps=[ends.last_step],
                evidence={"first_loss": first, "last_loss": last, "fallback": True},
            )
        ]

    def _worse(self, what: str) -> Finding:
        fix = Fix(f"Lower the learning rate {CUT:g}x (from the LR before the problem).")
        fix.relative["lr"] = 1.0 / CUT
        bad = self.ends.first_bad
        return Finding(
            id="run-failed",
            severity="warning",
            title=f"The run got worse as it trained: {what}",
            explanation=(
                f"{what[:1].upper()}{what[1:]}, and no other finding names a cause. Steps that "
                "make the loss worse on the very data they are computed from are too large for "
                "the loss surface: the LR (or whatever multiplies it) is the first suspect. "
                f"Lower it {CUT:g}x; if the loss still rises, look for bad data or a bug."
            ),
            steps=[bad if bad is not None else self.ends.last_step],
            evidence={"direction": "instability", "fallback": True},
            fixes=[fix],
        )
