"""Write a change set into the user's own config file, keeping what the format allows.

``plan_patch(config, changes)`` returns the patched text and one :class:`Edit` per key
(``optim.lr: 0.003 → 0.0015``); ``write_patch`` writes it atomically (a temp file in the same
directory, then ``os.replace``), never over the input unless the caller names it.

Formats: YAML through ruamel.yaml's round-trip mode (comments, key order, flow or block style
kept; floats written so PyYAML reads them back as floats, ``1.0e-05`` not ``1e-05``); JSON (HF
``TrainingArguments`` with flat keys, DeepSpeed ``ds_config`` with nested ones) keeping key order
and the file's indentation. A dotted key (``optim.lr``, ``fp16.initial_scale_power``) goes into
nested maps, creating the missing ones; ``optim.betas[1]`` edits a list item.

The change set speaks the vocabulary of the facts the report read (the run's own config, or the
framework of its log), which need not be this file's, so each change goes key → fact name →
*this file's* key: the key the file already uses for that fact, else its framework's key
(``detectors.vocabulary.KEYS``). A change this file's format cannot hold — a Megatron flag, or a
setting its framework does not have (Lightning's ``Trainer`` has no learning rate) — is refused
with one line naming it. Values follow the key: DeepSpeed's ``initial_scale_power`` is a power of
two; a precision switch becomes the switch this file uses (``bf16: true`` + ``fp16: false`` in
HF, ``train.precision: bf16`` in stabletrain).

Input is read with :mod:`stabletrain.safe_io` (size cap, bounded depth, no alias bombs, safe
tags only) before the round-trip parser sees it; the result is parsed back and each edited key
checked before anything is written.
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stabletrain import safe_io
from stabletrain.configs.keys import KEY_FACTS
from stabletrain.configs.read import load_tree, read_config
from stabletrain.errors import ConfigError
from stabletrain.records import ConfigFacts

__all__ = ["Edit", "Patch", "default_output", "plan_patch", "route", "write_patch"]

log = logging.getLogger(__name__)

#: an Edit's ``old`` when the key was not in the file
ADDED = "(added)"

_INDEX = re.compile(r"^(.*)\[(\d+)\]$")


@dataclass(frozen=True, slots=True)
class Edit:
    """One key written: ``old`` is :data:`ADDED` when the file did not have it."""

    key: str
    old: Any
    new: Any
    change: str  # the change set's key it came from

    def line(self) -> str:
        shown = ""
        if self.change.startswith("("):
            shown = f"  {self.change}"
        elif self.change != self.key:
            shown = f"  (change set: {self.change})"
        return f"{self.key}: {_show(self.old)} → {_show(self.new)}{shown}"


@dataclass(slots=True)
class Patch:
    """The patched text of ``path`` and what changed; ``refused``: one line per change left out."""

    path: Path
    format: str
    text: str
    #: the file's settings before the patch (what every untouched key must still read as)
    original: Any = None
    edits: list[Edit] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> list[str]:
        """Diff-like lines: ``key: old → new`` per edit, then the refused changes and notes."""
        lines = [e.line() for e in self.edits]
        lines += [f"refused: {r}" for r in self.refused]
        lines += [f"note: {n}" for n in self.notes]
        return lines


def default_output(config: str | os.PathLike[str]) -> Path:
    """``config.yaml`` → ``config.fixed.yaml`` beside it (never the input itself)."""
    p = Path(config)
    return p.with_name(f"{p.stem}.fixed{p.suffix}")


def plan_patch(config: str | os.PathLike[str], changes: dict[str, Any]) -> Patch:
    """The patched text of ``config`` with ``changes`` ({change-set key: value}) applied."""
    path = Path(config)
    facts = read_config(path)  # also validates the file (ConfigError naming it)
    if facts.format in ("command-line", "nanogpt", "mmengine", "python") or path.suffix in (
        ".sh",
        ".bash",
        ".py",
    ):
        raise ConfigError(
            f"{path}: --patch rewrites YAML and JSON configs; apply the change set to this "
            "script's arguments by hand"
        )
    tree, notes = load_tree(path)
    text = safe_io.read_text(path, max_bytes=safe_io.CONFIG_MAX_BYTES, error=ConfigError)
    is_json = path.suffix == ".json" or text.lstrip().startswith("{")
    patch = Patch(
        path=path,
        format=facts.format or ("json" if is_json else "yaml"),
        text=text,
        original=copy.deepcopy(tree),
    )
    if notes:
        patch.notes.append(f"{path}: its comments could not be kept (JSON has none)")
    targets = _targets(changes, facts, tree, patch)
    if not targets:
        return patch
    if is_json:
        patch.text = _json_text(text, tree, targets, patch)
    else:
        patch.text = _yaml_text(text, targets, patch)
    _check(patch)
    return patch


def route(
    changes: dict[str, Any], configs: Sequence[str | os.PathLike[str]]
) -> dict[str, dict[str, Any]]:
    """Several config files of one run (a training YAML and its ds_config): each change goes to
    the file that holds its key, else to the file that holds its setting under another key,
    else to the file whose framework has the key, else to the first file. {file: changes}."""
    from stabletrain.detectors.vocabulary import KEYS, vocabulary

    files = [(str(c), read_config(c), load_tree(Path(c))[0]) for c in configs]
    out: dict[str, dict[str, Any]] = {}
    for key, value in changes.items():
        name = fact_of(key)
        owner = (
            next((f for f, _, tree in files if _has(tree, key)), None)
            or next((f for f, facts, _ in files if name is not None and name in facts), None)
            or next((f for f, facts, _ in files if key in KEYS[vocabulary(facts)].values()), None)
            or files[0][0]
        )
        out.setdefault(owner, {})[key] = value
    return out


def write_patch(patch: Patch, output: str | os.PathLike[str]) -> Path:
    """Write the patched text to ``output`` atomically; returns the path written."""
    from stabletrain.logs.runlog import atomic_write_text

    out = Path(output)
    if out.is_dir():
        raise ConfigError(f"{out}: is a directory; name the file to write the patched config to")
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, patch.text)
    return out


# -- which key of this file each change goes to ---------------------------------------------


def _targets(
    changes: dict[str, Any], facts: ConfigFacts, tree: Any, patch: Patch
) -> list[tuple[str, Any, str]]:
    """[(this file's key, value in that key's unit, the change-set key)]; refusals noted."""
    from stabletrain.detectors.fixes import precision_changes, value_for
    from stabletrain.detectors.vocabulary import KEYS, LABELS, vocabulary

    vocab = vocabulary(facts)
    label = LABELS[vocab]
    out: list[tuple[str, Any, str]] = []
    precision = _precision_target(changes)
    if precision is not None:
        keys, target = precision
        for key, value in precision_changes(facts, target).items():
            if key.startswith("--"):
                patch.refused.append(f"{', '.join(keys)}: a command-line flag, not a {label} key")
                break
            out.append((key, value, ", ".join(keys)))
        changes = {k: v for k, v in changes.items() if k not in keys}
    for key, value in changes.items():
        name = fact_of(key)
        if _has(tree, key):
            target = key
        elif name is not None and name in facts and facts.key(name) != name:
            target = facts.key(name)
        elif name is not None and KEYS[vocab].get(name):
            target = KEYS[vocab][name]
        elif name is None and not key.startswith("--") and vocab in ("generic", "names"):
            target = key  # a generic file takes any key
        elif vocab == "stabletrain" and _in_trainer_schema(key):
            target = key  # a reference-trainer setting the file leaves at its default
        else:
            what = name or key
            patch.refused.append(f"{key}: {label} ({patch.path.name}) has no {what} setting")
            continue
        if target.startswith("--"):
            patch.refused.append(f"{key}: a command-line flag, not a {label} key")
            continue
        found, now = _get(tree, _parts(target))
        if found and isinstance(now, str) and now.strip().lower() == "auto":
            patch.refused.append(
                f'{key}: {target} is "auto" in {patch.path.name} (filled in by the trainer '
                "at run time); set it where the trainer reads it"
            )
            continue
        out.append((target, value_for(target, _fact_value(key, value)), key))
    return _one_per_key(out + _alternatives_cleared(out, facts), patch)


#: settings that replace each other: setting one clears the other (stabletrain refuses both,
#: HF silently lets warmup_steps win)
_EITHER = {"warmup_steps": "warmup_ratio", "warmup_ratio": "warmup_steps"}


def _alternatives_cleared(
    targets: list[tuple[str, Any, str]], facts: ConfigFacts
) -> list[tuple[str, Any, str]]:
    """``schedule.warmup_ratio: 0.05 → 0`` when the change sets ``schedule.warmup_steps``."""
    names = {fact_of(key) for key, _, _ in targets}
    out = []
    for key, _, _ in targets:
        other = _EITHER.get(fact_of(key) or "")
        if other is None or other in names or not facts.number(other):
            continue
        out.append((facts.key(other), 0.0 if other == "warmup_ratio" else 0, f"(cleared: {key})"))
    return out


def _one_per_key(targets: list[tuple[str, Any, str]], patch: Patch) -> list[tuple[str, Any, str]]:
    """One value per key of this file: two change-set keys for the same setting (``optim.lr``
    and ``learning_rate``) keep the first; a different second value is refused."""
    out: dict[str, tuple[str, Any, str]] = {}
    for key, value, change in targets:
        first = out.get(key)
        if first is None:
            out[key] = (key, value, change)
        elif first[1] != value:
            patch.refused.append(
                f"{change}: sets {key} like {first[2]} but to {value!r}; kept {first[1]!r}"
            )
    return list(out.values())


def _in_trainer_schema(key: str) -> bool:
    """Whether ``key`` (``model.cnn.init``) names a field of the reference trainer's config."""
    from pydantic import BaseModel

    from stabletrain.train.config import TrainConfig

    model: Any = TrainConfig
    for part in _parts(key):
        if model is dict or getattr(model, "__origin__", None) is dict:
            return True  # a free mapping (the guard section)
        if isinstance(part, int) or not (isinstance(model, type) and issubclass(model, BaseModel)):
            return False
        info = model.model_fields.get(part)
        if info is None:
            return False
        model = info.annotation
    return True


