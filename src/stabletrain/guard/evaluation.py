"""The eval rule: what the guard does with each evaluation (``Guard.observe_eval``).

A pure decision over the sequence of eval values, with its own state; the guard acts on it::

    better than the best by eval_min_delta x |best|          → "improved" (snapshot the weights)
    eval_worse_patience evals in a row worse than the best
      by more than the run's own eval noise (one more while
      the train loss still improves on its value at the best) → "rollback" to the best-eval
                                                                snapshot, LR lowered
                                                                (at most eval_max_rollbacks times;
                                                                then the LR is lowered only)
    eval_plateau_patience evals without a new best, and the
      train loss stalled too (no better than at the best)    → "plateau": LR capped at
                                                                eval_lr_factor x its current value
    otherwise                                                → None

*Worse* means above ``best + max(eval_worse_margin x |best|, eval_noise_k x noise)`` (the noise
term only while the train loss still improves on its value at the best evaluation: a run whose
train loss stalled too is judged by the margin alone, its eval jitter being the symptom), where
``noise`` is the run's own eval-to-eval jitter (a robust std from the second differences of the
last ``NOISE_WINDOW`` evaluations, so that a steady climb is not mistaken for noise): the val loss of a small healthy run (digits,
360 examples) wanders 10-70% between evaluations, and a rule with a fixed 5% margin rolled back
5 of 12 healthy runs in the fault matrix. A rise must clear the noise and be confirmed by the
next evaluation (``eval_worse_patience=2``); a rollback by one more while the train loss
disagrees (still better than at the best evaluation), the eval is less than double its best
and the run's eval noise is already measured (before that, the usual patience): a
moderate jump of the val loss that the train loss does not share is more often the jitter of a
small val set than damage (a batch-1 run and a 16-layer SGD run of the fault matrix, both
healthy, jumped 20-25% for two evaluations and came back; an overfitting run's climb, the case
the rule is for, lasts and is caught one evaluation later; an SGD run oscillating at a too-high
LR doubles its val loss and is judged at the usual patience).

A *plateau* of the eval alone is no evidence that the LR is too high: a healthy run whose val
loss stops improving while its train loss still falls is fitting (or overfitting) its data, and a
lower LR does not help it. The plateau rung acts only when the train loss (the guard's smoothed
loss, passed as ``train_loss``) has not improved by ``eval_min_delta`` since the best evaluation
either: the run as a whole has stalled, the case of a too-high LR that oscillates.

The plateau rung acts sooner than a patience-10 ``ReduceLROnPlateau`` (seed 000: the scheduler
reduced 14 epochs after the plateau began) and only ever lowers the LR. The rollback rung is what
early stopping with "restore best weights" does, without stopping: the run goes on from its best
evaluation at a lower LR. Seeds 000, 001 and 003 are the runs it was written from.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal

from stabletrain.errors import ConfigError
from stabletrain.guard.config import GuardConfig

EvalMode = Literal["min", "max"]
EvalAction = Literal["improved", "rollback", "plateau"]
#: evaluations the eval noise is measured over (the newest ones)
NOISE_WINDOW = 10
#: consecutive-eval changes needed before the noise is trusted (until then: the margin only)
NOISE_MIN = 3
#: a rise above the best by more than this x |best| is confirmed at the usual patience even
#: while the train loss improves (an oscillating too-high LR doubles its val loss; a healthy
#: run's val-set jitter in the fault matrix stays under +30%)
SEVERE = 1.0


@dataclass(slots=True)
class EvalVerdict:
    action: EvalAction | None
    reason: str = ""


class EvalWatch:
    """The best evaluation so far and the streaks measured against it."""

    def __init__(self, config: GuardConfig) -> None:
        self.config = config
        self.mode: EvalMode | None = None
        self.best: float | None = None
        self.best_index: int | None = None
        self.count = 0
        self.worse = 0  # evals in a row worse than the best by the margin
        self.stale = 0  # evals since the best (or since the last plateau action)
        self.rollbacks = 0
        #: the last evaluations (lower is better), for the noise
        self.recent: deque[float] = deque(maxlen=NOISE_WINDOW)
        #: the train loss when the best evaluation was seen (the plateau rung's evidence)
        self.train_at_best: float | None = None
        #: the guard's step count at the latest evaluation (None: not given)
        self.last_step: int | None = None

    @property
    def noise(self) -> float | None:
        """The run's own eval jitter as a standard deviation, from the second differences of
        the last ``NOISE_WINDOW`` finite evaluations (a steady trend, the climb of an overfitting
        run, cancels out of them; white noise of std s gives median |d2| = 0.6745 * sqrt(6) * s);
        None until ``NOISE_MIN`` second differences are known."""
        v = [x for x in self.recent if math.isfinite(x)]
        d2 = [abs(c - 2.0 * b + a) for a, b, c in zip(v, v[1:], v[2:], strict=False)]
        return statistics.median(d2) / 1.652 if len(d2) >= NOISE_MIN else None

    def observe(
        self,
        value: float,
        mode: str = "min",
        *,
        train_loss: float | None = None,
        step: int | None = None,
    ) -> EvalVerdict:
        """Judge one evaluation. ``mode``: "min" (a loss) or "max" (an accuracy).
        ``train_loss``: the run's smoothed train loss now (the plateau rung's evidence);
        ``step``: the guard's step count (how recent the evaluation is, for ``holds``)."""
        if mode not in ("min", "max"):
            raise ConfigError(f"observe_eval(mode={mode!r}): mode must be 'min' or 'max'")
        if self.mode is not None and mode != self.mode:
            raise ConfigError(
                f"observe_eval(mode={mode!r}) after evaluations with mode={self.mode!r}: one "
                "guard watches one metric"
            )
        self.mode = mode  # type: ignore[assignment]
        self.last_step = step
        index = self.count
        self.count += 1
        if not math.isfinite(value):
            # a non-finite eval is the worst there is (BN poisoned, weights broken)
            value = math.inf if mode == "min" else -math.inf
        sign = 1.0 if mode == "min" else -1.0
        v = sign * value  # lower is better from here on
        cfg = self.config
        noise = self.noise  # the jitter of the evaluations before this one
        self.recent.append(v)
        if self.best is None:
            self.best, self.best_index, self.train_at_best = v, index, train_loss
            return EvalVerdict("improved", "first evaluation")
        scale = abs(self.best) if self.best != 0 else 1.0
        if v < self.best - cfg.eval_min_delta * scale:
            old, self.best, self.best_index = self.best, v, index
            self.train_at_best = train_loss
            self.worse = self.stale = 0
            return EvalVerdict("improved", f"best {sign * old:.4g} → {value:.4g}")
        self.stale += 1
        # the noise excuses a rise only while the run is still learning: with the train loss
        # stalled since the best evaluation too, a rise beyond the margin is a decline (an LR
        # too high for the run oscillates: its eval jitter is the symptom, not noise)
        learning = train_loss is None or not self._train_stalled(train_loss)
        bar = max(cfg.eval_worse_margin * scale, cfg.eval_noise_k * (noise or 0.0) * learning)
        self.worse = self.worse + 1 if v > self.best + bar else 0
        shown = sign * self.best
        # a rise the train loss does not share needs one more evaluation to confirm a
        # rollback (it throws the progress since the best away), unless the eval is more than
        # double its best (no val set's jitter is that large). Only against a known noise
        # level: before it is measured the next evaluation may bring a noise bar that
        # excuses the whole streak (the demo config's first evaluations swing 0.09-0.6)
        severe = v - self.best > SEVERE * scale
        confirm = (
            self.rollbacks < cfg.eval_max_rollbacks and train_loss is not None and noise is not None
        )
        patience = cfg.eval_worse_patience + (confirm and learning and not severe)
        if self.worse >= patience:
            self.worse = self.stale = 0
            why = (
                f"{patience} evaluations in a row worse than the best "
                f"({shown:.4g}, evaluation {self.best_index}) by more than {bar:.3g} (the "
                f"larger of {cfg.eval_worse_margin:.0%} and {cfg.eval_noise_k:g}x the eval "
                f"noise {noise or 0.0:.3g}); the last {value:.4g}"
            )
            if self.rollbacks < cfg.eval_max_rollbacks:
                self.rollbacks += 1
                return EvalVerdict("rollback", why)
            # the rollbacks are spent: the evidence still lowers the LR
            return EvalVerdict("plateau", why + f" (eval_max_rollbacks={cfg.eval_max_rollbacks} "
                               "spent: LR lowered only)")  # fmt: skip
        if (
            cfg.eval_plateau_patience
            and self.stale >= cfg.eval_plateau_patience
            and self._train_stalled(train_loss)
        ):
            self.stale = 0
            train = (
                "" if train_loss is None else f", and the train loss stalled at {train_loss:.4g}"
            )
            return EvalVerdict(
                "plateau",
                f"no evaluation improved on the best ({shown:.4g}, evaluation "
                f"{self.best_index}) for {cfg.eval_plateau_patience} evaluations{train}",
            )
        return EvalVerdict(None)

    def holds(self, step: int, within: int) -> bool:
        """The model is not worse on the eval: an evaluation at most ``within`` steps before
        ``step`` was finite and not worse than the best by the rule's bar (no worse streak).
        A train loss climbing back from its best while this holds is the data's doing (its
        best came from an easier stretch of batches), not damage to the weights."""
        return (
            self.last_step is not None
            and step - self.last_step <= within
            and self.best is not None
            and bool(self.recent)
            and math.isfinite(self.recent[-1])
            and self.worse == 0
        )

    def forget_best(self) -> None:
        """The best evaluation (and the jitter measured with it) came from weights a start-up
        rollback judged damaged: forget them; the next evaluation is judged as the first
        (kept: the mode, the count, the rollbacks spent)."""
        self.best = self.best_index = self.train_at_best = None
        self.worse = self.stale = 0
        self.recent.clear()

    def _train_stalled(self, train_loss: float | None) -> bool:
        """The train loss has not improved by ``eval_min_delta`` since the best evaluation
        (unknown either side: no evidence against a plateau)."""
        ref = self.train_at_best
        if train_loss is None or ref is None or not math.isfinite(train_loss):
            return True
        return train_loss > ref - self.config.eval_min_delta * abs(ref)

    def state_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "best": self.best,
            "best_index": self.best_index,
            "count": self.count,
            "worse": self.worse,
            "stale": self.stale,
            "rollbacks": self.rollbacks,
            "recent": list(self.recent),
            "train_at_best": self.train_at_best,
            "last_step": self.last_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.mode = state["mode"]
        self.best, self.best_index = state["best"], state["best_index"]
        self.count, self.worse = int(state["count"]), int(state["worse"])
        self.stale, self.rollbacks = int(state["stale"]), int(state["rollbacks"])
        self.recent = deque((float(v) for v in state.get("recent", [])), maxlen=NOISE_WINDOW)
        self.train_at_best = state.get("train_at_best")
        self.last_step = state.get("last_step")
