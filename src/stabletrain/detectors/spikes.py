"""Loss and grad-norm spikes against a robust, delayed baseline.

A spike is a value far above the recent *typical* value: robust z-score
``(x - median) / (1.4826 * MAD)`` over a rolling window, plus a minimum ratio to the median so a
near-constant series (tiny MAD) does not flag noise. This is the rule large-model teams apply by
hand (PaLM's restarts; OLMo-core's ~6σ skip) made robust to the outliers it looks for:

- **Delayed window**: a value joins the baseline only ``delay`` records after it was seen, and
  only if it was not a spike, so a ramp or cluster of outliers is judged against the baseline from
  before it began and cannot raise its own bar.
- **Warm-up aware**: nothing is flagged until ``warmup`` values are in the baseline (early
  training drops fast and is noisy by nature).
- **Never poisoned**: NaN/inf values are ignored here (``NonFiniteDetector`` reports them).
- **The start of a log is judged too, after the fact**: the live rule cannot judge the values it
  sees while warming up, and a short excerpt (a few Megatron lines pasted into a bug report, an
  HF run logged every 5 steps that blows up at its 5th line) is nothing but warm-up. Those values
  are judged against the few values logged just before them (the last ``early_window``, at least
  ``early_min``): a spike must exceed the *highest* of them by ``early_ratio`` (1.5x for a loss,
  4x for a grad norm) — a rise relative to what preceded it, so the fast *fall* of early training
  is never one, and a noisy handful of values cannot make noise look like a jump. These episodes only enter
  the run-level finding (``finish``); ``update`` — what the guard acts on live — is unchanged.

A run-level finding says, per spike episode, the peak, the baseline, and whether and when the
series came back to its baseline. Limits: upward spikes only; a genuine regime change that stays
high is reported as an unrecovered spike (which, for a loss, it is).
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Literal

import numpy as np

from stabletrain.detectors.badbatch import Onset, bad_batch_fixes, describe_before
from stabletrain.detectors.base import epoch_index
from stabletrain.detectors.baseline import DelayedBaseline
from stabletrain.detectors.columns import Batch, Unsupported
from stabletrain.detectors.evidence import too_few
from stabletrain.detectors.fixes import spike_fixes
from stabletrain.detectors.robust import robust_stats
from stabletrain.records import ConfigFacts, Finding, StepRecord

#: The evidence a verdict needs shrinks as the effect grows. Against two earlier values a loss
#: that rose 1.5x is an anecdote (their spread is unknown), but one that rose 100x above the
#: highest of them *and* by more than one unit (a nat, for cross-entropy) is no training noise
#: whatever that spread: early training falls, and its noise is a fraction of the loss. The
#: absolute part keeps losses that hover near zero (RL objectives, a 1e-4 -> 0.05 swing) out.
EVIDENT_RATIO = 100.0
EVIDENT_RISE = 1.0


def evident_jump(value: float, highest_before: float) -> bool:
    """Whether a loss ``value`` is a jump no noise explains, against ``highest_before``."""
    return (
        highest_before > 0
        and value >= EVIDENT_RATIO * highest_before
        and value - highest_before >= EVIDENT_RISE
    )


#: Against one earlier value there is no spread at all: a jump is judged only when it is two
#: orders of magnitude beyond the evident ratio (10^4x, and still ``EVIDENT_RISE`` in absolute
#: terms). Healthy consecutive values of a loss or a gradient norm differ by at most ~100x (a
#: first step's gradient burst, a resumed run's warm-up); mmengine#11708's 3.46 -> 31,101,415
#: grad norm in a two-line paste is 9e6x.
SOLE_RATIO = EVIDENT_RATIO**2


def sole_jump(value: float, before: float) -> bool:
    """Whether ``value`` is a jump no noise explains against the one value ``before`` it."""
    return before > 0 and value >= SOLE_RATIO * before and value - before >= EVIDENT_RISE


Metric = Literal["loss", "grad_norm"]


class SpikeDetector:
    """Upward spikes of ``metric`` (``loss`` → id ``loss-spike``, ``grad_norm`` → ``grad-spike``).

    ``update`` returns a per-step Finding when the record is a spike; ``finish`` returns one
    aggregated Finding with every episode and its recovery.
    """

    ids: tuple[str, ...] = ("loss-spike", "grad-spike")

    def __init__(
        self,
        metric: Metric = "loss",
        *,
        z_threshold: float = 6.0,
        min_ratio: float | None = None,
        window: int = 100,
        delay: int = 5,
        warmup: int = 20,
        recover_z: float = 2.0,
        early_window: int = 3,
        early_min: int = 2,
        early_ratio: float | None = None,
    ) -> None:
        if metric not in ("loss", "grad_norm"):
            raise ValueError(f"SpikeDetector metric must be 'loss' or 'grad_norm', got {metric!r}")
        self.metric: Metric = metric
        self.id = "loss-spike" if metric == "loss" else "grad-spike"
        self.z_threshold = z_threshold
        # A loss that rises 30% is a spike worth naming. Grad norms of healthy small-batch runs
        # swing 2-3x from step to step (digits CNN, tiny GPT), so a grad spike must be 4x.
        self.min_ratio = min_ratio if min_ratio is not None else (1.3 if metric == "loss" else 4.0)
        self.window = window
        self.delay = delay
        self.warmup = warmup
        self.recover_z = recover_z
        self.early_window = early_window
        self.early_min = early_min
        # a baseline of 2-3 values is a weak estimate: ask for a bigger jump than the live rule
        self.early_ratio = early_ratio if early_ratio is not None else max(1.5, self.min_ratio)
        self._early: deque[float] = deque(maxlen=early_window)
        self.base = DelayedBaseline(window=window, delay=delay, warmup=warmup)
        self.episodes: list[dict[str, Any]] = []
        self.n_seen = 0
        self.last_step: int | None = None
        self.last_epoch: float | None = None
        self.max_lr = 0.0
        #: the values just before each spike, to tell a bad batch from a build-up
        self.onset = Onset()

    def _remember(self, value: float, lr: float | None) -> None:
        if self.metric == "loss":
            self.onset.push(value, None, lr)
        else:
            self.onset.push(None, value, lr)

    # -- live ---------------------------------------------------------------------------------
    def baseline(self) -> tuple[float, float] | None:
        """``(median, robust std)`` of the current baseline, or None while warming up."""
        return self.base.stats()

    def is_spike(self, value: float) -> tuple[bool, float]:
        """Whether ``value`` would be a spike now, and its robust z-score (0 while warming up)."""
        stats = self.baseline()
        if stats is None or not math.isfinite(value):
            return False, 0.0
        med, std = stats
        z = (value - med) / std
        if z > self.z_threshold:
            # a candidate spike: confirm against fresh statistics (the cache may lag a trend)
            med, std = self.base.refreshed()
            z = (value - med) / std
        # A loss rise under 0.01 (nats) is noise whatever its z-score: a loss that sits at 0 by
        # construction (GRPO/RL objectives) has a zero median and MAD, so ratio and z blow up.
        big_enough = self.metric != "loss" or value - med >= 0.01
        return z > self.z_threshold and value > med * self.min_ratio and big_enough, z

    def limit(self) -> float:
        """The value above which the next value is a spike (``is_spike``'s three rules on fresh
        statistics), ``inf`` while warming up. The guard's sync-free path compares against it
        on the device, between its reads of the values."""
        fresh = self.base.fresh()
        if fresh is None:
            return math.inf
        med, std = fresh
        lim = max(med + self.z_threshold * std, med * self.min_ratio)
        return max(lim, med + 0.01) if self.metric == "loss" else lim

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            return None
        value = getattr(record, self.metric)
        if value is None or not math.isfinite(value):
            return None
        self.n_seen += 1
        self.last_step, self.last_epoch = record.step, record.epoch
        if record.lr is not None and record.lr > self.max_lr:
            self.max_lr = record.lr  # for the fix's value when the config gives no LR
        spike, z = self.is_spike(value)
        stats = self.baseline()
        self._track_recovery(record.step, value, stats)
        if stats is None:
            self._judge_early(record, value)
        # the delay queue: values enter the baseline `delay` records later, spikes never
        self.base.push(value, spike)
        if spike and stats is not None:
            self._add_to_episode(record, value, stats[0], z)
        self._remember(value, record.lr)
        if not spike or stats is None:
            return None
        med, _ = stats
        what = "loss" if self.metric == "loss" else "grad norm"
        return Finding(
            id=self.id,
            severity="warning",
            title=f"{what} spike at step {record.step}: {value:.4g} vs baseline {med:.4g}",
            steps=[record.step],
            epochs=[e] if (e := epoch_index(record.epoch)) is not None else [],
            evidence={"value": value, "baseline_median": med, "robust_z": round(z, 2)},
            source="log",
        )

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``), returning nothing.

        Once the baseline is full, a stretch of values none of which is a spike candidate
        (z > threshold) changes the state in a fixed way: statistics recomputed every 8 values
        over windows of the stream, values entering the baseline ``delay`` later. Such stretches
        are done in bulk (:meth:`DelayedBaseline.advance`); every other record goes through
        ``update``.
        """
        values = batch.floats(self.metric)
        batch.floats("lr")
        batch.steps  # noqa: B018 (raises Unsupported now, not once the state has changed)
        idx = batch.finite(self.metric)
        ints = idx[values[idx] == np.floor(values[idx])]
        objs = batch.objects(self.metric)
        if any(type(objs[i]) is not float for i in ints.tolist()):
            raise Unsupported("int values: their median is an int, as update computes it")
        pos, size, slow = 0, 256, 32
        while pos < len(idx):
            if not self.base.steady:
                self.update(batch[int(idx[pos])])
                pos += 1
                continue
            done = self._steady(batch, idx[pos : pos + size], values)
            pos += done
            if done < size:
                # a candidate: it and the next few go through update; candidates come in
                # clusters (a spike and its neighbours), dense ones make the stretch longer
                for i in idx[pos : pos + slow].tolist():
                    self.update(batch[i])
                pos += slow
                slow = 32 if done >= 64 else min(2 * slow, 4096)
            size = min(max(2 * done, 256), 1 << 16)

    def _steady(self, batch: Batch, idx: np.ndarray, values: np.ndarray) -> int:
        """``update`` for the records ``idx`` up to the first spike candidate, in bulk; return
        how many were taken. The baseline advances itself; this records what ``update`` would
        have recorded of them (counters, the LR's maximum, an open episode's recovery)."""
        v = values[idx]
        c, stds = self.base.advance(v, self.z_threshold)
        if c == 0:
            return 0
        steps, epochs = batch.objects("step"), batch.objects("epoch")
        last = int(idx[c - 1])
        self.n_seen += c
        self.last_step, self.last_epoch = steps[last], epochs[last]
        self.max_lr = batch.running_max("lr", idx[:c], self.max_lr)
        tail = idx[:c][-self.onset.size :]
        self.onset.extend(
            "loss" if self.metric == "loss" else "grad", batch.take(self.metric, tail)
        )
        lr_ok = idx[:c][np.isfinite(batch.floats("lr")[idx[:c]])][-self.onset.size :]
        if lr_ok.size:
            self.onset.extend("lr", batch.take("lr", lr_ok))
        if self.episodes and self.episodes[-1]["recovered_at"] is None:
            ep = self.episodes[-1]
            sd = stds if ep.get("early_std") is None else ep["early_std"]
            step_arr = batch.steps[idx[:c]]
            back = (step_arr > ep["end"]) & (
                (v[:c] <= ep["baseline"] + self.recover_z * sd) | (v[:c] <= ep["baseline"])
            )
            if back.any():
                ep["recovered_at"] = steps[int(idx[int(np.argmax(back))])]
        return c

    def _judge_early(self, record: StepRecord, value: float) -> None:
        """A value the live rule cannot judge yet (warm-up), against the values just before it.

        Only the run-level finding sees the result; the live baseline is left as it is.
        """
        if len(self._early) >= self.early_min:
            med, std = robust_stats(list(self._early))
            z = (value - med) / std
            # a ratio to a zero baseline means nothing (GRPO's exactly-zero grad norms)
            big_enough = med > 0 and (self.metric != "loss" or value - med >= 0.01)
            # Two or three values say little about the spread (GRPO logs each grad norm twice,
            # so their MAD is ~0): the jump must clear the highest of them, not just the median.
            clears = value > max(self._early) * self.early_ratio
            if big_enough and clears and z > self.z_threshold:
                # a jump by orders of magnitude needs no spread to be judged (evident_jump)
                evident = self.metric == "loss" and evident_jump(value, max(self._early))
                self._add_to_episode(
                    record,
                    value,
                    med,
                    z,
                    early_std=std,
                    judged_on=len(self._early),
                    evident=evident,
                )
                return  # a spike never joins the baseline it is judged against
        elif len(self._early) == 1 and sole_jump(value, self._early[0]):
            med, std = robust_stats(list(self._early))
            self._add_to_episode(
                record,
                value,
                med,
                (value - med) / std,
                early_std=std,
                judged_on=1,
                evident=True,
            )
            return
        self._early.append(value)

    def _add_to_episode(
        self,
        record: StepRecord,
        value: float,
        med: float,
        z: float,
        early_std: float | None = None,
        judged_on: int | None = None,
        evident: bool = False,
    ) -> None:
        ep = self.episodes[-1] if self.episodes else None
        # An episode lasts until the series recovers: a spike before that belongs to it (a run
        # logged every 10 steps that never comes back is one episode, not one per logged line).
        if ep is not None and ep["recovered_at"] is None:
            ep["end"] = record.step
            ep["steps"].append(record.step)
            if value > ep["peak"]:
                ep["peak"], ep["peak_step"], ep["z"] = value, record.step, round(z, 2)
            return
        verdict = self.onset.judge(record.lr)
        self.episodes.append(
            {
                "lead_up": None if verdict is None else verdict["lead_up"],
                "before": "" if verdict is None else describe_before(verdict),
                "skipped": bool(record.skipped),
                "start": record.step,
                "end": record.step,
                "steps": [record.step],
                "epoch": record.epoch,
                "peak": value,
                "peak_step": record.step,
                "baseline": med,
                "z": round(z, 2),
                "recovered_at": None,
                # episodes judged at the start of the log keep their own spread for recovery
                "early_std": early_std,
                # how many values the spike was judged against (None: the full baseline)
                "judged_on": judged_on,
                # a jump too large for any noise: judged without a spread (evident_jump)
                "evident": evident,
            }
        )

    def _track_recovery(self, step: int, value: float, stats: tuple[float, float] | None) -> None:
        """An open episode recovers at the first later value back within ``recover_z`` of its baseline."""
        if not self.episodes:
            return
        ep = self.episodes[-1]
        if ep["recovered_at"] is not None or step <= ep["end"]:
            return
        early_std = ep.get("early_std")
        if early_std is not None:
            std = early_std
        elif stats is not None:
            _, std = stats
        else:
            return
        if value <= ep["baseline"] + self.recover_z * std or value <= ep["baseline"]:
            ep["recovered_at"] = step

    # -- run level ----------------------------------------------------------------------------
    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        if not self.episodes:
            return []
        facts = facts or ConfigFacts()
        eps = self.episodes
        # a one-record gradient-norm spike on the log's last record had no later value to
        # recover on: undecided, so it neither counts as unrecovered nor escalates the severity
        # (a loss spike at the end keeps its weight: real logs end where a run blew up; so does
        # a jump no noise explains, 100x its baseline: pasted logs end at the spike they report)
        open_at_end = [
            e
            for e in eps
            if self.metric == "grad_norm"
            and e["recovered_at"] is None
            and len(e["steps"]) == 1
            and e["end"] == self.last_step
            and not evident_jump(e["peak"], e["baseline"])
        ]
        decided = [e for e in eps if e not in open_at_end]
        unrecovered = [e for e in decided if e["recovered_at"] is None]
        what = "loss" if self.metric == "loss" else "gradient norm"
        lines = []
        for e in eps[:10]:
            rec = (
                f"recovered at step {e['recovered_at']} ({e['recovered_at'] - e['start']} steps)"
                if e["recovered_at"] is not None
                else ("the log ends at it" if e in open_at_end else "did not recover")
            )
            against = " (the values just before it)" if e.get("early_std") is not None else ""
            lines.append(
                f"step {e['start']}: peak {e['peak']:.4g} vs baseline {e['baseline']:.4g}"
                f"{against}, {rec}"
            )
        if len(eps) > 10:
            lines.append(f"... and {len(eps) - 10} more")
        # An isolated grad spike that recovered by itself (clipping absorbed it) is information;
        # recurring, sustained (3+ spiking records in a row) or unrecovered ones are a warning,
        # an unrecovered loss spike an error.
        isolated = (
            self.metric == "grad_norm"
            and not unrecovered
            and len(decided) <= 2
            and all(len(e["steps"]) <= 2 for e in eps)
        )
        severity: Literal["info", "warning", "error"] = (
            "error"
            if self.metric == "loss" and unrecovered
            else ("info" if isolated else "warning")
        )
        rule = (
            f"robust z > {self.z_threshold:g} and more than {self.min_ratio:g}x the rolling median"
        )
        if any(e.get("early_std") is not None for e in eps):
            rule += (
                f"; before {self.warmup} values formed that baseline, more than "
                f"{self.early_ratio:g}x the highest of the {self.early_window} values just before"
            )
        if any(e.get("judged_on") == 1 for e in eps):
            rule += f"; against the log's only earlier value, {SOLE_RATIO:g}x it"
        explanation = (
            f"The {what} jumped far above its recent typical value ({rule}) "
            f"{len(eps)} time(s): " + "; ".join(lines) + ". "
        )
        # a bad batch: one step, no lead-up (badbatch.Onset), back to the baseline at once
        data = [
            e
            for e in eps
            if e.get("lead_up") is False and len(e["steps"]) == 1 and e["recovered_at"] is not None
        ]
        all_data = len(data) == len(eps)
        if all_data:
            explanation += (
                "Each lasted one step with nothing leading up to it ("
                + "; ".join(f"before step {e['start']}: {e['before']}" for e in data[:5])
                + ") and the series was back at its baseline on the next step: single bad "
                "batches (extreme or corrupted inputs, wrong labels), not updates too large for "
                "the learning rate."
            )
        elif self.metric == "loss":
            explanation += (
                "Loss spikes come from updates too large for the local curvature: a learning "
                "rate too high for this point of training, clipping too loose to stop one bad "
                "batch, or a corrupted batch."
            )
        else:
            explanation += (
                "Gradient-norm spikes precede loss spikes; clipping bounds the update they cause."
            )
        if data and not all_data:
            explanation += (
                f" {len(data)} of them (step(s) {', '.join(str(e['start']) for e in data[:8])}) "
                "lasted one step with no lead-up: likely bad batches."
            )
        # the early rule judges a spike against the values just before it: against fewer than
        # ``early_window`` of them (2: a median and a spread of two numbers) a one- or two-step
        # jump is an anecdote, a note and not a warning (evidence.py); a jump that lasts
        # ``early_window`` records or more is its own evidence (a level shift, not noise)
        judged = [self._judged_on(e) for e in eps]
        finding = self._finding(
            facts, severity, eps, unrecovered, what, explanation, data, all_data
        )
        return [too_few(finding, max(judged), self.early_window, f"{what} values before the spike")]

    def _judged_on(self, episode: dict[str, Any]) -> int:
        """How many values an episode's verdict rests on (see ``finish``)."""
        n = episode.get("judged_on")
        if n is None:
            return self.warmup  # the full baseline
        if episode.get("evident"):
            return max(n, self.early_window)
        return max(n, self.early_window) if len(episode["steps"]) >= self.early_window else n

    def _finding(
        self,
        facts: ConfigFacts,
        severity: Literal["info", "warning", "error"],
        eps: list[dict[str, Any]],
        unrecovered: list[dict[str, Any]],
        what: str,
        explanation: str,
        data: list[dict[str, Any]],
        all_data: bool,
    ) -> Finding:
        steps = sorted({s for e in eps for s in e["steps"]})
        epochs = sorted({i for e in eps if (i := epoch_index(e["epoch"])) is not None})
        worst = max(eps, key=lambda e: e["peak"] / max(abs(e["baseline"]), 1e-12))
        return Finding(
            id=self.id,
            severity=severity,
            title=f"{len(eps)} {what} spike(s), {len(unrecovered)} not recovered",
            explanation=explanation,
            steps=steps,
            epochs=epochs,
            evidence={
                "episodes": len(eps),
                "unrecovered": len(unrecovered),
                "worst_step": worst["peak_step"],
                "worst_peak": worst["peak"],
                "worst_baseline": worst["baseline"],
                "worst_ratio": round(worst["peak"] / max(abs(worst["baseline"]), 1e-12), 3),
                "bad_batch_steps": [e["start"] for e in data],
                "recovery_steps": [
                    None if e["recovered_at"] is None else e["recovered_at"] - e["start"]
                    for e in eps
                ],
            },
            fixes=(
                bad_batch_fixes(facts, [e["start"] for e in data], all(e["skipped"] for e in data))
                if all_data
                else spike_fixes(facts, self.max_lr or None, self._run_steps())
            ),
            source="log",
        )

    def _run_steps(self) -> float | None:
        """The run's length in steps as far as the log shows (its last step), for bounds such as
        "a warm-up of at most a fifth of the run"."""
        last = self.last_step
        if isinstance(last, (int, float)) and not isinstance(last, bool) and last > 0:
            return float(last) + 1
        return float(self.n_seen) or None

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            **self.base.state_dict(),
            "early": list(self._early),
            "episodes": [dict(e, steps=list(e["steps"])) for e in self.episodes],
            "n_seen": self.n_seen,
            "last_step": self.last_step,
            "last_epoch": self.last_epoch,
            "max_lr": self.max_lr,
            "onset": self.onset.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.base.load_state_dict(state)
        self._early = deque((float(v) for v in state.get("early", [])), maxlen=self.early_window)
        self.episodes = [dict(e, steps=list(e["steps"])) for e in state["episodes"]]
        self.n_seen = int(state["n_seen"])
        self.last_step = state.get("last_step")
        self.last_epoch = state.get("last_epoch")
        self.max_lr = float(state.get("max_lr", 0.0))
        self.onset.load_state_dict(state.get("onset", {}))
