"""``read_config``: normalise any training config into :class:`~stabletrain.records.ConfigFacts`.

Formats (detected from content): stabletrain YAML (the reference trainer's schema),
HF ``TrainingArguments`` JSON (``TrainingArguments.to_json_string()``), DeepSpeed ``ds_config.json``,
and generic YAML/JSON with seed-style keys anywhere in the tree (``stabletrain.configs.keys``);
a launch script (``.sh``) is read through its ``--key value`` arguments (``configs.cli_args``),
a Python config (``.py``) through its literal assignments, never run (``configs.py_literals``).
JSON pasted with ``//`` or ``#`` comments or trailing commas still parses (a ``logging`` warning
says so; a ``#`` inside a string stays text);
YAML whose only Python tags are plain-data ones (NequIP's ``!!python/tuple``; ``list``, ``dict``,
``str``, ``int``, ``float``, ``bool``, ``none``) is read by ``read_config`` with those tags
dropped, as the plain data they tag (a warning says so); object, name and module tags are refused
as before, and ``load_tree`` keeps refusing every Python tag unless asked (``--patch`` writes the
file back, so it must not read a file it could not round-trip).
Unreadable input raises :class:`~stabletrain.errors.ConfigError` with a one-line reason: files are
read with :mod:`stabletrain.safe_io` (no FIFOs or devices, a size cap, bounded nesting, no YAML
alias bombs, only YAML's safe tags), and a value that is not a finite number is data.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from stabletrain import safe_io
from stabletrain.configs import deepspeed
from stabletrain.configs.cli_args import parse_command
from stabletrain.configs.keys import extract
from stabletrain.configs.py_literals import parse_python
from stabletrain.errors import ConfigError
from stabletrain.records import ConfigFacts

__all__ = ["load_tree", "read_config", "same_value"]

log = logging.getLogger(__name__)

_STABLETRAIN_SECTIONS = frozenset(
    {"run", "data", "model", "optim", "schedule", "train", "amp", "guard"}
)
#: the reference trainer's model sections (``model.<name>``), of which a run builds one
_MODELS = frozenset({"cnn", "gpt"})
_HF_ARGS_MARKERS = ("per_device_train_batch_size", "lr_scheduler_type", "logging_nan_inf_filter")
_DATASET_CLASSES = {"digits": 10, "cifar10": 10, "mnist": 10, "cifar100": 100}
_COMMENTS = re.compile(r'("(?:\\.|[^"\\])*")|//[^\n]*|#[^\n]*|/\*.*?\*/', re.S)
_TRAILING_COMMA = re.compile(r",(\s*[}\]])")
#: a YAML Python tag of plain data (``!!python/tuple``); any other Python tag stays refused
_PYTHON_DATA_TAG = re.compile(
    r"!!python/(?:tuple|list|dict|str|unicode|int|long|float|bool|none)\b"
)
#: launch scripts: their --key value arguments are read as the config (configs/cli_args.py)
_SCRIPTS = frozenset({".sh", ".bash"})


def read_config(path: str | os.PathLike[str]) -> ConfigFacts:
    """Facts from one config file; each Fact remembers the file and the dotted key."""
    p = Path(path)
    tree, notes = load_tree(p, python_data_tags=True)
    facts = ConfigFacts(source=str(p))
    file = str(p)
    if not isinstance(tree, dict):
        raise ConfigError(
            f"{p}: expected a mapping of settings at the top level, got {type(tree).__name__}"
        )
    if deepspeed.is_deepspeed(tree):
        facts.format = "deepspeed"
        deepspeed.read(tree, facts, file)
    elif any(k in tree for k in _HF_ARGS_MARKERS):
        facts.format = "hf-training-args"
        extract(tree, facts, file)
        if "precision" not in facts and tree.get("fp16") is False and not tree.get("bf16"):
            facts.set("precision", "fp32", key="fp16", file=file)
        if tree.get("max_grad_norm") in (0, None) and "max_grad_norm" in tree:
            facts.set("max_grad_norm", 0.0, key="max_grad_norm", file=file)
    elif (
        len(_STABLETRAIN_SECTIONS & tree.keys()) >= 3 and {"optim", "schedule", "amp"} & tree.keys()
    ):
        facts.format = "stabletrain"
        _stabletrain(tree, facts, file)
    else:
        facts.format = "yaml" if p.suffix in (".yaml", ".yml") else "json"
        if p.suffix.lower() in _SCRIPTS:
            facts.format = "command-line"
        elif p.suffix.lower() == ".py":
            facts.format = _python_dialect(tree)
        extract(tree, facts, file)
    for n in notes:
        log.warning("%s", n)
    return facts


def _python_dialect(tree: dict[str, Any]) -> str:
    """nanoGPT's train.py overrides, an mmengine config, or Python of unknown origin: the
    framework decides the defaults a fix assumes (nanoGPT clips at 1.0, mmengine does not)."""
    if "block_size" in tree and {"gradient_accumulation_steps", "max_iters", "lr_decay_iters"} & (
        tree.keys()
    ):
        return "nanogpt"
    if {"optim_wrapper", "param_scheduler", "train_cfg"} & tree.keys():
        return "mmengine"
    return "python"


def load_tree(p: Path, *, python_data_tags: bool = False) -> tuple[Any, list[str]]:
    """Parse YAML or JSON (JSON with comments tolerated); notes say what was repaired.

    Read through :mod:`stabletrain.safe_io`: regular files only, at most ``CONFIG_MAX_BYTES``,
    bounded depth and (YAML) alias-expanded size; NaN/Infinity and huge numbers stay data.
    ``python_data_tags``: a YAML file refused for a ``!!python/tuple`` (or another plain-data
    Python tag) is read again with those tags dropped (module docstring); off by default.
    """
    text = safe_io.read_text(p, max_bytes=safe_io.CONFIG_MAX_BYTES, error=ConfigError)
    notes: list[str] = []
    source = str(p)
    if p.suffix.lower() in _SCRIPTS:
        tree = parse_command(text)
        if not tree:
            raise ConfigError(f"{p}: a shell script with no --key value arguments; not understood")
        return tree, notes
    if p.suffix.lower() == ".py":
        found = parse_python(text)
        if not found:
            raise ConfigError(
                f"{p}: a Python file with no literal settings (name = value); not understood"
            )
        return found, notes
    if p.suffix == ".json" or text.lstrip().startswith("{"):
        try:
            return safe_io.parse_json(text, source=source, error=ConfigError), notes
        except json.JSONDecodeError:
            cleaned = _TRAILING_COMMA.sub(r"\1", _COMMENTS.sub(lambda m: m.group(1) or "", text))
            try:
                tree = safe_io.parse_json(cleaned, source=source, error=ConfigError)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{p}: invalid JSON ({e})") from e
            notes.append(f"{p}: JSON had comments or trailing commas; parsed after removing them")
            return tree, notes
    try:
        return safe_io.parse_yaml(text, source=source, error=ConfigError), notes
    except ConfigError as e:
        if not python_data_tags or "constructor for the tag" not in str(e):
            raise
        plain = _PYTHON_DATA_TAG.sub("", text)
        if plain == text:
            raise
    tree = safe_io.parse_yaml(plain, source=source, error=ConfigError)
    notes.append(f"{p}: YAML Python data tags (!!python/tuple ...) read as plain data")
    return tree, notes


def _stabletrain(tree: dict[str, Any], facts: ConfigFacts, file: str) -> None:
    """The reference trainer's schema (schema.md): exact keys first, then the generic search."""
    train = tree.get("train")
    if isinstance(train, dict) and "max_grad_norm" in train and train["max_grad_norm"] is None:
        # null = no clipping; 0.0 keeps that visible to lint (ConfigFacts drops None)
        facts.set("max_grad_norm", 0.0, key="train.max_grad_norm", file=file)
    exact = {
        "optim.name": "optimizer",
        "schedule.name": "schedule",
        "train.precision": "precision",
        "model.name": "model",
        "schedule.plateau_patience": "plateau_patience",
        "schedule.plateau_factor": "plateau_factor",
    }
    for dotted, name in exact.items():
        sec, key = dotted.split(".")
        block = tree.get(sec)
        if isinstance(block, dict) and block.get(key) is not None:
            facts.set(name, block[key], key=dotted, file=file)
    data = tree.get("data")
    if isinstance(data, dict) and data.get("name") in _DATASET_CLASSES:
        facts.set("num_classes", _DATASET_CLASSES[data["name"]], key="data.name", file=file)
    sub = {
        k: v for k, v in tree.items() if k != "guard"
    }  # guard overrides are not the run's config
    model = tree.get("model")
    if isinstance(model, dict) and isinstance(model.get("name"), str):
        # only the model the run builds: a GPT run's file also holds the (unused) cnn section
        sub["model"] = {k: v for k, v in model.items() if k not in _MODELS or k == model["name"]}
    extract(sub, facts, file)


def same_value(a: Any, b: Any) -> bool:
    """Whether two settings agree: numbers within 1e-6 relative (NaN equals NaN), else the same
    text ignoring case and surrounding blanks (``AdamW`` = ``adamw``)."""
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        x, y = float(a), float(b)
        return (x != x and y != y) or x == y or abs(x - y) <= 1e-6 * max(abs(x), abs(y))
    return str(a).strip().lower() == str(b).strip().lower()
