"""Fuzz the doctor, lint and the config loader with mutated real logs and configs (hypothesis).

The mutations are ``bench/fuzz.py``'s (byte flips, truncation, hostile tokens such as NaN,
Infinity, 400-digit numbers and 1,000-deep brackets, number substitution); the seeds are the real
logs and configs in ``tests/``, ``configs/`` and ``../shared/real-logs`` (when present). Every
input must give exit 0, 1 or 2 — never an internal error or a traceback — and an exit 2 must be
one line. Derandomized and small, so ``make test`` stays fast; ``bench/fuzz.py`` runs 10,000.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import random
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from stabletrain.cli import main
from stabletrain.configs.read import read_config
from stabletrain.errors import ConfigError, ExitCode

REPO = Path(__file__).resolve().parents[1]


def _fixtures() -> ModuleType:
    path = REPO / "tests" / "fixtures" / "seeds" / "__init__.py"
    spec = importlib.util.spec_from_file_location("stabletrain_seed_fixtures_fuzz", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fuzz_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "stabletrain_bench_fuzz", REPO / "bench" / "fuzz.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look themselves up there
    spec.loader.exec_module(mod)
    return mod


FUZZ = _fuzz_module()
SEEDS: dict[str, list[Path]] = FUZZ.seed_files(include_shared=True)
_JSON_SEEDS = Path(tempfile.mkdtemp(prefix="stabletrain-fuzz-seeds-"))
HF_ARGS = {  # the keys TrainingArguments.to_json_string() writes that matter here
    "learning_rate": 5e-05, "per_device_train_batch_size": 8, "gradient_accumulation_steps": 4,
    "warmup_ratio": 0.0, "max_grad_norm": 1.0, "fp16": True, "bf16": False,
    "lr_scheduler_type": "linear", "adam_beta2": 0.999, "logging_nan_inf_filter": True,
}  # fmt: skip
(_JSON_SEEDS / "training_args.json").write_text(json.dumps(HF_ARGS, indent=2), encoding="utf-8")
SEEDS["lint"] = [
    *SEEDS["lint"],
    _JSON_SEEDS / "training_args.json",
    _fixtures().generate("seed002", _JSON_SEEDS)[1],  # a DeepSpeed ds_config.json
]
FAST = settings(
    max_examples=25,
    derandomize=True,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],  # no shrinking: the failure message names the input
    suppress_health_check=[HealthCheck.too_slow],
)


def _mutated(kind: str, pick: int, seed: int) -> tuple[Path, bytes, str]:
    files = SEEDS[kind]
    path = files[pick % len(files)]
    data, what = FUZZ.mutate(path.read_bytes(), random.Random(seed))
    return path, data, what


def _cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, err.getvalue()


def _check(command: str, name: str, data: bytes, why: str) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        code, err = _cli([command, str(path), "--format", "json"])
    assert code in (ExitCode.CLEAN, ExitCode.FINDINGS, ExitCode.UNUSABLE_INPUT), f"{why}: {err}"
    assert "Traceback" not in err, why
    if code == ExitCode.UNUSABLE_INPUT:
        assert err.strip().count("\n") == 0 or "WARNING" in err, f"{why}: {err}"


@FAST
@given(pick=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1))
def test_doctor_on_mutated_real_logs(pick: int, seed: int) -> None:
    path, data, what = _mutated("doctor", pick, seed)
    _check("doctor", path.name, data, f"doctor {path} mutated by {what}")


@FAST
@given(pick=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1))
def test_lint_on_mutated_real_configs(pick: int, seed: int) -> None:
    path, data, what = _mutated("lint", pick, seed)
    _check("lint", path.name, data, f"lint {path} mutated by {what}")


@settings(FAST, max_examples=60)
@given(pick=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1))
def test_config_loader_reads_or_raises_config_error(pick: int, seed: int) -> None:
    path, data, what = _mutated("lint", pick, seed)
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / path.name
        p.write_bytes(data)
        try:
            read_config(p)
        except ConfigError as e:
            assert str(p) in str(e), f"{what}: {e}"


@FAST
@given(seed=st.integers(0, 2**32 - 1), which=st.sampled_from(["doctor", "lint"]))
def test_garbage_is_refused_not_passed(seed: int, which: str) -> None:
    data, what = FUZZ.garbage(random.Random(seed))
    names = FUZZ.LOG_NAMES if which == "doctor" else FUZZ.CONFIG_NAMES
    name = names[seed % len(names)]
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / name
        path.write_bytes(data)
        code, err = _cli([which, str(path), "--format", "json"])
    assert code == ExitCode.UNUSABLE_INPUT, f"{which} {name} ({what}) gave exit {code}: {err}"


TRAIN_CONFIGS = sorted((REPO / "configs").glob("*.yaml"))


@settings(FAST, max_examples=60)
@given(pick=st.integers(0, 10_000), seed=st.integers(0, 2**32 - 1))
def test_train_config_loader_validates_or_raises_config_error(pick: int, seed: int) -> None:
    """``stabletrain train``'s loader: a mutated config is a TrainConfig or one ConfigError."""
    from stabletrain.train.config import TrainConfig, load_config

    path = TRAIN_CONFIGS[pick % len(TRAIN_CONFIGS)]
    data, what = FUZZ.mutate(path.read_bytes(), random.Random(seed))
    with tempfile.TemporaryDirectory() as d:
        p = Path(d) / path.name
        p.write_bytes(data)
        try:
            assert isinstance(load_config(p), TrainConfig)
        except ConfigError as e:
            assert str(p) in str(e) or "--set" in str(e), f"{what}: {e}"
