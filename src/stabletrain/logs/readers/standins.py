"""The loss of a log that prints none under that name: a cross-entropy, or a perplexity.

Many trainers never write the word ``loss``: OpenNMT-py prints ``acc``, ``ppl`` and ``xent``,
Lua/Torch seq2seq scripts ``PPL`` and ``Validation perplexity``, MatConvNet ``objective``. The
quantity is still the loss the run minimises, and a detector that never sees it cannot say the
run went non-finite (``ppl: nan; xent: nan``). This module fills ``loss`` / ``eval_loss`` from
the log's own stand-in, in this order:

1. a metric whose name is a cross-entropy or an objective
   (:data:`stabletrain.logs.readers.fields.CROSS_ENTROPY`): its value;
2. a perplexity (the role the text reader gave it): ``ln(ppl)``, the cross-entropy a perplexity
   is the exponential of (``nan`` stays ``nan``, ``inf`` stays ``inf``; a perplexity at or below
   zero is no perplexity and is left out).

Only for a kind (train or eval) of which no record holds a loss of its own: a log that prints
``loss`` and ``ppl`` keeps its loss. The report's metric table says what was done
(``xent → loss (stand-in: no 'loss' in the log)``) and a note repeats it.

Limits: list-of-record readers only (text, JSON lines); a CSV/TensorBoard column named ``ppl``
alone still needs ``--map``. A perplexity of another base (``2 ** H``) is read as ``e ** H``:
the scale changes, a non-finite value does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import standin_name
from stabletrain.records import StepRecord

__all__ = ["fill_standin_loss"]


def fill_standin_loss(data: RunData) -> None:
    """Give ``loss`` / ``eval_loss`` to the records of ``data.raw`` from the log's stand-in (see
    the module docstring), per kind, when no record of that kind holds one."""
    raw = data.raw
    if not isinstance(raw, list) or not raw:
        return
    if not any(
        "perplexity" in role or role == "loss component" or standin_name(n)
        for n, role in data.roles.items()
    ):
        return  # nothing to stand in (the common case: no pass over the records)
    for kind, field_ in (("train", "loss"), ("eval", "eval_loss")):
        recs = [r for r in raw if (r.kind == "train") == (kind == "train")]
        if not recs or any(getattr(r, field_) is not None for r in recs):
            continue
        names = {k for r in recs for k in r.metrics}
        xent = sorted(n for n in names if standin_name(n))
        ppl = sorted(n for n in names if "perplexity" in data.roles.get(n, ""))
        parts = sorted(n for n in names if data.roles.get(n, "").endswith("loss component"))
        if xent:
            _fill(recs, field_, xent[0], _same)
            data.roles[xent[0]] = f"{field_} (stand-in: no 'loss' in the log)"
            data.notes.append(f"{kind} loss read from '{xent[0]}': the log prints no 'loss'")
        elif len(parts) >= 2:
            for r in recs:
                got = [r.metrics[n] for n in parts if n in r.metrics]
                if len(got) >= 2:
                    setattr(r, field_, math.fsum(got) if all(map(math.isfinite, got)) else sum(got))
            for n in parts:
                data.roles[n] = f"{field_} term (stand-in: {field_} = their sum)"
            data.notes.append(
                f"{kind} loss is the sum of {', '.join(parts)}: the log prints the terms of its "
                "loss, not the total"
            )
        elif ppl:
            _fill(recs, field_, ppl[0], _ln)
            data.roles[ppl[0]] = f"perplexity ({field_} = ln of it: no 'loss' in the log)"
            data.notes.append(
                f"{kind} loss is ln('{ppl[0]}'): the log prints a perplexity and no 'loss'"
            )


def _same(x: float) -> float | None:
    return x


def _ln(x: float) -> float | None:
    if math.isnan(x) or x == math.inf:
        return x
    return math.log(x) if x > 0 else None


def _fill(
    recs: list[StepRecord], field_: str, name: str, fn: Callable[[float], float | None]
) -> None:
    for r in recs:
        v = r.metrics.get(name)
        if v is None:
            continue
        y = fn(v)
        if y is not None:
            setattr(r, field_, y)