def fact_of(key: str) -> str | None:
    """The normalised fact a config key sets (``optim.lr`` → ``lr``, ``--clip-grad`` →
    ``max_grad_norm``), from every framework's key table, else the key's last name."""
    from stabletrain.detectors.vocabulary import KEYS

    for table in KEYS.values():
        for name, k in table.items():
            if k == key:
                return name
    last = _INDEX.sub(r"\1", key.rsplit(".", 1)[-1]).lstrip("-").replace("-", "_").lower()
    return KEY_FACTS.get(last)


def _fact_value(key: str, value: Any) -> Any:
    """A value in its key's unit → the fact's unit (DeepSpeed's power of two → the scale)."""
    if key.endswith("initial_scale_power") and isinstance(value, (int, float)):
        return 2.0**value if value < 1024 else math.inf
    return value


def _precision_target(changes: dict[str, Any]) -> tuple[list[str], Any] | None:
    """(the change set's precision keys, "bf16" | "fp32") when it switches precision."""
    from stabletrain.detectors.vocabulary import PRECISION

    switch_keys = {k for table in PRECISION.values() for t in table.values() for k in t}
    keys = [k for k in changes if k in switch_keys]
    if not keys:
        return None
    target = "fp32"
    for k in keys:
        v = changes[k]
        switch = k.lstrip("-").removesuffix(".enabled").rsplit(".", 1)[-1].lower()
        text = str(v).lower()
        if (switch == "bf16" and v is True) or "bf16" in text or "bfloat16" in text:
            target = "bf16"
    return keys, target


