"""Lint: findings from config files alone, before a GPU-hour is spent.

``lint(paths)`` reads each file (stabletrain YAML, generic YAML, HF TrainingArguments JSON,
DeepSpeed ds_config.json), merges them as the settings of ONE run — the usual pair is a
training config plus its ds_config, as in seed 002 — and runs the config rules
(``stabletrain.lint_rules``). When two files set the same fact, the first file given wins.
Lint unrelated configs with one call each. Files in which no training setting is found are a
ConfigError (exit 2), never a clean verdict.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Sequence

from stabletrain.errors import ConfigError
from stabletrain.records import ConfigFacts
from stabletrain.report import chain
from stabletrain.report.model import Report

PathArg = str | os.PathLike[str]


def lint(paths: PathArg | Sequence[PathArg]) -> Report:
    """Lint one config file or several files of the same run; raises ConfigError when unreadable."""
    from stabletrain.configs.read import read_config
    from stabletrain.lint_rules import lint_facts

    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    if not items:
        raise ConfigError("lint: no config file given")
    facts: ConfigFacts = read_config(items[0])
    for p in items[1:]:
        facts = facts.merged(read_config(p))
    if not facts.facts:  # a clean verdict on a file we did not understand would be a lie
        names = ", ".join(str(p) for p in items)
        raise ConfigError(
            f"{names}: no training settings found (looked for keys such as learning_rate/lr, "
            "batch_size, max_grad_norm, fp16/bf16, warmup, scheduler patience); nothing to lint"
        )
    findings = list(lint_facts(facts))
    for f in findings:
        f.source = "config"
    names = ", ".join(str(p) for p in items)
    return Report(
        findings=chain.order(findings),
        facts=facts,
        source=names,
        format=facts.format,
        config=names,
        kind="lint",
    )


class _CallableModule(types.ModuleType):
    """``stabletrain.lint`` names both this module and its function (the public API
    ``stabletrain.lint(path)``). Once the submodule is imported, Python binds the package
    attribute to the module, so the module itself must answer the call."""

    def __call__(self, paths: PathArg | Sequence[PathArg]) -> Report:
        return lint(paths)


sys.modules[__name__].__class__ = _CallableModule
