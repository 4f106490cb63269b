"""A Python config file's literal settings as a config tree, read without running it.

nanoGPT (``learning_rate = 6e-4``), mmengine/MMDetection (``optim_wrapper = dict(optimizer=
dict(type='SGD', lr=0.02))``) and scripts that build ``TrainingArguments(learning_rate=2e-5,
fp16=True)`` keep their settings as Python. This module parses the file with :mod:`ast` (nothing is
imported or executed) and keeps what is literal:

- a top-level ``name = value`` (or ``name: T = value``) assignment is the key ``name``;
- a value is a number, string, bool or None, a list/tuple, a ``{...}`` dict with string keys, or a
  call whose arguments are keywords (``dict(lr=0.02)``, ``TrainingArguments(fp16=True)``): the
  call becomes the mapping of its keywords, with its function's name under ``type`` when
  ``dict`` is not the function (``SGD(lr=0.1)`` -> ``{"type": "SGD", "lr": 0.1}``);
- anything else (arithmetic, names of other variables, comprehensions) is left out: its value is
  known only by running the file.

A file without any literal setting is not a config: the caller says so.
"""

from __future__ import annotations

import ast
from typing import Any

__all__ = ["parse_python"]

_SKIP = object()


def parse_python(text: str) -> dict[str, Any] | None:
    """The literal top-level settings of ``text``; None when it is not valid Python."""
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    out: dict[str, Any] = {}
    for node in module.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target, value = node.targets[0], node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            target, value = node.target, node.value
        else:
            continue
        if not isinstance(target, ast.Name):
            continue
        try:
            literal = _literal(value)
        except RecursionError:
            continue
        if literal is not _SKIP:
            out.setdefault(target.id, literal)
    return out


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant):
        return node.value if isinstance(node.value, (int, float, str, bool, type(None))) else _SKIP
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        inner = _literal(node.operand)
        if isinstance(inner, (int, float)) and not isinstance(inner, bool):
            return -inner if isinstance(node.op, ast.USub) else inner
        return _SKIP
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return [i for i in items if i is not _SKIP]
    if isinstance(node, ast.Dict):
        out: dict[str, Any] = {}
        for k, v in zip(node.keys, node.values, strict=True):
            if isinstance(k, ast.Constant) and isinstance(k.value, str):
                value = _literal(v)
                if value is not _SKIP:
                    out[k.value] = value
        return out
    if isinstance(node, ast.Call):
        out = {}
        name = _call_name(node.func)
        if name and name != "dict":
            out["type"] = name
        for kw in node.keywords:
            if kw.arg is None:
                continue  # **kwargs: unknown without running
            value = _literal(kw.value)
            if value is not _SKIP:
                out[kw.arg] = value
        return out
    return _SKIP


def _call_name(func: ast.AST) -> str:
    if isinstance(func, ast.Name):
        return func.id
    if isinstance(func, ast.Attribute):
        return func.attr
    return ""