# -- editing ----------------------------------------------------------------------------------


def _parts(key: str) -> list[str | int]:
    """``optim.betas[1]`` → ["optim", "betas", 1]."""
    out: list[str | int] = []
    for part in key.split("."):
        m = _INDEX.match(part)
        if m:
            out += [m.group(1), int(m.group(2))]
        else:
            out.append(part)
    return out


def _has(tree: Any, key: str) -> bool:
    found, _ = _get(tree, _parts(key))
    return found or (isinstance(tree, dict) and key in tree)


def _get(tree: Any, parts: list[str | int]) -> tuple[bool, Any]:
    node = tree
    for p in parts:
        if isinstance(p, int):
            if not isinstance(node, list) or p >= len(node):
                return False, None
        elif not isinstance(node, dict) or p not in node:
            return False, None
        node = node[p]  # type: ignore[index]
    return True, node


def _set(tree: Any, key: str, value: Any, new_map: type, path: Path) -> Any:
    """Set ``key`` in ``tree`` (creating missing maps); returns the old value or ADDED."""
    if isinstance(tree, dict) and key in tree and "." in key:
        old = tree[key]  # a flat file whose key holds a dot
        tree[key] = value
        return old
    parts = _parts(key)
    node = tree
    for i, p in enumerate(parts[:-1]):
        where = ".".join(str(x) for x in parts[: i + 1])
        if isinstance(p, int):
            if not isinstance(node, list) or p >= len(node):
                raise ConfigError(
                    f"{path}: {where} is not a list with an item {p}; cannot set {key}"
                )
            node = node[p]
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"{path}: {where} is not a mapping; cannot set {key}")
        if p not in node or node[p] is None:
            node[p] = new_map()
        elif not isinstance(node[p], (dict, list)):
            raise ConfigError(
                f"{path}: {where} is {node[p]!r}, not a mapping; cannot set {key} under it"
            )
        node = node[p]
    last = parts[-1]
    if isinstance(last, int):
        if not isinstance(node, list) or last >= len(node):
            raise ConfigError(f"{path}: {key}: no list item {last} to set")
        old = node[last]
    elif not isinstance(node, dict):
        raise ConfigError(f"{path}: the parent of {key} is not a mapping; cannot set it")
    else:
        old = node.get(last, ADDED)
    node[last] = value
    return old


