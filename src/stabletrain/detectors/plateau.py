"""The plateau scheduler reacting too late: ``scheduler-late`` and ``patience-conflict``.

Seed 001's findings, from the LR series ``schedules.LRScheduleDetector`` records and the
config facts:

- ``scheduler-late`` (seed 001: best loss at epoch 10, spike at 13, ReduceLROnPlateau with
  patience 10 cut the LR at epoch 24 — "14 epochs too late"): the first LR cut (a drop of ≥ 20 % in
  one record) came ≥ ``late_epochs`` after the best point of the loss series, and the loss got
  worse while the scheduler waited (its mean between the best and the cut ≥ 5 % and ≥ 3 σ of the
  curve's own noise above the best: a noisy plateau's lowest point is only its luckiest). Fires
  when the config says plateau, or, without config, when the LR is piecewise constant (cuts
  only), so cosine decay logged per epoch is not mistaken for a late cut.
- ``patience-conflict`` (seed 001: scheduler patience 10, early stopping 10): plateau patience ≥
  early-stopping patience, so early stopping ends the run before the LR can be cut. From facts;
  the log confirms it when the run ended with no LR cut.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from stabletrain.detectors.fixes import fmt, make_fix
from stabletrain.detectors.robust import trend_noise
from stabletrain.records import ConfigFacts, Finding, Fix

if TYPE_CHECKING:
    from stabletrain.detectors.schedules import LRScheduleDetector


def is_plateau(facts: ConfigFacts) -> bool:
    """Whether the config names a ReduceLROnPlateau-style schedule."""
    return "plateau" in str(facts.get("schedule", "")).lower()


def late(det: LRScheduleDetector, facts: ConfigFacts) -> Finding | None:
    """``scheduler-late``: the first LR cut came long after the loss's best point."""
    if not det.cuts:
        return None
    stepwise = det.n_increase <= 1 and det.n_decrease == len(det.cuts) <= 10
    if not (is_plateau(facts) or ("schedule" not in facts and stepwise)):
        return None
    series, unit = det.loss_series()
    step, epoch, old, new = det.cuts[0]
    if unit == "epoch" and (epoch is None or not math.isfinite(epoch)):
        return None  # an epoch that is not a finite number places nothing
    cut_x = float(epoch) if unit == "epoch" else float(step)
    before = [(x, v) for x, v in series if x < cut_x]
    if len(before) < 2:
        return None
    best_x, best = min(before, key=lambda p: p[1])
    # Lateness in epochs, or (step-indexed evals) in evaluations after the best one.
    late = cut_x - best_x if unit == "epoch" else float(sum(x > best_x for x, _ in before))
    if late < det.late_epochs:
        return None
    # late only if the run got worse while the scheduler waited: the loss between the best and
    # the cut sits above the best beyond the curve's own noise (and by ≥ 5 %); a noisy plateau's
    # lowest point is just its luckiest one, and cutting after it is the scheduler doing its job
    waited = [v for x, v in before if x > best_x]
    excess = sum(waited) / len(waited) - best if waited else 0.0
    if excess < max(3.0 * trend_noise([v for _, v in before]), 0.05 * abs(best)):
        return None
    spike = next(((x, v) for x, v in before if x > best_x and v >= 1.5 * best), None)
    patience = facts.number("plateau_patience")
    name = "epochs" if unit == "epoch" else "evaluations"
    spike_txt = f", the loss spiked to {fmt(spike[1])} at {unit} {spike[0]:g}" if spike else ""
    fixes: list[Fix] = []
    if patience is not None:
        fixes.append(
            make_fix(
                facts,
                "React faster: halve the plateau patience",
                plateau_patience=max(1, math.ceil(patience / 2)),
            )
        )
    fixes.append(make_fix(facts, "Or decay proactively with a cosine schedule", schedule="cosine"))
    return Finding(
        id="scheduler-late",
        severity="warning",
        title=f"LR was cut at {unit} {cut_x:g}, {late:g} {name} after the best loss",
        explanation=(
            f"The best loss ({fmt(best)}) came at {unit} {best_x:g}{spike_txt}, but the "
            f"learning rate was only reduced ({fmt(old)} → {fmt(new)}) at {unit} {cut_x:g}: "
            f"{late:g} {name} too late. A plateau scheduler is reactive: it waits `patience` "
            "evaluations without improvement before it acts, and meanwhile the run keeps "
            "training at the high LR that stopped working — long enough for instability to "
            "set in. After the change, the first LR reduction should come a few "
            f"{name} after the best loss, before any spike, and the loss should keep improving."
        ),
        steps=[int(step)],
        epochs=[int(best_x), int(cut_x)] if unit == "epoch" else [],
        evidence={
            f"best_{unit}": best_x,
            "best_loss": best,
            f"cut_{unit}": cut_x,
            f"{name}_late": late,
            "lr_before": old,
            "lr_after": new,
            f"spike_{unit}": spike[0] if spike else None,
            "plateau_patience": patience,
        },
        fixes=fixes,
        related=["loss-spike", "patience-conflict", "loss-divergence"],
    )


def conflict(det: LRScheduleDetector, facts: ConfigFacts) -> Finding | None:
    """``patience-conflict``: early stopping would end the run before the plateau cut."""
    plateau, stop = facts.number("plateau_patience"), facts.number("early_stop_patience")
    if plateau is None or stop is None or plateau < stop:
        return None
    confirmed = det.n_lr > 0 and det.n_decrease == 0
    ended = f"epoch {det.last_epoch:g}" if det.last_epoch is not None else f"step {det.last_step}"
    return Finding(
        id="patience-conflict",
        severity="warning",
        title=f"Plateau patience {plateau:g} ≥ early-stopping patience {stop:g}",
        explanation=(
            f"The LR scheduler waits {plateau:g} evaluations without improvement before it "
            f"cuts the LR, but early stopping ends the run after {stop:g}: both count from the "
            "same best, so the run stops before (or just as) the LR would have been reduced — "
            "the schedule can never help."
            + (
                f" The log confirms it: the run ended at {ended} without any LR reduction."
                if confirmed
                else ""
            )
            + " Keep early-stopping patience a few evaluations longer than the scheduler's; "
            "afterwards you should see an LR reduction before any early stop."
        ),
        evidence={
            "plateau_patience": plateau,
            "early_stop_patience": stop,
            "lr_reduced_in_log": det.n_decrease > 0 if det.n_lr else None,
        },
        fixes=[conflict_fix(facts, plateau)],
        source="both" if confirmed else "config",
        related=["scheduler-late", "plateau-patience-long"],
    )


def conflict_fix(facts: ConfigFacts, plateau: float) -> Fix:
    """Halve the plateau patience and keep early stopping two evaluations beyond it (the doctor
    and ``lint`` give the same change for ``patience-conflict``)."""
    new_p = max(1, math.ceil(plateau / 2))
    return make_fix(
        facts,
        "Scheduler patience well below early-stopping patience",
        plateau_patience=new_p,
        early_stop_patience=new_p + 2,
    )
