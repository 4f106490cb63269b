"""Which settings the configured schedule and optimizer read.

A change to a setting the run's schedule or optimizer never reads changes nothing (a plateau
patience under one-cycle, a momentum under Adam), so the change set leaves it out and says why
(report/changeset.py). Judged on the normalised fact names, in any format whose facts name the
schedule or optimizer:

- ``plateau_patience`` / ``plateau_factor``: read by a plateau schedule only (ReduceLROnPlateau,
  HF's ``reduce_lr_on_plateau``);
- ``warmup_steps`` / ``warmup_ratio``: read by every schedule but a plateau one (the reference
  trainer refuses a warm-up with it; HF's plateau scheduler takes none);
- ``min_lr``: the reference trainer's cosine only (its one-cycle and constant schedules ignore it;
  elsewhere unknown, so kept);
- ``beta1`` / ``beta2`` / ``eps``: Adam-style optimizers only; ``momentum``: SGD only.

The reference trainer's part is read off ``train/schedules.py`` and checked against it in
tests/report/test_changeset_scope.py (a key called unread leaves the trainer's LRs unchanged).
A schedule or optimizer the facts do not name reads everything: nothing is left out unknown.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from stabletrain.detectors.fixes import user_key
from stabletrain.records import ConfigFacts


def _plateau(name: str) -> bool:
    return "plateau" in name


#: fact name → (which of "schedule" / "optimizer" decides, whether a given name reads it)
READ_BY: dict[str, tuple[str, Callable[[str], bool]]] = {
    "plateau_patience": ("schedule", _plateau),
    "plateau_factor": ("schedule", _plateau),
    "warmup_steps": ("schedule", lambda n: not _plateau(n)),
    "warmup_ratio": ("schedule", lambda n: not _plateau(n)),
    "beta1": ("optimizer", lambda n: "adam" in n),
    "beta2": ("optimizer", lambda n: "adam" in n),
    "eps": ("optimizer", lambda n: "adam" in n),
    "momentum": ("optimizer", lambda n: "sgd" in n),
}
#: the reference trainer's own: ``schedule.min_lr`` is read by its cosine only
TRAINER_READ_BY: dict[str, tuple[str, Callable[[str], bool]]] = {
    "min_lr": ("schedule", lambda n: n == "cosine"),
}
#: the reference trainer's keys for facts the shared vocabulary has no key for
TRAINER_KEYS = {"momentum": "optim.momentum"}


def unread(facts: ConfigFacts, key: str, changes: Mapping[str, Any]) -> str | None:
    """Why the run's schedule or optimizer does not read ``key`` (a user key), else None.
    ``changes``: the change set so far (a schedule it switches to is the one that runs)."""
    table = dict(READ_BY)
    if facts.format == "stabletrain":
        table.update(TRAINER_READ_BY)
    for name, (by, reads) in table.items():
        keys = {user_key(facts, name)}
        if facts.format == "stabletrain" and name in TRAINER_KEYS:
            keys.add(TRAINER_KEYS[name])
        if key not in keys:
            continue
        now = _configured(facts, by, changes)
        if now is None or reads(now):
            return None
        return f"the configured {by} ({user_key(facts, by)}: {now}) does not read it"
    return None


def _configured(facts: ConfigFacts, by: str, changes: Mapping[str, Any]) -> str | None:
    """The schedule or optimizer name the run will have (lower case), None when unknown."""
    key = user_key(facts, by)
    value = changes.get(key, facts.get(by))
    if value is None and facts.format == "stabletrain":
        from stabletrain.report.changeset import trainer_value

        found, value = trainer_value(facts, key)
        value = value if found else None
    return str(value).lower() if isinstance(value, str) and value else None