def _json_text(text: str, tree: Any, targets: list[tuple[str, Any, str]], patch: Patch) -> str:
    for key, value, change in targets:
        old = _set(tree, key, value, dict, patch.path)
        patch.edits.append(Edit(key, old, value, change))
    m = re.search(r"\n([ \t]+)\S", text)
    indent: str | int | None = None
    if m:
        indent = m.group(1) if "\t" in m.group(1) else len(m.group(1))
    out = json.dumps(tree, indent=indent, ensure_ascii=False)
    return out + ("\n" if text.endswith("\n") else "")


def _yaml_text(text: str, targets: list[tuple[str, Any, str]], patch: Patch) -> str:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    yaml = _round_trip(YAML, text)
    try:
        data = yaml.load(text)
    except YAMLError as e:  # what PyYAML lets pass and the round-trip parser does not
        reason = " ".join(str(getattr(e, "problem", None) or e).split())
        raise ConfigError(f"{patch.path}: cannot patch this YAML ({reason})") from None
    for key, value, change in targets:
        shared = _shared_anchor(data, key)
        if shared:
            patch.refused.append(
                f"{change}: {key} is inside the YAML anchor &{shared}, shared by every place "
                "that uses it; edit it by hand"
            )
            continue
        old = _set(data, key, value, CommentedMap, patch.path)
        patch.edits.append(Edit(key, _plain(old), value, change))
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _shared_anchor(data: Any, key: str) -> str | None:
    """The anchor of a map or list on ``key``'s path that the file shares (``base: &b {...}``
    / ``run: *b``): one edit there would change every place that uses it."""
    node = data
    for part in _parts(key)[:-1]:
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None  # created by the edit: nothing shared
        anchor = getattr(getattr(node, "anchor", None), "value", None)
        if anchor:
            return str(anchor)
    return None


def _round_trip(yaml_class: Any, text: str) -> Any:
    """A round-trip YAML whose new floats PyYAML reads back as floats and whose block sequences
    keep the file's indentation."""
    yaml = yaml_class(typ="rt")
    yaml.Representer, yaml.Constructor = _representer(), _constructor()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never fold a long line the file did not fold
    m = re.search(r"^( *)[^\s#-][^\n]*:\s*\n( *)- ", text, re.M)
    if m and len(m.group(2)) > len(m.group(1)):
        step = len(m.group(2)) - len(m.group(1))
        yaml.indent(mapping=2, sequence=step + 2, offset=step)
    return yaml


class _FileFloat(str):
    """A float as the file spells it: ruamel re-formats the floats it reads and can drop a
    digit (6.298590155427021e+16 → 6.29859015542702e+16), so untouched floats are kept as text
    (``number`` holds the value)."""

    number: float


_REPRESENTER: Any = None
_CONSTRUCTOR: Any = None


