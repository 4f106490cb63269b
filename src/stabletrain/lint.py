"""Lint: findings from config files alone, before a GPU-hour is spent.

``lint(paths)`` reads each file (stabletrain YAML, generic YAML, HF TrainingArguments JSON,
DeepSpeed ds_config.json, a launch script's ``--key value`` arguments, a Python config's literal
assignments; notebooks and INI files are refused as not understood) as the settings of ONE run — the usual pair is a training config plus
its ds_config, as in seed 002 — and judges them in two passes:

1. **each file alone**, completed by the other files only where it says nothing: a file's own
   finding (one the rules give on that file by itself, and still give once the other files fill
   its gaps, whose fix does not change another file's setting) names the file (``evidence.file``; with several files also the title). A
   ``ds_config.json`` with ``gradient_clipping: 0`` beside a YAML clipping at 1.0 is reported,
   where a first-file-wins merge hid it; a file that merely lacks a clip the other file sets is
   not.
2. **the files together**: a setting two files give different values is a ``config-conflict``
   naming both files, keys and values; a finding that needs settings from several files (an LR
   in one, no warm-up in the other) names them all (``evidence.files``).

The report's ``facts`` are the files merged, the first file given winning a conflict. Files in
which no training setting is found are a ConfigError (exit 2), never a clean verdict. A key set
to ``"auto"`` (HF fills it from the TrainingArguments at run time) is not judged in its file: a
finding whose fixes change only such keys is left out.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

from stabletrain.errors import ConfigError
from stabletrain.records import ConfigFacts, Finding, Fix
from stabletrain.report import chain
from stabletrain.report.model import Report

PathArg = str | os.PathLike[str]


def lint(paths: PathArg | Sequence[PathArg]) -> Report:
    """Lint one config file or several files of the same run; raises ConfigError when unreadable."""
    from stabletrain.configs.read import read_config

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ConfigError("lint: no config file given")
    items = list(dict.fromkeys(items))  # a file given twice is one file of the run
    for p in items:
        _claimed(p)
    files = [(str(p), read_config(p)) for p in items]
    facts = files[0][1]
    for _, more in files[1:]:
        facts = facts.merged(more)
    names = ", ".join(name for name, _ in files)
    if not facts.facts:  # a clean verdict on a file we did not understand would be a lie
        raise ConfigError(
            f"{names}: no training settings found (looked for keys such as learning_rate/lr, "
            "batch_size, max_grad_norm, fp16/bf16, warmup, scheduler patience); nothing to lint"
        )
    delegated = set().union(*(_delegated(p) for p in items))
    findings = [f for f in judge(files) if not _settled_elsewhere(f, delegated)]
    return Report(
        findings=chain.order(findings),
        facts=facts,
        source=names,
        format=facts.format,
        config=names,
        kind="lint",
    )


#: suffixes of files that are programs, not config data: lint does not read them
_NOT_CONFIG = {
    ".ipynb": "a notebook",
    ".cfg": "an INI file",
    ".ini": "an INI file",
}


def _claimed(path: PathArg) -> None:
    """Refuse, naming the file, a format lint does not read (a verdict on it would be a guess)."""
    what = _NOT_CONFIG.get(Path(path).suffix.lower())
    if what is not None:
        raise ConfigError(
            f"{path}: {what}; not understood: lint reads YAML and JSON configs (stabletrain, "
            "HF TrainingArguments, DeepSpeed ds_config, generic YAML/JSON), so nothing was linted"
        )


def _delegated(path: PathArg) -> set[str]:
    """Dotted keys a file sets to "auto": HF fills them at run time from another file (the
    TrainingArguments), so this file has no value of its own to judge there."""
    from stabletrain.configs.keys import walk
    from stabletrain.configs.read import load_tree

    tree, _ = load_tree(Path(path), python_data_tags=True)
    return {
        dotted
        for dotted, _, value in walk(tree)
        if isinstance(value, str) and value.strip().lower() == "auto"
    }


def _settled_elsewhere(f: Finding, delegated: set[str]) -> bool:
    """A finding whose every fix changes only keys set to "auto" is not this config's to make."""
    keys = [k for fx in f.fixes for k in fx.changes]
    return bool(keys) and all(k in delegated for k in keys)


