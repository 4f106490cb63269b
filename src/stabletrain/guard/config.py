"""GuardConfig: every knob of the guard, typed and documented, with presets.

Presets (``GuardConfig.preset(name, **overrides)``):

- ``"default"``: skip non-finite steps, clip at ``max_norm``, skip a spiking step, roll back after
  3 bad steps within 25, back off the LR when spikes recur after a rollback, abort after 20 bad
  steps in a row or 5 rollbacks.
- ``"adaptive"``: the same ladder, but clipping only outliers of the run's own grad-norm
  statistics (z-score, ZClip-style) after a fixed clip at 1.0 while they warm up: no cost on a
  healthy run whose norms sit above 1, less protection for a run whose LR is only stable under
  a saturating clip (measured in docs/benchmarks-guard.md).
- ``"conservative"``: the same ladder with tighter thresholds: clip at 0.5, spikes at 5σ, roll
  back after 2 bad steps, snapshots every 25 steps, abort after 10 bad steps or 3 rollbacks.
- ``"off"``: the plain backward → unscale → step sequence, no checks.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

from stabletrain.errors import ConfigError

ClipMode = Literal["none", "norm", "zscore", "percentile", "agc"]
Preset = Literal["default", "adaptive", "conservative", "off"]
SpikeAction = Literal["warn", "skip", "rollback"]
SpikeMetric = Literal["loss", "grad_norm", "both"]
SyncFree = Literal["auto", "on", "off"]


@dataclass(kw_only=True)
class GuardConfig:
    """How the guard protects each optimizer step."""

    enabled: bool = True
    """False: the guard only runs the plain backward → unscale → clip → step sequence."""
    clip: ClipMode = "norm"
    """Clipping mode: none, fixed max-norm, adaptive z-score, percentile, or AGC."""
    max_norm: float | None = 1.0
    """Max global grad norm for ``clip="norm"`` (and the hard ceiling for adaptive modes).
    None: no fixed clipping (``clip="norm"`` then only measures)."""
    clip_raise_window: int = 0
    """``clip="norm"``: raise the fixed ``max_norm`` x2 when it engaged on nearly every one of
    the last N applied steps with norms at least twice it and nothing went wrong (never within
    ``startup_steps``); pinned back for good, with the weights of the raise put back, if
    trouble follows within N/2 steps (``guard/ceiling.py``, a logged ``clip-ceiling`` event).
    0 (the default): the clip stays at ``max_norm``: on by default it lowered single fault-matrix
    runs as often as it raised them (docs/benchmarks-clip.md); 20 is the measured opt-in
    setting for healthy runs whose norms sit well above the clip."""
    norm_type: float = 2.0
    """The p of the global gradient p-norm (2.0; ``inf`` for the max-abs norm)."""
    skip_nonfinite: bool = True
    """Skip the update (optimizer state untouched) when the loss or a gradient is NaN/inf."""
    max_consecutive_bad: int = 20
    """Abort with a diagnosis after this many consecutive skipped steps."""
    check_init: bool = True
    """Verify every parameter and buffer is finite before the first step (and after a load)."""
    init_std_ratio: float = 4.0
    """Warn when a layer's weight std exceeds this multiple of the Kaiming std for its fan-in."""
    init_repair_gain: float | None = 10.0
    """Init repair: in a net without normalisation, when the product over its linear/conv
    layers of (weight std / Kaiming std, where above 1) reaches this (activations that many
    times their healthy scale at the output), the guard rescales those layers to the Kaiming
    std after the first step (logged ``init-repair``, old ratio per layer). None: warn only."""
    repair_betas: bool = True
    """Adam-style ``betas`` outside Adam's bound (``beta1**2 >= sqrt(beta2)``) and simply given
    in the wrong order (``(0.999, 0.9)``) are swapped back before the first update (logged
    ``optimizer-betas``, the line to change). False: report only."""
    health_every: int = 100
    """Emit a health line (grad norm, clip rate, skips, scale, LR) every N steps; 0 = never."""
    weight_growth_limit: float = 10.0
    """Post-update integrity: on a bad step right after an applied update, weights whose total
    norm exceeds this multiple of the rollback snapshot's are damage (the update exploded them),
    as are non-finite weights: the update is undone and the LR lowered."""

    # -- adaptive clipping ------------------------------------------------------------------
    zscore_threshold: float = 2.5
    """``clip="zscore"``: clip norms above EMA mean + this many EMA stds (ZClip-style)."""
    zscore_alpha: float = 0.97
    """``clip="zscore"``: EMA decay of the norm's mean and variance."""
    clip_warmup: int = 25
    """Adaptive modes: clean steps observed before their statistics are used; until then only
    the fixed clip applies (``max_norm``, or ``warmup_max_norm`` when ``max_norm`` is None).
    The warm-up observes the norms *before* that fixed clip: the statistics learn the run's
    own norm level, not the clip value."""
    warmup_max_norm: float | None = None
    """Adaptive modes with ``max_norm=None``: the fixed clip while the statistics warm up. The
    first updates of a run are where a too-high LR explodes, before any baseline exists."""
    percentile: float = 90.0
    """``clip="percentile"``: clip at this percentile of recent norms (AutoClip)."""
    percentile_window: int = 500
    """``clip="percentile"``: how many recent norms the percentile is taken over."""
    agc_clip: float = 0.01
    """``clip="agc"``: max ratio ‖grad‖/‖weight‖ per unit (Brock et al. 2021, NFNets)."""

    # -- spikes and the policy ladder -------------------------------------------------------
    spike_metric: SpikeMetric = "loss"
    """Which series the ladder acts on: loss, grad norm, or both. Grad-norm spikes are always
    detected and reported, but by default not acted on: clipping already bounds their update, and
    grad norms legitimately climb early in training."""
    spike_z: float = 6.0
    """Robust z-score (median/MAD over a delayed window) above which a value is a spike."""
    spike_window: int = 100
    """How many recent clean values form the spike baseline."""
    spike_warmup: int = 20
    """Clean values needed before spikes are flagged (early training drops fast)."""
    spike_action: SpikeAction = "skip"
    """First rung for an isolated spike: warn only, skip the update, or roll back at once."""
    rollback_after: int = 3
    """Roll back when this many bad steps (spikes or non-finite) fall within ``escalate_window``."""
    escalate_window: int = 25
    """Steps over which bad steps are counted for escalation to rollback."""
    escalate_reset: int | None = None
    """This many clean steps in a row clear the bad-step count (an isolated burst of bad
    batches, already skipped, never leads to a rollback). None: ``escalate_window //
    (rollback_after - 1)`` (12 by default): bad steps recurring often enough to reach
    ``rollback_after`` within the window never have that many clean steps between them."""
    snapshot_every: int = 50
    """Keep an in-memory (CPU) snapshot every K clean steps; 0 disables rollback."""
    snapshot_confirm_steps: int = 10
    """A snapshot becomes a rollback target only after this many further clean steps (a copy
    taken right after a bad update carries it: the damage shows in the next losses)."""
    snapshots_kept: int = 2
    """How many snapshots are kept (a repeated rollback goes one further back)."""
    rollback_skip_batches: int = 10
    """Batches dropped after a rollback (the data that led to the spike is not replayed)."""
    max_rollbacks: int = 5
    """Abort when another rollback would be needed after this many."""
    lr_backoff_factor: float = 0.5
    """On a back-off the LR is capped at this fraction of the last LR known to be stable (the
    rollback snapshot's scheduled LR). Backs off when spikes recur within ``lr_backoff_window``
    steps of a rollback, or at once when the spike followed a rise of the scheduled LR."""
    lr_backoff_window: int = 200
    """A rollback this close to the previous one backs the LR off."""
    lr_rewarm_steps: int = 50
    """After a back-off the LR ramps linearly from ~0 to its capped value over W steps."""
    min_lr_scale: float = 1e-3
    """Abort rather than cap the LR below this fraction of the first back-off's stable LR."""
    lr_rise_ratio: float = 1.5
    """A scheduled LR this many times the rollback snapshot's counts as "the LR rose": the spike
    will replay from the snapshot, so the first rollback already backs off."""

    startup_steps: int = 50
    """Start-up protection (``guard/startup.py``): within the first N steps, a clean loss above
    ``1 + startup_rise`` x the first loss rolls back to the start and ramps the LR from ~0 over
    ``lr_rewarm_steps`` (a warm-up the config lacked); 0: off."""
    startup_rise: float = 0.25
    """How far above the first loss a start-up loss must climb to count as instability."""

    # -- damage: divergence and evaluation -----------------------------------------------------
    divergence_fraction: float | None = 0.5
    """Roll back to the best snapshot and lower the LR when the smoothed train loss has given
    back this fraction of its progress (start → best) for ``divergence_span`` steps in a row
    (``detectors/divergence.py``). None: report only, never act."""
    divergence_span: int = 50
    """The EMA span of the divergence rule and the steps the climb must last."""
    eval_worse_patience: int = 2
    """``observe_eval``: this many evaluations in a row worse than the best (beyond the margin
    and the run's own eval noise: the first rise is confirmed by the next evaluation; one more
    while the train loss still improves on its value at the best evaluation, the eval is under
    twice its best and the eval noise is measured) → roll back to the best-eval snapshot and
    lower the LR."""
    eval_worse_margin: float = 0.05
    """Relative margin (of ``|best|``) an evaluation must at least be worse by to count as
    worse."""
    eval_noise_k: float = 4.0
    """An evaluation counts as worse only when above the best by more than this many times the
    run's own eval noise too (a robust std of the last 10 evaluations' second differences;
    see ``guard/evaluation.py``); 0: the fixed margin only."""
    eval_plateau_patience: int = 3
    """``observe_eval``: this many evaluations without improving on the best by
    ``eval_min_delta``, while the train loss has not improved since the best evaluation either
    → cap the LR at ``eval_lr_factor`` x the current LR (0: never)."""
    eval_min_delta: float = 1e-3
    """Relative improvement (of ``|best|``) that counts as a new best evaluation."""
    eval_lr_factor: float = 0.5
    """The LR cap after an eval plateau, as a fraction of the LR the last step ran at."""
    eval_max_rollbacks: int = 2
    """Eval-worsening rollbacks allowed; after them the eval rule only lowers the LR (a run
    that overfits again is not aborted)."""

    # -- AMP and distribution ---------------------------------------------------------------
    precision_patience: int = 3
    """Under ``guard.autocast()`` at fp16: this many non-finite losses in a row (or a loss-scale
    collapse) switch the forward to bf16 (fp32 where bf16 is unsupported); see
    ``guard/precision.py``."""
    scale_collapse: float = 1.0
    """A GradScaler scale at or below this is a collapse (finding: switch to bf16)."""
    grads_unscaled: bool = False
    """GuardedOptimizer path: the framework already unscaled the grads (do not unscale again)."""
    shard_grads: bool = False
    """Grads are sharded across ranks (FSDP/ZeRO): all-reduce the norm. DDP grads are identical."""
    sync_free: SyncFree | bool = "auto"
    """Decide each step on the device and read the values once every ``read_every`` steps (no
    host sync on the other steps; see ``guard/device.py``). Needs an optimizer that skips on the
    device (torch's Adam/AdamW/SGD/Adagrad with ``fused=True``). ``"auto"``: on for CUDA grads
    with such an optimizer; ``"on"``: always (an error without one); ``"off"``: read every step.
    True/False mean "on"/"off" (YAML 1.1 reads a bare ``on`` as true)."""
    read_every: int = 10
    """Sync-free mode: steps between host reads (rollback, back-off and abort act at a read)."""

    def __post_init__(self) -> None:
        if isinstance(self.sync_free, bool):
            self.sync_free = "on" if self.sync_free else "off"
        for name in ("max_norm", "warmup_max_norm"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"guard.{name} must be > 0 or None, got {value!r}")
        _positive_ints = (
            "max_consecutive_bad",
            "rollback_after",
            "escalate_window",
            "snapshots_kept",
            "max_rollbacks",
            "spike_window",
            "percentile_window",
            "read_every",
            "divergence_span",
            "eval_worse_patience",
            "precision_patience",
        )
        if self.escalate_reset is not None and self.escalate_reset < 1:
            raise ConfigError(
                f"guard.escalate_reset must be >= 1 or None, got {self.escalate_reset!r}"
            )
        for name in _positive_ints:
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"guard.{name} must be >= 1, got {getattr(self, name)!r}")
        _non_negative = ("health_every", "snapshot_every", "rollback_skip_batches", "startup_steps",
                         "clip_raise_window",
                         "lr_rewarm_steps", "snapshot_confirm_steps", "eval_plateau_patience",
                         "eval_max_rollbacks")  # fmt: skip
        for name in _non_negative:
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"guard.{name} must be >= 0, got {getattr(self, name)!r}")
        if not 0.0 < self.lr_backoff_factor <= 1.0:
            raise ConfigError(
                f"guard.lr_backoff_factor must be in (0, 1], got {self.lr_backoff_factor!r}"
            )
        if self.divergence_fraction is not None and not 0.0 < self.divergence_fraction <= 1.0:
            raise ConfigError(
                f"guard.divergence_fraction must be in (0, 1] or None, got "
                f"{self.divergence_fraction!r}"
            )
        if not 0.0 < self.eval_lr_factor < 1.0:
            raise ConfigError(
                f"guard.eval_lr_factor must be in (0, 1) (it only lowers the LR), got "
                f"{self.eval_lr_factor!r}"
            )
        for name in ("eval_worse_margin", "eval_min_delta", "eval_noise_k", "startup_rise"):
            if not getattr(self, name) >= 0.0:
                raise ConfigError(f"guard.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.init_repair_gain is not None and not self.init_repair_gain > 1.0:
            raise ConfigError(
                f"guard.init_repair_gain must be > 1 or None, got {self.init_repair_gain!r}"
            )
        if not self.weight_growth_limit > 1.0:
            raise ConfigError(
                f"guard.weight_growth_limit must be > 1, got {self.weight_growth_limit!r}"
            )
        if not self.lr_rise_ratio > 1.0:
            raise ConfigError(f"guard.lr_rise_ratio must be > 1, got {self.lr_rise_ratio!r}")
        if not 0.0 < self.zscore_alpha < 1.0:
            raise ConfigError(f"guard.zscore_alpha must be in (0, 1), got {self.zscore_alpha!r}")
        if not 0.0 < self.percentile <= 100.0:
            raise ConfigError(f"guard.percentile must be in (0, 100], got {self.percentile!r}")
        _choices = {
            "clip": ("none", "norm", "zscore", "percentile", "agc"),
            "spike_action": ("warn", "skip", "rollback"),
            "spike_metric": ("loss", "grad_norm", "both"),
            "sync_free": ("auto", "on", "off"),
        }
        for name, allowed in _choices.items():
            if getattr(self, name) not in allowed:
                raise ConfigError(
                    f"guard.{name} = {getattr(self, name)!r} is not one of {', '.join(allowed)}"
                )

    @classmethod
    def preset(cls, name: Preset, **overrides: object) -> GuardConfig:
        """``"default"`` (on), ``"adaptive"`` (outlier clipping), ``"conservative"`` (tighter),
        ``"off"`` (plain step only)."""
        if name == "default":
            base: dict[str, object] = {}
        elif name == "conservative":
            base = {
                "max_norm": 0.5,
                "max_consecutive_bad": 10,
                "spike_z": 5.0,
                "rollback_after": 2,
                "snapshot_every": 25,
                "max_rollbacks": 3,
                "lr_backoff_factor": 0.3,
            }
        elif name == "adaptive":
            base = {"clip": "zscore", "max_norm": None, "warmup_max_norm": 1.0}
        elif name == "off":
            base = {
                "enabled": False,
                "clip": "none",
                "max_norm": None,
                "check_init": False,
                "snapshot_every": 0,
            }
        else:
            raise ConfigError(
                f"unknown guard preset {name!r}; allowed: 'default', 'adaptive', 'conservative', "
                "'off'"
            )
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ConfigError(
                f"unknown guard field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}"
            )
        base.update(overrides)
        return cls(**base)  # type: ignore[arg-type]
