"""Every detector in one list, and :func:`replay` — a log through all of them.

``default_detectors()`` is what the doctor replays and what the guard may run live: fresh
instances, default thresholds. ``replay`` feeds records in order and collects ``finish(facts)``;
detectors with a bulk path (``update_many``) get all records at once, sharing one set of columns.
Detectors whose class sets ``wants_raw = True`` (duplicate logging, run restarts) read ``raw`` — the records as
read, before the readers removed exact duplicates — when it is given.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from stabletrain.detectors.amp import LossScaleDetector
from stabletrain.detectors.base import Detector, feed
from stabletrain.detectors.clipping import ClippingDetector
from stabletrain.detectors.columns import as_batch
from stabletrain.detectors.fallback import FailedRunDetector
from stabletrain.detectors.generalisation import EvalDetector
from stabletrain.detectors.growth import GradNormGrowthDetector
from stabletrain.detectors.init import InitDetector
from stabletrain.detectors.levelshift import LossStepDetector
from stabletrain.detectors.logging import DuplicateLoggingDetector
from stabletrain.detectors.lrjump import LRJumpDetector
from stabletrain.detectors.nonfinite import NonFiniteDetector
from stabletrain.detectors.nosignal import NoLearningDetector
from stabletrain.detectors.perf import SlowStepsDetector
from stabletrain.detectors.restart import RunRestartDetector
from stabletrain.detectors.sanity import SanityDetector
from stabletrain.detectors.schedules import LRScheduleDetector
from stabletrain.detectors.shortrun import ShortRunDetector
from stabletrain.detectors.spikes import SpikeDetector
from stabletrain.detectors.trends import LossTrendDetector
from stabletrain.detectors.underfit import UnderfitDetector
from stabletrain.detectors.warmup import WarmupDetector
from stabletrain.detectors.warmuplong import WarmupLongDetector
from stabletrain.records import ConfigFacts, Finding, StepRecord

__all__ = ["default_detectors", "replay"]


def default_detectors() -> list[Detector]:
    """A fresh instance of every detector (guard's and doctor's), default thresholds."""
    return [
        NonFiniteDetector(),
        SpikeDetector("grad_norm"),
        SpikeDetector("loss"),
        LossStepDetector(),
        LossScaleDetector(),
        ClippingDetector(),
        GradNormGrowthDetector(),
        WarmupDetector(),
        WarmupLongDetector(),
        LossTrendDetector(),
        LRScheduleDetector(),
        LRJumpDetector(),
        InitDetector(),
        UnderfitDetector(),
        ShortRunDetector(),
        SanityDetector(),
        FailedRunDetector(),
        EvalDetector(),
        DuplicateLoggingDetector(),
        RunRestartDetector(),
        SlowStepsDetector(),
        NoLearningDetector(),
    ]


def replay(
    records: Iterable[StepRecord],
    facts: ConfigFacts | None = None,
    detectors: Sequence[Detector] | None = None,
    *,
    raw: Iterable[StepRecord] | None = None,
) -> list[Finding]:
    """Feed ``records`` through ``detectors`` (default: all) and return their run-level findings.

    ``records`` are the cleaned records (``RunData.records``); ``raw`` the records as read
    (``RunData.raw``), used by detectors with ``wants_raw`` — without it they see ``records``.
    Per-record findings from ``update`` are not returned: ``finish`` aggregates them.
    """
    dets = list(detectors) if detectors is not None else default_detectors()
    raw_dets = [d for d in dets if getattr(d, "wants_raw", False)] if raw is not None else []
    cleaned_dets = [d for d in dets if not any(d is r for r in raw_dets)]
    batch = as_batch(records)
    for d in cleaned_dets:
        feed(d, batch)
    if raw is not None:
        raw_batch = as_batch(raw, like=batch)
        for d in raw_dets:
            feed(d, raw_batch)
    findings: list[Finding] = []
    for d in dets:
        findings.extend(d.finish(facts))
    return _one_loss_spike(findings)


def _one_loss_spike(findings: list[Finding]) -> list[Finding]:
    """One ``loss-spike`` finding per log: the spike rule's when it has one, else the step rule's
    (``detectors.levelshift``, whose findings say ``evidence["rule"] == "step"``)."""
    if not any(f.id == "loss-spike" and f.evidence.get("rule") != "step" for f in findings):
        return findings
    return [f for f in findings if not (f.id == "loss-spike" and f.evidence.get("rule") == "step")]