def judge(files: list[tuple[str, ConfigFacts]]) -> list[Finding]:
    """Each file's own findings, then the findings of the files together (module docstring)."""
    from stabletrain.lint_rules import lint_facts

    several = len(files) > 1
    own: list[Finding] = []
    together: dict[str, tuple[Finding, list[str]]] = {}
    for i, (name, facts) in enumerate(files):
        alone = {f.id for f in lint_facts(facts)}
        view = facts
        for j, (_, other) in enumerate(files):
            if j != i:
                view = view.merged(other)
        for f in lint_facts(view):
            touches = _files_of(f, view)
            if f.id in alone and (not touches or name in touches):
                title = f"{Path(name).name}: {f.title}" if several else f.title
                own.append(_config(f, title=title, evidence={**f.evidence, "file": name}))
            elif f.id not in together:
                together[f.id] = (f, touches or [n for n, _ in files])
    out = own + conflicts(files)
    have = {f.id for f in out}
    for f, names in together.values():
        if f.id not in have:
            shown = " + ".join(Path(n).name for n in names)
            # a string, not a list: renderers print evidence values as they are
            evidence = {**f.evidence, "files": ", ".join(names)}
            out.append(_config(f, title=f"{shown}: {f.title}", evidence=evidence))
    return out


def _files_of(f: Finding, facts: ConfigFacts) -> list[str]:
    """The files holding the settings a finding's fixes change (its own keys), in order."""
    keys = {k for fx in f.fixes for k in fx.changes}
    out: list[str] = []
    for fact in facts.facts.values():
        if fact.key in keys and fact.file and fact.file not in out:
            out.append(fact.file)
    return out


def conflicts(files: list[tuple[str, ConfigFacts]]) -> list[Finding]:
    """``config-conflict``: a setting two files give different values (both named, with keys)."""
    from stabletrain.configs.read import same_value

    out: list[Finding] = []
    seen: set[str] = set()
    for i, (_, facts) in enumerate(files):
        for name, fact in facts.facts.items():
            if name in seen:
                continue
            others = [
                other.facts[name]
                for _, other in files[i + 1 :]
                if name in other and not same_value(other.facts[name].value, fact.value)
            ]
            if not others:
                continue
            seen.add(name)
            both = [fact, *others]
            said = "; ".join(f"{f.where()} = {f.value!r}" for f in both)
            out.append(
                Finding(
                    id="config-conflict",
                    severity="warning",
                    title=f"{name} set differently in {len(both)} files: {said}",
                    explanation=(
                        f"The files of this run disagree on {name}: {said}. Which value the run "
                        "uses depends on how the framework combines them (DeepSpeed's ds_config "
                        "overrides the trainer's clip and precision), so one of them is not "
                        "what you meant. Set it once, or to the same value in every file."
                    ),
                    evidence={"setting": name, "files": ", ".join(str(f.file) for f in both)},
                    fixes=[Fix(description=f"Give {name} one value in every file")],
                    source="config",
                )
            )
    return out


def _config(f: Finding, **changes: object) -> Finding:
    return replace(f, source="config", **changes)  # type: ignore[arg-type]


class _CallableModule(types.ModuleType):
    """``stabletrain.lint`` names both this module and its function (the public API
    ``stabletrain.lint(path)``). Once the submodule is imported, Python binds the package
    attribute to the module, so the module itself must answer the call."""

    def __call__(self, paths: PathArg | Sequence[PathArg]) -> Report:
        return lint(paths)


sys.modules[__name__].__class__ = _CallableModule
