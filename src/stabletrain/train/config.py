"""The reference trainer's config: pydantic models for the YAML schema, plus ``--set`` overrides.

The schema (section and key names) is a shared contract: the config readers and lint rules read
the same keys (see docs/trainer.md). Every model forbids unknown keys, so a typo such as
``optim.learning_rate`` is an error naming the key and the allowed ones instead of a silently
ignored setting — the seeds' postmortems all start from "which value did the run really use?".

Limits: the ``guard`` section is an open mapping validated against :class:`GuardConfig`'s fields
when the guard config is built, so fields the guard gains later flow through unchanged.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from stabletrain import safe_io
from stabletrain.errors import ConfigError
from stabletrain.guard.config import GuardConfig


class _Section(BaseModel):
    # a NaN/inf setting (``lr: .inf``, a 400-digit integer read as inf) is an error naming the key
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class RunSection(_Section):
    name: str = "run"
    dir: str | None = None
    """Run directory; default ``runs/<name>``."""
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    log_every: int = Field(default=1, ge=1)
    """Write every N-th step to steps.jsonl (skipped/acted-on steps are always written)."""
    checkpoint_every: int = Field(default=0, ge=0)
    """Checkpoint every N optimizer steps; 0 = at the end of each epoch."""
    tensorboard: bool = True


class CorruptSection(_Section):
    """Fault injection: global micro-batch indices whose inputs become NaN or are scaled."""

    nan_batches: list[int] = Field(default_factory=list)
    scale_batches: list[int] = Field(default_factory=list)
    scale: float = 1.0e6


class DataSection(_Section):
    name: Literal["digits", "charcorpus", "cifar10"] = "digits"
    path: str | None = None
    """cifar10: the folder holding data_batch_1..5 and test_batch (never downloaded)."""
    batch_size: int = Field(default=64, ge=1)
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    seq_len: int = Field(default=64, ge=2)
    num_workers: int = Field(default=0, ge=0)
    corrupt: CorruptSection = Field(default_factory=CorruptSection)


class CNNSection(_Section):
    channels: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=3, max_length=3)
    hidden: int = Field(default=128, ge=1)
    batch_norm: bool = False
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    init: Literal["kaiming", "xavier", "normal"] = "kaiming"
    init_std: float | None = Field(default=None, gt=0.0)
    """Std of ``init: normal`` (default 0.02); a large value reproduces a bad init."""

    @model_validator(mode="after")
    def _std_needs_normal(self) -> CNNSection:
        if self.init_std is not None and self.init != "normal":
            raise ValueError("init_std applies only to init: normal; remove it or set init: normal")
        return self


class GPTSection(_Section):
    n_layer: int = Field(default=2, ge=1)
    n_head: int = Field(default=4, ge=1)
    n_embd: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    qk_layernorm: bool = False

    @model_validator(mode="after")
    def _heads_divide(self) -> GPTSection:
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})")
        return self


class ModelSection(_Section):
    name: Literal["cnn", "gpt"] = "cnn"
    cnn: CNNSection = Field(default_factory=CNNSection)
    gpt: GPTSection = Field(default_factory=GPTSection)


class OptimSection(_Section):
    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = Field(default=1e-3, gt=0.0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(default=1e-8, gt=0.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    momentum: float = Field(default=0.9, ge=0.0, lt=1.0)
    fused: bool | None = None
    """torch's fused kernel (one launch for all parameters, and the guard's sync-free path:
    it skips a bad step on the device). None: fused on CUDA, the default foreach on the CPU."""

    @field_validator("betas")
    @classmethod
    def _betas_in_range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not all(0.0 <= b < 1.0 for b in v):
            raise ValueError(f"each beta must be in [0, 1), got {list(v)}")
        return v


class ScheduleSection(_Section):
    name: Literal["constant", "cosine", "plateau", "onecycle"] = "constant"
    warmup_steps: int = Field(default=0, ge=0)
    warmup_ratio: float = Field(default=0.0, ge=0.0, lt=1.0)
    min_lr: float = Field(default=0.0, ge=0.0)
    plateau_patience: int = Field(default=10, ge=0)
    plateau_factor: float = Field(default=0.1, gt=0.0, lt=1.0)
    plateau_threshold: float = Field(default=1e-4, ge=0.0)

    @model_validator(mode="after")
    def _one_warmup(self) -> ScheduleSection:
        if self.warmup_steps and self.warmup_ratio:
            raise ValueError("set warmup_steps or warmup_ratio, not both")
        if self.name == "plateau" and (self.warmup_steps or self.warmup_ratio):
            raise ValueError("warmup is not supported with name: plateau; use cosine for warmup")
        return self


class TrainSection(_Section):
    epochs: int = Field(default=10, ge=1)
    max_steps: int | None = Field(default=None, ge=1)
    grad_accum: int = Field(default=1, ge=1)
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    max_grad_norm: float | None = Field(default=1.0, gt=0.0)
    """Clip the global grad norm to this; null = no clipping."""
    early_stopping_patience: int | None = Field(default=None, ge=1)
    early_stopping_min_delta: float = Field(default=0.0, ge=0.0)
    eval_every: int = Field(default=1, ge=1)
    """Evaluate every N epochs (and at the end of training)."""


class AmpSection(_Section):
    """torch.amp.GradScaler settings, used when ``train.precision: fp16``."""

    init_scale: float = Field(default=65536.0, gt=0.0)
    growth_factor: float = Field(default=2.0, gt=1.0)
    backoff_factor: float = Field(default=0.5, gt=0.0, lt=1.0)
    growth_interval: int = Field(default=2000, ge=1)


class TrainConfig(_Section):
    """The whole config file."""

    run: RunSection = Field(default_factory=RunSection)
    data: DataSection = Field(default_factory=DataSection)
    model: ModelSection = Field(default_factory=ModelSection)
    optim: OptimSection = Field(default_factory=OptimSection)
    schedule: ScheduleSection = Field(default_factory=ScheduleSection)
    train: TrainSection = Field(default_factory=TrainSection)
    amp: AmpSection = Field(default_factory=AmpSection)
    guard: dict[str, Any] = Field(default_factory=lambda: {"preset": "default"})

    @model_validator(mode="after")
    def _cross_checks(self) -> TrainConfig:
        lm = self.data.name == "charcorpus"
        if lm != (self.model.name == "gpt"):
            raise ValueError(
                f"model.name {self.model.name!r} does not fit data.name {self.data.name!r}: "
                "use gpt with charcorpus, cnn with digits/cifar10"
            )
        if lm and (self.data.corrupt.nan_batches or self.data.corrupt.scale_batches):
            raise ValueError("data.corrupt needs float inputs (digits, cifar10), not charcorpus")
        return self

    def run_dir(self) -> Path:
        return Path(self.run.dir) if self.run.dir else Path("runs") / self.run.name

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json"), sort_keys=False)


def guard_config(cfg: TrainConfig) -> GuardConfig:
    """``GuardConfig.preset(preset, **overrides)`` with ``max_norm`` from ``train.max_grad_norm``.

    Preset ``off`` still clips at ``train.max_grad_norm``: it is the plain backward → clip → step
    sequence the seeds ran, so "with vs without guard" compares the guard, not clipping. Preset
    ``adaptive`` takes it as the fixed clip of its warm-up (then only outliers are clipped).
    """
    section = {k: _yaml_number(v) for k, v in cfg.guard.items()}
    preset = section.pop("preset", "default")
    if preset is False:  # YAML 1.1 reads an unquoted `off` as false
        preset = "off"
    if preset == "adaptive":
        # outlier clipping after a fixed warm-up clip: train.max_grad_norm is that warm-up clip
        section.setdefault("warmup_max_norm", cfg.train.max_grad_norm)
    else:
        section.setdefault("max_norm", cfg.train.max_grad_norm)
        if cfg.train.max_grad_norm is not None:
            section.setdefault("clip", "norm")
    allowed = sorted(f.name for f in dataclasses.fields(GuardConfig))
    for key in section:
        if key not in allowed:
            raise ConfigError(f"unknown key 'guard.{key}'; allowed: preset, {', '.join(allowed)}")
    try:
        return GuardConfig.preset(preset, **section)
    except ConfigError as e:
        raise ConfigError(f"guard: {e}") from None
    except TypeError as e:
        raise ConfigError(f"guard: {e}") from None


def parse_config(data: dict[str, Any], *, source: str = "config") -> TrainConfig:
    """Validate a config mapping; errors name every bad dotted key and what is allowed."""
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as e:
        raise ConfigError(f"{source}: " + "; ".join(_explain(err) for err in e.errors())) from None
    try:
        guard_config(cfg)  # validate the guard section now, not at step 0
    except ConfigError as e:
        raise ConfigError(f"{source}: {e}") from None
    return cfg


def load_config(path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply ``key=value`` overrides, validate."""
    p = Path(path)
    data = safe_io.load_yaml(p, error=ConfigError) or {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{p}: the top level must be a mapping of sections, got {type(data).__name__}"
        )
    data = _yaml_number(data)
    apply_overrides(data, overrides or [])
    return parse_config(data, source=str(p))


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> None:
    """Apply ``section.key=value`` strings in place; values are parsed as YAML (``1e-3``, ``[1,2]``)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
        parts = key.split(".")
        node = data
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(
                    f"--set {key}: {'.'.join(parts[: i + 1])} is a value, not a section"
                )
            node = child
        try:
            value = safe_io.parse_yaml(raw, source=f"--set {key}", error=ConfigError)
        except ConfigError:
            value = raw
        node[parts[-1]] = _yaml_number(value)


_NUMBER = re.compile(r"^[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+$")


def _yaml_number(value: Any) -> Any:
    # YAML 1.1 reads "1e-3" as a string (no dot in the mantissa); the user meant a number.
    if isinstance(value, str) and _NUMBER.match(value):
        return float(value)
    if isinstance(value, dict):
        return {k: _yaml_number(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_yaml_number(v) for v in value]
    return value


def _explain(err: Any) -> str:
    loc = ".".join(str(x) for x in err["loc"])
    if err["type"] == "extra_forbidden":
        return f"unknown key {loc!r}; allowed: {', '.join(_allowed_keys(err['loc']))}"
    got = err.get("input")
    shown = "" if isinstance(got, dict) else f" (got {got!r})"
    return f"{loc or '<top>'}: {err['msg'].removeprefix('Value error, ')}{shown}"


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: type[BaseModel] = TrainConfig
    for part in loc[:-1]:
        field = model.model_fields.get(str(part))
        ann = getattr(field, "annotation", None)
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            break
        model = ann
    return list(model.model_fields)
