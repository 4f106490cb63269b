"""The guard: the one place where backward → unscale → norm → checks → clip → step happens.

Hook timing, for a hand-written loop (``run_dir``: the guard writes the run log the doctor
reads, every step and event, on rank 0)::

    guard = Guard(model, optimizer, scheduler=scheduler, run_dir="runs/x")
    for batch in guard.batches(loader):            # drops the batches a rollback asked to skip
        loss = compute_loss(model, batch)
        outcome = guard.step(loss)                 # == guard.backward(loss); guard.optimizer_step()

with gradient accumulation::

    for i, batch in enumerate(guard.batches(loader)):
        guard.backward(compute_loss(model, batch) / accum)
        if (i + 1) % accum == 0:
            guard.optimizer_step()

Each optimizer step: unscale (GradScaler) → global grad norm in one fused pass (all-reduced for
sharded grads) → non-finite / spike checks on the loss and norm (the very detector objects the
doctor replays logs with) → the policy ladder (apply, warn, skip, roll back, back off the LR,
abort; see ``policy.py``) → clip → inner step with the LR back-off factor → scheduler (only when
applied) → zero_grad. Skips never touch the optimizer: its state (moments, step counts) and the
parameters stay bitwise unchanged.

Frameworks that own backward and the scaler (HF, Lightning, Accelerate) use ``guard.optimizer``,
a :class:`GuardedOptimizer` whose ``step()`` runs the same checks, clipping and policy. There the
grads are already unscaled when ``step()`` runs (``GradScaler.step`` unscales first), the guard
never steps a scheduler or the scaler, and a rollback restores model + optimizer (+ scaler when
given) and then skips the next M *updates* (the framework owns the data loader and step counter).

Two paths share everything but the step itself: ``immediate.py`` (read, then decide and act) and
``sync_free.py`` (act on the device, read and review later). Both take their verdict from
``verdict.py`` (detectors, then the ladder) and record it through ``reporting.py``; rollback
lives in ``rollback.py``.
Host syncs: on the immediate path, one read per micro-batch (the loss, before its backward) and
one per optimizer step (the norm; packed with loss and scale under AMP or DDP), commented where
they happen. The sync-free path (``GuardConfig.sync_free``) decides on the device and reads once
every ``read_every`` steps; its outcomes are filled in at that read (``flush``, ``drain``).
Distributed: the loss flags are reduced as int32 MAX and the loss as a finite SUM, so every rank sees the same numbers and takes the same decision. Under DDP a rank
with a non-finite loss still runs backward (its NaN grads reach every rank through the
all-reduce; skipping the backward would hang the others).
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar

import torch

from stabletrain import measure
from stabletrain.detectors.amp import LossScaleDetector
from stabletrain.detectors.clipping import ClippingDetector
from stabletrain.detectors.divergence import DivergenceDetector, Ema
from stabletrain.detectors.nonfinite import NonFiniteDetector
from stabletrain.detectors.spikes import SpikeDetector
from stabletrain.errors import ConfigError, TrainingAborted
from stabletrain.guard import clipping, immediate, rollback, sync_free
from stabletrain.guard.betas import swap_betas, swapped, unbounded_betas
from stabletrain.guard.buffers import BufferKeeper
from stabletrain.guard.ceiling import ClipCeiling
from stabletrain.guard.config import GuardConfig
from stabletrain.guard.evaluation import EvalWatch
from stabletrain.guard.health import Health
from stabletrain.guard.init_checks import (
    init_gain,
    init_scale_finding,
    nonfinite_tensors,
    repair_init,
)
from stabletrain.guard.integrity import WeightCheck
from stabletrain.guard.losses import LossReader
from stabletrain.guard.optimizer import GuardedOptimizer
from stabletrain.guard.outcome import Outcomes, StepOutcome
from stabletrain.guard.policy import Policy
from stabletrain.guard.precision import Precision, dtype_name
from stabletrain.guard.ranklog import once_per_job, rank, rank_extra
from stabletrain.guard.readout import is_distributed
from stabletrain.guard.recovery import Recovery
from stabletrain.guard.snapshots import Snapshot, SnapshotStore
from stabletrain.guard.startup import StartupWatch
from stabletrain.logs.runlog import RunLog
from stabletrain.records import ConfigFacts, Finding, json_float

log = once_per_job(logging.getLogger(__name__))
T = TypeVar("T")
#: the span of the recent-loss EMA the divergence rule checks before acting
RECENT_SPAN = 10


class Guard:
    """Protects every optimizer step of ``model`` trained by ``optimizer``."""

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        scaler: torch.amp.GradScaler | None = None,
        scheduler: Any = None,
        config: GuardConfig | None = None,
        *,
        run_log: RunLog | None = None,
        run_dir: str | os.PathLike[str] | None = None,
        facts: ConfigFacts | None = None,
    ) -> None:
        """``run_dir``: the guard writes a run log there itself (every step and every event, on
        rank 0), for ``stabletrain doctor run_dir``. ``run_log``: events only, into a RunLog
        whose steps the caller writes (the trainer, the adapters)."""
        _check_owner(model, optimizer)
        _check_scheduler(scheduler)
        if run_dir is not None and run_log is not None:
            raise ConfigError("Guard(run_log=..., run_dir=...): pass one of them, not both")
        #: True when the guard writes the step records too (``run_dir``)
        self.logs_steps = run_dir is not None
        if run_dir is not None:
            run_log = RunLog(run_dir, enabled=rank() == 0, tensorboard=False,
                             meta={"source": "stabletrain.Guard",
                                   **_loop_facts(optimizer, config or GuardConfig())})  # fmt: skip
        self.model = model
        self.inner_optimizer = optimizer
        self.scaler = scaler
        self.scheduler = scheduler
        self.config = cfg = config or GuardConfig()
        self.run_log = run_log
        #: the run's config facts, so abort messages name the user's own keys
        self.facts = facts or ConfigFacts()
        self.step_count = 0
        self.total_skipped = 0
        self.batches_seen = 0
        self.dropped_batches: list[int] = []
        self.findings: list[Finding] = []
        self.last_outcome: StepOutcome | None = None
        self.loss_spikes = SpikeDetector(
            "loss", z_threshold=cfg.spike_z, window=cfg.spike_window, warmup=cfg.spike_warmup
        )
        self.grad_spikes = SpikeDetector(
            "grad_norm", z_threshold=cfg.spike_z, window=cfg.spike_window, warmup=cfg.spike_warmup
        )
        self.nonfinite = NonFiniteDetector()
        #: the train loss against the run's own best (damage: roll back to the best snapshot)
        self.divergence = DivergenceDetector(
            span=cfg.divergence_span, fraction=cfg.divergence_fraction or 0.5
        )
        #: the recent clean train losses (a short EMA): a divergence acts only while they are
        #: still high (a climb that has already come back, as after a burst of bad labels, is
        #: no damage to undo now)
        self.recent_loss = Ema(RECENT_SPAN)
        #: start-up protection: a loss above its first value early on → rollback + LR ramp
        self.startup = StartupWatch(cfg.startup_steps, cfg.startup_rise)
        #: the eval rule (``observe_eval``)
        self.evals = EvalWatch(cfg)
        #: the autocast dtype when the forward runs under ``guard.autocast()``
        self.precision = Precision(cfg.precision_patience)
        self.loss_scale = LossScaleDetector(collapse_scale=cfg.scale_collapse)
        #: clip-saturated / clip-near-threshold over the run (the doctor's detector, fed live)
        self.clipping = ClippingDetector()
        self.clipper: clipping.ZScoreClipper | clipping.PercentileClipper | None = None
        if cfg.clip == "zscore":
            self.clipper = clipping.ZScoreClipper(
                cfg.zscore_threshold, cfg.zscore_alpha, cfg.clip_warmup
            )
        elif cfg.clip == "percentile":
            self.clipper = clipping.PercentileClipper(
                cfg.percentile, cfg.percentile_window, cfg.clip_warmup
            )
        #: the fixed clip's max norm, raised on evidence (``ceiling.py``)
        self.ceiling = ClipCeiling(
            cfg.max_norm if cfg.clip == "norm" else None,
            cfg.clip_raise_window if cfg.snapshot_every > 0 else 0,
        )
        self.policy = Policy(cfg)
        #: snapshots, the rollback target and the skip debt
        self.recovery = Recovery(cfg)
        self.health = Health()
        #: BatchNorm running statistics as they were after the last good forward
        self.buffers = BufferKeeper(model)
        #: post-update integrity: the weights after an applied update (see ``integrity.py``)
        self.weights = WeightCheck(cfg.weight_growth_limit)
        self._backward_ran = False  # a (scaled) backward ran since the last optimizer step
        #: inside ``batches()``: a rollback's skips drop batches there, not updates
        self.in_batches = False
        #: this step's micro-batch losses
        self.losses = LossReader()
        #: False: verify every weight is finite before the next step (start, load, rollback)
        self.weights_checked = False
        self._init_checked = False
        #: layers to rescale after the first step (``init_repair_gain``), found at the check
        self._init_repair: list[Any] = []
        self.last_clean_lr: float | None = None  # the scheduled LR of the last applied step
        self._wrapper: GuardedOptimizer | None = None
        self._params: list[torch.nn.Parameter] | None = None
        self._params_key: tuple[int, ...] = ()
        #: sync-free path: None until the first step decides (see ``sync_free.py``)
        self.sync_free: bool | None = None
        #: the sync-free path's queue of unread steps, its limits and its scheduler debt
        self.queue = sync_free.DeviceQueue()
        #: resolved outcomes for ``drain`` and the last LR
        self.outcomes = Outcomes()
        #: how many times the guard read device values on the host (tests, benchmarks)
        self.host_reads = 0
        #: updates applied so far, and (updates, steps) at the last evaluation: an evaluation
        #: after mostly skipped steps re-measures the same weights (no new evidence)
        self.applied_updates = 0
        self._at_last_eval: tuple[int, int] | None = None
        #: the step at which the data's loss level last changed (a long burst of spikes
        #: accepted): damage that began after it is the data's, not the LR's
        self.data_shift_step: int | None = None

    # -- public API -----------------------------------------------------------------------------
    @property
    def optimizer(self) -> GuardedOptimizer:
        """An optimizer wrapper whose ``step()`` runs the guard's checks (for HF/Lightning/Accelerate)."""
        if self._wrapper is None:
            self._wrapper = GuardedOptimizer(self)
        return self._wrapper

    @property
    def snapshots(self) -> SnapshotStore:
        """The kept snapshots (owned by ``recovery``)."""
        return self.recovery.store

    @property
    def _candidate(self) -> Snapshot | None:
        """The snapshot waiting to be confirmed (read-only; owned by ``recovery``)."""
        return self.recovery.candidate

    @property
    def _limits(self) -> tuple[float, float]:
        """The sync-free path's current spike limits (read-only; owned by ``queue``)."""
        return self.queue.limits

    @property
    def consecutive_bad(self) -> int:
        return self.policy.consecutive_bad

    def batches(self, loader: Iterable[T]) -> Iterator[T]:
        """Yield the batches of ``loader``, dropping (and logging) those a rollback asked to skip."""
        self.in_batches = True
        try:
            for batch in loader:
                index = self.batches_seen
                self.batches_seen += 1
                if self.recovery.pay():
                    self.dropped_batches.append(index)
                    self.event(
                        "skip", f"batch {index} dropped after a rollback", "info",
                        {"batch": index, "reason": "rollback"},
                    )  # fmt: skip
                    continue
                yield batch
        finally:
            self.in_batches = False

    def check_model(self) -> list[Finding]:
        """Verify every parameter and buffer is finite (raise TrainingAborted if not); warn on
        init scales known to explode (first call only). Returns the warnings found."""
        self.weights_checked = True
        bad = nonfinite_tensors(self.model)
        if bad:
            finding = Finding(
                id="nonfinite-weights",
                severity="error",
                title=f"{len(bad)} parameter/buffer tensors hold NaN/inf",
                explanation="Non-finite weights make every loss NaN. Names: " + ", ".join(bad[:10]),
                source="guard",
            )
            self.findings.append(finding)
            raise TrainingAborted(
                f"model has non-finite values in {', '.join(bad[:5])}: fix the initialisation "
                "or the checkpoint before training",
                [finding],
                step=self.step_count,
            )
        if self._init_checked:
            return []
        self._init_checked = True
        self._check_betas()
        if self.config.init_repair_gain is not None:
            gain, over = init_gain(self.model)
            if gain >= self.config.init_repair_gain:
                self._init_repair = over  # after this step: its forward already used them
        init = init_scale_finding(self.model, self.config.init_std_ratio)
        if init is None:
            return []
        self.findings.append(init)
        self.event("init-warning", init.title + ": " + init.explanation, "warning",
                    {"layers": init.evidence["layers"]})  # fmt: skip
        return [init]

    def _check_betas(self) -> None:
        """Adam betas outside Adam's bound: swapped back when given in the wrong order (before
        the first update, ``repair_betas``), else reported; logged ``optimizer-betas``."""
        found = unbounded_betas(self.inner_optimizer)
        if not found:
            return
        pairs = ", ".join(f"group {i}: ({b1:g}, {b2:g})" for i, b1, b2 in found)
        fix = swapped(found)
        if fix and self.config.repair_betas:
            swap_betas(self.inner_optimizer, found)
            what = (
                "swapped back to (beta1, beta2) = "
                + ", ".join(f"({b2:g}, {b1:g})" for _, b1, b2 in found)
                + f" before the first update. Fix the config: betas=({found[0][2]:g}, {found[0][1]:g})"
            )
        else:
            what = "left as given (repair_betas is off, or the pair is not simply swapped)"
        self.event(
            "optimizer-betas",
            f"{type(self.inner_optimizer).__name__} betas {pairs} break Adam's bound "
            "beta1**2 < sqrt(beta2): the first moment outlives the second and the update has no "
            f"bound (the pair looks given in the wrong order); {what}",
            "warning",
            {"groups": [list(f) for f in found], "swapped": fix and self.config.repair_betas},
        )

    def record_loss(self, loss: torch.Tensor | float) -> None:
        """Tell the guard this step's loss when the framework runs backward (GuardedOptimizer path)."""
        self._record_loss(loss, None)

    def _record_loss(self, loss: torch.Tensor | float, host: float | None) -> None:
        """Accumulate this micro-batch's loss; ``host``: its value when already read."""
        self.losses.add(loss, host)

    def backward(self, loss: torch.Tensor) -> bool:
        """Backward of ``loss`` (scaled when a GradScaler is used). False (no backward) if non-finite.

        The sync-free path always runs the backward (knowing the loss is NaN needs a host read);
        the NaN grads it makes are never applied.
        """
        if not isinstance(loss, torch.Tensor):
            raise ConfigError(
                f"guard.step()/guard.backward() need the loss tensor with its graph, got "
                f"{type(loss).__name__} {loss!r}: pass the loss before .item() or float()"
            )
        if not loss.requires_grad:
            raise ConfigError(
                "guard.step()/guard.backward(): the loss does not require grad (computed under "
                "torch.no_grad(), or detached): pass the training loss itself"
            )
        cfg = self.config
        host: float | None = None
        if cfg.enabled and cfg.skip_nonfinite and not sync_free.chosen(self):
            # host sync: one scalar per micro-batch, to avoid a useless (and NaN-spreading)
            # backward; the step then reuses the value
            self.host_reads += 1
            host = loss.detach().item()
            if not math.isfinite(host):
                self.buffers.restore()  # the forward wrote its NaN into the BN statistics
        if cfg.enabled and cfg.check_init and not self.weights_checked:
            self.check_model()
        self._record_loss(loss, host)
        if host is not None and not math.isfinite(host):
            self.losses.mark_nonfinite()
            if not is_distributed():
                return False
            # DDP: every rank must join the gradient all-reduce; the NaN grads make all skip.
            # Only this rank knows the bad batch was its own: said once, by this rank.
            log.warning(
                "rank %d: non-finite loss (%s) in this rank's batch at step %d; every rank "
                "skips the step", rank(), host, self.step_count, extra=rank_extra(),
            )  # fmt: skip
        scaled = self.scaler.scale(loss) if self.scaler is not None else loss
        scaled.backward()
        self._backward_ran = True
        return not self.losses.nonfinite

    def optimizer_step(self) -> StepOutcome:
        """Unscale, measure, decide, clip, step (or skip), advance the scheduler, zero grads.

        On the sync-free path the outcome is *pending* (``outcome.resolved`` is False) until the
        next read fills it in (every ``read_every`` steps, or ``flush()``).
        """
        outcome = self.check_and_step(owns_loop=True)
        self.inner_optimizer.zero_grad(set_to_none=True)
        self._backward_ran = False
        return outcome

    def _repair_init(self, outcome: StepOutcome) -> None:
        """Rescale the layers whose init compounds to an exploding gain (found by
        ``check_model``) to the Kaiming std, after the first step; log it."""
        over, self._init_repair = self._init_repair, []
        gain = 1.0
        for _, _, ratio in over:
            gain *= ratio
        changed = repair_init(over)
        self.recovery.reset_initial(lambda: rollback.capture(self))
        layers = ", ".join(f"{c['layer']} {c['ratio']}x" for c in changed[:8])
        first = f"{outcome.loss:.4g}" if outcome.loss is not None else "not read"
        self.event(
            "init-repair",
            f"init repaired after step {outcome.step}: {len(changed)} layer(s) without "
            f"normalisation had a weight std above Kaiming's ({layers}), compounding to "
            f"{gain:.3g}x at the output (first loss {first}); rescaled to the "
            "Kaiming std sqrt(2/fan_in). Fix the init in the code: "
            "nn.init.kaiming_normal_(layer.weight, nonlinearity='relu')",
            "warning",
            {"layers": changed, "gain": gain, "loss": outcome.loss},
        )

    def step(self, loss: torch.Tensor) -> StepOutcome:
        """The whole step for one batch: ``backward(loss)`` then ``optimizer_step()``."""
        self.backward(loss)
        return self.optimizer_step()

    def flush(self) -> list[StepOutcome]:
        """Sync-free path: read the queued steps now (one host sync), review and act on them.
        Returns the outcomes it resolved (none on the immediate path: it has nothing queued)."""
        return sync_free.flush(self)

    def autocast(
        self, dtype: torch.dtype | None = None, device_type: str | None = None
    ) -> torch.autocast:
        """The autocast context for the forward, owned by the guard: ``dtype`` (fp16 by
        default) until the evidence says fp16 cannot hold the run, then bf16 (or fp32)::

            with guard.autocast():
                loss = loss_fn(model(x), y)
            guard.step(loss)
        """
        if device_type is None:
            params = self.params()
            device_type = params[0].device.type if params else "cpu"
        return self.precision.autocast(device_type, dtype)

    def fall_back_precision(self, evidence: str) -> None:
        """Switch the guard's autocast to the next wider dtype (logged old → new) and reset the
        GradScaler's scale to 1: bf16 and fp32 need no scaling."""
        old, new = self.precision.fall_back()
        if self.scaler is not None and self.scaler.is_enabled():
            self.scaler.load_state_dict({**self.scaler.state_dict(), "scale": 1.0})
        self.event(
            "precision-fallback",
            f"autocast {dtype_name(old)} → {dtype_name(new)} after {evidence} (fp16's range "
            "ends at 65504)",
            "warning",
            {"old": dtype_name(old), "new": dtype_name(new), "evidence": evidence},
        )

    def observe_eval(self, value: float, *, mode: str = "min") -> str | None:
        """Tell the guard an evaluation's result (``mode``: "min" for a loss, "max" for an
        accuracy). Sustained worsening → roll back to the best-eval weights and lower the LR; a
        plateau → lower the LR (see ``evaluation.py``). Returns the action taken, if any
        ("improved", "rollback", "plateau"). Call it after each evaluation, between steps."""
        if isinstance(value, torch.Tensor):
            value = float(value.detach())  # host sync: once per evaluation
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"observe_eval(value): a number, got {type(value).__name__}")
        if not self.config.enabled:
            return None
        self.flush()
        before, self._at_last_eval = self._at_last_eval, (self.applied_updates, self.step_count)
        if before is not None and self.step_count - before[1] > 0:
            applied = self.applied_updates - before[0]
            if 2 * applied < self.step_count - before[1]:
                # most steps since the last evaluation were skipped: the weights barely
                # changed, so this evaluation is no new evidence of a plateau or a decline
                return None
        verdict = self.evals.observe(
            float(value), mode, train_loss=self.divergence.smoothed, step=self.step_count
        )
        if verdict.action == "improved":
            if self.config.snapshot_every > 0:
                # host sync: a copy of the weights, once per improving evaluation
                best = rollback.capture(self)
                # the LR the steps up to this evaluation ran at (the schedule may already have
                # moved on: a jump at this very step)
                last = self.last_outcome
                best.guard["ran_lr"] = last.lr if last is not None else None
                self.snapshots.best_eval = best
            return verdict.action
        if verdict.action is None:
            return None
        snap = self.snapshots.best_eval if verdict.action == "rollback" else None
        stable: float | None = None
        if snap is not None:
            rollback.restore(self, snap, scheduler=False)
            self.rebase_trend()
            # the LR the best evaluation was reached at: a schedule that rose since (a jump,
            # a warm-up overshoot) is capped against it, not against its own high value
            stable = snap.guard.get("ran_lr") or snap.guard.get("sched_lr")
            shift = self.data_shift_step
            if shift is not None and shift >= snap.step:
                # the decline began after the data's loss level changed (a burst of bad
                # batches accepted): the weights go back, the LR is not to blame
                self.event(
                    "rollback",
                    f"eval {value:.4g}: {verdict.reason}; rolled back to the weights of the "
                    f"best evaluation (step {snap.step}); the LR is kept: the decline began "
                    f"after the data's loss level changed at step {shift}",
                    "warning",
                    {"to_step": snap.step, "eval": value, "evidence": "eval-worse",
                     "skip_batches": 0, "data_shift_step": shift},
                )  # fmt: skip
                self.data_shift_step = None
                return verdict.action
            self.event(
                "rollback",
                f"eval {value:.4g}: {verdict.reason}; rolled back to the weights of the best "
                f"evaluation (step {snap.step})",
                "warning",
                {"to_step": snap.step, "eval": value, "evidence": "eval-worse",
                 "skip_batches": 0},
            )  # fmt: skip
        self._lower_lr_for_eval(verdict.reason, stable)
        return verdict.action if snap is not None or verdict.action == "plateau" else "plateau"

    def _lower_lr_for_eval(self, reason: str, stable: float | None = None) -> None:
        """Cap the LR at ``eval_lr_factor`` x the LR the last step ran at (or x ``stable``, the
        best evaluation's LR, when lower); log old → new. Never raises it."""
        scheduled = self.scheduled_lr()
        current = scheduled * self.policy.lr_factor(scheduled)
        base = current if stable is None else min(current, float(stable))
        self.policy.cap_lr(base, self.config.eval_lr_factor)
        new = scheduled * self.policy.lr_factor(scheduled)
        self.event(
            "lr-reduced",
            f"learning rate {current:.4g} → {new:.4g} ({reason})",
            "warning",
            {"old": current, "new": new, "evidence": "eval"},
        )
        self.outcomes.last_lr = new

    def drain(self) -> list[StepOutcome]:
        """The outcomes resolved since the last call, in step order, without reading the device
        (the immediate path resolves each step at once; the sync-free path at its reads). Keeps
        the last 4096 if never called."""
        return self.outcomes.drain()

    def scheduled_lr(self) -> float:
        """Param group 0's LR as the schedule set it (the guard's back-off applies around steps)."""
        lr = self.inner_optimizer.param_groups[0]["lr"]
        # a tensor LR (fused/capturable optimizers) on the CPU reads without a device sync
        return float(lr.item() if isinstance(lr, torch.Tensor) else lr)

    # -- the step -------------------------------------------------------------------------------
    def params(self) -> list[torch.nn.Parameter]:
        """The optimizer's parameters, rebuilt only when its param groups change."""
        groups = self.inner_optimizer.param_groups
        key = (len(groups), *(len(g["params"]) for g in groups))
        if self._params is None or key != self._params_key:
            self._params = [p for g in groups for p in g["params"]]
            self._params_key = key
        return self._params

    def check_and_step(self, *, owns_loop: bool) -> StepOutcome:
        """``owns_loop``: Guard.optimizer_step (unscale + scaler + scheduler are ours) vs the
        GuardedOptimizer path (the framework unscaled and owns scaler and scheduler)."""
        cfg, opt = self.config, self.inner_optimizer
        if cfg.enabled and cfg.check_init and not self.weights_checked:
            self.check_model()
        if cfg.enabled:
            rollback.initial_snapshot(self)
        scaler_on = self.scaler is not None and self.scaler.is_enabled()
        # no backward since the last step (a non-finite loss skipped it): the scaler never
        # scaled anything, so there is nothing to unscale (and no scale yet at step 0)
        unscaled = scaler_on and owns_loop and not cfg.grads_unscaled and self._backward_ran
        if unscaled:
            self.scaler.unscale_(opt)  # type: ignore[union-attr]
        params = self.params()
        grads = measure.grads_of(params)
        norm_t = measure.total_grad_norm(grads, norm_type=cfg.norm_type)
        if cfg.shard_grads:
            norm_t = measure.reduce_norm_across_ranks(norm_t, norm_type=cfg.norm_type)
        if sync_free.chosen(self):
            outcome = sync_free.device_step(self, grads, params, norm_t, owns_loop, scaler_on)
        else:
            outcome = immediate.immediate_step(
                self, grads, params, norm_t, owns_loop, scaler_on,
                unscaled=unscaled or not owns_loop,
            )  # fmt: skip
        if self._init_repair:
            # after the first step, on both paths (guard.step and guard.optimizer): its
            # forward already ran on the old weights
            self._repair_init(outcome)
        return outcome

    def rebase_trend(self) -> None:
        """After a rollback: the loss trends restart from the restored weights' losses."""
        self.divergence.rebase()
        self.recent_loss = Ema(RECENT_SPAN)

    def rebase_loss_spikes(self) -> None:
        """The loss level changed for good (``Decision.rebase``): a fresh spike baseline that
        learns the new level (the episodes found so far are kept for ``finish``)."""
        cfg, old = self.config, self.loss_spikes
        self.loss_spikes = SpikeDetector(
            "loss", z_threshold=cfg.spike_z, window=cfg.spike_window, warmup=cfg.spike_warmup
        )
        self.loss_spikes.episodes = old.episodes

    def observe_clean(self, norm_v: float, clip_coef: float | None, scheduled_lr: float) -> None:
        """A clean applied step: its LR is stable, its post-clip norm feeds adaptive clipping."""
        self.last_clean_lr = scheduled_lr
        if self.clipper is not None:
            # warming up: the norm before the fixed clip (the statistics must learn the run's
            # norm level; fed the clip value they would clip every later step to it). After:
            # the post-clip norm, as ZClip does, so an outlier does not inflate them.
            warming = self.clipper.warming_up
            self.clipper.observe(norm_v if warming else norm_v * (clip_coef or 1.0))

    # -- after the step ---------------------------------------------------------------------
    def event(
        self,
        event: str,
        message: str,
        severity: str,
        data: dict[str, Any] | None = None,
        *,
        level: int | None = None,
        step: int | None = None,
    ) -> None:
        """Record what the guard did: to ``logging`` (at ``level``, by default INFO for
        "info" and WARNING otherwise) and to the run log, at ``step`` (default: the current
        step count)."""
        if level is None:
            level = logging.INFO if severity == "info" else logging.WARNING
        log.log(level, message)
        if self.run_log is not None:
            clean = {k: json_float(v) for k, v in (data or {}).items()}
            at = self.step_count if step is None else step
            self.run_log.log_event(at, event, message, severity=severity, data=clean)

    # -- run level ----------------------------------------------------------------------------
    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        """The run-level findings of the guard's own detectors (spikes, non-finite, AMP)."""
        facts = facts or self.facts
        self.flush()
        out: list[Finding] = []
        dets = (self.nonfinite, self.loss_scale, self.loss_spikes, self.grad_spikes,
                self.clipping, self.divergence)  # fmt: skip
        for det in dets:
            for f in det.finish(facts):
                f.source = "guard"
                out.append(f)
        return out

    def close(self) -> None:
        """Read the queued steps (sync-free path) and close the run log the guard opened
        (``run_dir``; each line is already on disk as written)."""
        self.flush()
        if self.logs_steps and self.run_log is not None:
            self.run_log.close()
            self.run_log, self.logs_steps = None, False

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- state ----------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume the guard exactly (snapshots included, on CPU).
        Sync-free path: reads the queued steps first."""
        self.flush()
        return {
            "step_count": self.step_count,
            "consecutive_bad": self.policy.consecutive_bad,
            "total_skipped": self.total_skipped,
            "batches_seen": self.batches_seen,
            "dropped_batches": list(self.dropped_batches),
            **self.recovery.state_dict(),
            "last_lr": self.outcomes.last_lr,
            "last_clean_lr": self.last_clean_lr,
            "policy": self.policy.state_dict(),
            "clipper": self.clipper.state_dict() if self.clipper is not None else None,
            "ceiling": self.ceiling.state_dict(),
            "detectors": {
                "loss_spikes": self.loss_spikes.state_dict(),
                "grad_spikes": self.grad_spikes.state_dict(),
                "nonfinite": self.nonfinite.state_dict(),
                "loss_scale": self.loss_scale.state_dict(),
                "clipping": self.clipping.state_dict(),
                "divergence": self.divergence.state_dict(),
            },
            "evals": self.evals.state_dict(),
            "precision": self.precision.state_dict(),
            "health": self.health.state_dict(),
            "weights": self.weights.state_dict(),
            "recent_loss": self.recent_loss.state_dict(),
            "startup": self.startup.state_dict(),
            "applied_updates": self.applied_updates,
            "data_shift_step": self.data_shift_step,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.step_count = int(state["step_count"])
        self.total_skipped = int(state["total_skipped"])
        if "policy" in state:
            self.policy.load_state_dict(state["policy"])
        else:  # a state from the minimal guard
            self.policy.consecutive_bad = int(state.get("consecutive_bad", 0))
        self.batches_seen = int(state.get("batches_seen", 0))
        self.dropped_batches = [int(b) for b in state.get("dropped_batches", [])]
        self.recovery.load_state_dict(state)
        self.outcomes.last_lr = state.get("last_lr")
        self.last_clean_lr = state.get("last_clean_lr")
        if self.clipper is not None and state.get("clipper") is not None:
            self.clipper.load_state_dict(state["clipper"])
        if "ceiling" in state:
            self.ceiling.load_state_dict(state["ceiling"])
        dets = state.get("detectors", {})
        if "evals" in state:
            self.evals.load_state_dict(state["evals"])
        if "precision" in state:
            self.precision.load_state_dict(state["precision"])
        for name in ("loss_spikes", "grad_spikes", "nonfinite", "loss_scale", "clipping",
                     "divergence"):  # fmt: skip
            if name in dets:
                getattr(self, name).load_state_dict(dets[name])
        if "health" in state:
            self.health.load_state_dict(state["health"])
        if "weights" in state:
            self.weights.load_state_dict(state["weights"])
        self.applied_updates = int(state.get("applied_updates", 0))
        self.data_shift_step = state.get("data_shift_step")
        if "startup" in state:
            self.startup.load_state_dict(state["startup"])
        if "recent_loss" in state:
            self.recent_loss.load_state_dict(state["recent_loss"])
        self.buffers.reset()  # the model was (re)loaded beside this state
        self.weights_checked = False  # verify the loaded weights are finite before the next step


def _loop_facts(optimizer: torch.optim.Optimizer, cfg: GuardConfig) -> dict[str, Any]:
    """What the run log records of the guarded loop, for the doctor (a bare guard's run dir has
    no config.yaml): the optimizer, its starting LR, the clip the guard applies."""
    facts: dict[str, Any] = {"optimizer": type(optimizer).__name__}
    lr = optimizer.param_groups[0].get("lr") if optimizer.param_groups else None
    if isinstance(lr, torch.Tensor) and lr.numel() == 1:
        lr = float(lr)
    if isinstance(lr, (int, float)) and not isinstance(lr, bool):
        facts["lr"] = float(lr)
    if cfg.enabled and cfg.clip not in ("none", "agc") and cfg.max_norm is not None:
        facts["max_grad_norm"] = float(cfg.max_norm)
    return facts


def _check_scheduler(scheduler: Any) -> None:
    """The guard steps ``scheduler`` after each applied optimizer step, with no argument; a
    scheduler that steps on a metric cannot be stepped that way."""
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        raise ConfigError(
            "Guard(scheduler=ReduceLROnPlateau(...)): the guard steps its scheduler after every "
            "optimizer step, and ReduceLROnPlateau steps on a metric. Keep stepping it yourself "
            "after each evaluation (scheduler.step(val_loss)) and do not pass it to the guard; "
            "also call guard.observe_eval(val_loss), so the guard can react to the eval sooner "
            "than the scheduler's patience and roll back to the best-eval weights"
        )


def _check_owner(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """A clear error when ``optimizer`` owns none of ``model``'s trainable parameters (the
    guard would measure grads it never steps, and report steps applied that change nothing)."""
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise ConfigError(
            f"Guard(model, optimizer): optimizer must be a torch.optim.Optimizer, got "
            f"{type(optimizer).__name__}"
        )
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    if not trainable:
        return
    owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
    if not trainable & owned:
        raise ConfigError(
            f"Guard(model, optimizer): the optimizer ({type(optimizer).__name__}) does not own "
            f"any of the model's {len(trainable)} trainable parameters; build it from this "
            "model's parameters, e.g. torch.optim.AdamW(model.parameters(), ...)"
        )
