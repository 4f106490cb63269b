"""The detector protocol: incremental, small state, no torch.

A detector sees one :class:`~stabletrain.records.StepRecord` at a time. The guard feeds it live;
the doctor replays a log through the very same object.

- ``update(record)`` returns a Finding when *this record* is a symptom (a spike, a non-finite
  step), so the guard can act on it at once. Per-step findings are for live action.
- ``finish(facts)`` returns the run-level findings, aggregated: one Finding per id with every step
  where it showed, the evidence, recovery, and the fix (using ``facts`` for the user's keys).
  The doctor reports only what ``finish`` returns.

Detectors never touch tensors: measuring is the guard's job. All constructor arguments have
defaults, so ``Detector()`` is a sensible detector.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from stabletrain.records import ConfigFacts, Finding, StepRecord


@runtime_checkable
class Detector(Protocol):
    """What every detector implements."""

    #: The finding ids this detector can emit.
    ids: tuple[str, ...]

    def update(self, record: StepRecord) -> Finding | None:
        """Consume one record; return a Finding if this record is a symptom, else None."""
        ...

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        """Findings over the whole run (called once, after the last record)."""
        ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
