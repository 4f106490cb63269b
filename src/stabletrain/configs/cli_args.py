"""A launch script's command-line arguments as a config tree: ``--key value`` pairs.

Many runs keep their settings in the command that starts them (``train.sh`` calling HF's
``run_translation.py``, LlamaFactory's ``train_bash.py``, DeepSpeed or torchrun launchers), where
the option names are the same keys a YAML or TrainingArguments JSON would hold. This module turns
such a script into ``{"learning_rate": "5e-05", "fp16": True, ...}`` for the ordinary key search
(:mod:`stabletrain.configs.keys`). Nothing is executed: the text is split as a shell would split
it (``shlex``), line continuations joined and comments dropped.

Read: ``--key value``, ``--key=value`` and a bare ``--flag`` (true); ``-`` in names becomes ``_``
(Megatron's ``--clip-grad`` is ``clip_grad``); "True"/"False" are booleans. Skipped: values that
hold a shell variable (``$LR``, ``${LR}``: unknown until run time) - except the pretrained model's
path, whose literal part still names the model (``${work_dir}/pretrain_models/mt0-base`` is an
mT0), single-dash options (``-n 1`` means different things to different programs), a key given
again (the first value wins, as in the key search), and a line over ``MAX_LINE`` characters (no
command a person launches is that long, and ``shlex`` takes time quadratic in a token's length: a
1 MB line took 26 s). A script
without any ``--key`` is not a config: the caller says so.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

__all__ = ["parse_command"]

_CONTINUATION = re.compile(r"\\\r?\n")
_NEGATIVE_NUMBER = re.compile(r"^-\d")
#: options naming the pretrained model: kept with a shell variable in them (module docstring)
_MODEL_OPTIONS = frozenset({"model_name_or_path", "base_model", "pretrained_model_name_or_path"})
#: longer (joined) lines are skipped: see the module docstring
MAX_LINE = 20_000


def parse_command(text: str) -> dict[str, Any]:
    """The ``--key value`` arguments of every command in ``text`` (first occurrence wins)."""
    out: dict[str, Any] = {}
    for line in _CONTINUATION.sub(" ", text).splitlines():
        if len(line) > MAX_LINE:
            continue
        try:
            tokens = shlex.split(line, comments=True)
        except ValueError:  # an unclosed quote: not a line we can split as the shell would
            continue
        i = 0
        while i < len(tokens):
            tok = tokens[i]
            i += 1
            if not tok.startswith("--") or len(tok) == 2:
                continue
            key, eq, value = tok[2:].partition("=")
            if not eq:
                nxt = tokens[i] if i < len(tokens) else None
                if nxt is not None and (not nxt.startswith("-") or _NEGATIVE_NUMBER.match(nxt)):
                    value, i = nxt, i + 1
                else:
                    out.setdefault(key.replace("-", "_"), True)
                    continue
            name = key.replace("-", "_")
            if not name or ("$" in value and name not in _MODEL_OPTIONS):
                continue
            out.setdefault(name, _value(value))
    return out


def _value(text: str) -> Any:
    low = text.strip().lower()
    if low == "true":
        return True
    if low == "false":
        return False
    return text