def _constructor() -> Any:
    """ruamel's round-trip constructor, reading floats as :class:`_FileFloat`."""
    global _CONSTRUCTOR
    if _CONSTRUCTOR is None:
        from ruamel.yaml.constructor import RoundTripConstructor

        class Constructor(RoundTripConstructor):  # type: ignore[misc]
            pass

        def float_of(self: Any, node: Any) -> _FileFloat:
            out = _FileFloat(node.value)
            out.number = float(RoundTripConstructor.construct_yaml_float(self, node))
            return out

        Constructor.add_constructor("tag:yaml.org,2002:float", float_of)
        _CONSTRUCTOR = Constructor
    return _CONSTRUCTOR


def _representer() -> Any:
    """ruamel's round-trip representer, writing new floats with :func:`_yaml_float` (a floats
    read from the file keeps its own spelling: ruamel gives it another type)."""
    global _REPRESENTER
    if _REPRESENTER is None:
        from ruamel.yaml.representer import RoundTripRepresenter

        class Representer(RoundTripRepresenter):  # type: ignore[misc]
            pass

        def float_repr(rep: Any, value: float) -> Any:
            return rep.represent_scalar("tag:yaml.org,2002:float", _yaml_float(value))

        def null_repr(rep: Any, _value: None) -> Any:
            return rep.represent_scalar("tag:yaml.org,2002:null", "null")

        def file_float_repr(rep: Any, value: _FileFloat) -> Any:
            return rep.represent_scalar("tag:yaml.org,2002:float", str(value))

        Representer.add_representer(_FileFloat, file_float_repr)
        Representer.add_representer(float, float_repr)
        Representer.add_representer(type(None), null_repr)
        _REPRESENTER = Representer
    return _REPRESENTER


def _yaml_float(x: float) -> str:
    """A float PyYAML (YAML 1.1) reads back as a float: ``1.0e-05``, ``.inf``, ``.nan``."""
    if math.isnan(x):
        return ".nan"
    if math.isinf(x):
        return ".inf" if x > 0 else "-.inf"
    s = repr(x)
    if "e" in s:
        mant, exp = s.split("e")
        if "." not in mant:
            mant += ".0"
        return f"{mant}e{exp}"
    return s


def _plain(v: Any) -> Any:
    """A round-trip scalar (ScalarFloat...) as its plain Python value, for the summary."""
    if isinstance(v, _FileFloat):
        return v.number
    if isinstance(v, bool) or v is None or v == ADDED:
        return v
    if isinstance(v, float):
        return float(v)
    if isinstance(v, int):
        return int(v)
    return v


def _check(patch: Patch) -> None:
    """Parse the patched text back (as the trainer and the config reader will) and check every
    edited key holds its new value; a ConfigError instead of a wrong file."""
    source = f"{patch.path} (patched)"
    if patch.path.suffix == ".json" or patch.text.lstrip().startswith("{"):
        tree = safe_io.parse_json(patch.text, source=source, error=ConfigError)
    else:
        tree = safe_io.parse_yaml(patch.text, source=source, error=ConfigError)
    for e in patch.edits:
        found, got = _get(tree, _parts(e.key))
        if not found and isinstance(tree, dict) and e.key in tree:
            found, got = True, tree[e.key]
        if not found or not _equal(got, e.new):
            raise ConfigError(
                f"{patch.path}: patching {e.key} did not read back as {e.new!r} (got {got!r}); "
                "nothing written"
            )
    edited = [_parts(e.key) for e in patch.edits] + [[e.key] for e in patch.edits]
    for parts, before in _leaves(patch.original, []):
        if any(parts[: len(p)] == p for p in edited):
            continue
        found, got = _get(tree, parts)
        if not found or not _equal(got, before):
            where = ".".join(str(x) for x in parts)
            raise ConfigError(
                f"{patch.path}: patching would change {where} ({before!r} → {got!r}), which "
                "no change names; nothing written"
            )


def _leaves(node: Any, prefix: list[str | int]) -> list[tuple[list[str | int], Any]]:
    """(path, value) of every scalar under ``node``."""
    if isinstance(node, dict):
        return [leaf for k, v in node.items() for leaf in _leaves(v, [*prefix, k])]
    if isinstance(node, list):
        return [leaf for i, v in enumerate(node) for leaf in _leaves(v, [*prefix, i])]
    return [(prefix, node)]


def _equal(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


def _show(v: Any) -> str:
    if v == ADDED or v is None:
        return "(not set)" if v == ADDED else "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)
