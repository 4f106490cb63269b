"""Map foreign metric names (CSV columns, JSON keys, TensorBoard tags) onto StepRecord fields.

One table for every reader, so ``train/loss`` (HF, Lightning, stabletrain TensorBoard),
``train_loss`` (Lightning CSV), ``loss`` (Keras, HF console), ``lm loss`` (Megatron) and
``val_loss``/``eval/loss`` all land in the same place. Unknown numeric names go to
``metrics`` so nothing is silently lost. A user ``mapping`` ({record field: their name}) wins
over the table.

Limits: names are matched after lower-casing and stripping a train/eval prefix or suffix; an
exotic name that looks like a known one (``norm`` meaning something else) will be mis-mapped —
pass a mapping then.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from stabletrain.records import StepRecord

Kind = Literal["train", "eval", "step", "skip"]
#: (kind, StepRecord field or None, metric name when the field is None)
Slot = tuple[Kind, str | None, str]

_TRAIN_ALIASES: dict[str, str] = {
    "loss": "loss",
    "lm loss": "loss",
    "lm_loss": "loss",
    "total_loss": "loss",
    "grad_norm": "grad_norm",
    "grad norm": "grad_norm",
    "gradnorm": "grad_norm",
    "gradient_norm": "grad_norm",
    "grad_norm_total": "grad_norm",
    "norm": "grad_norm",
    "lr": "lr",
    "learning_rate": "lr",
    "learning rate": "lr",
    "loss_scale": "loss_scale",
    "loss scale": "loss_scale",
    # torch.cuda.amp.GradScaler's scale, as scripts name it (insightface's ``Fp16 Grad Scale``)
    "grad_scale": "loss_scale",
    "grad scale": "loss_scale",
    "clip_coef": "clip_coef",
    "epoch": "epoch",
    "acc": "accuracy",
    "accuracy": "accuracy",
    "step_time": "step_time",
    "samples": "samples",
    "tokens": "tokens",
    "skipped": "skipped",
    "current_lr": "lr",
    "avg_loss": "loss",
    "gnorm": "grad_norm",  # fairseq
    "acc1": "accuracy",  # torchvision / timm (percent)
    "acc@1": "accuracy",
    "top1": "accuracy",
    "top1_acc": "accuracy",
}
_EVAL_ALIASES: dict[str, str] = {
    "loss": "eval_loss",
    "lm loss": "eval_loss",
    "acc": "eval_accuracy",
    "accuracy": "eval_accuracy",
    "avg_loss": "eval_loss",
    "epoch": "epoch",
}
#: HF Trainer's end-of-training summary (``train/train_loss`` is the mean of the whole run)
_SUMMARY_NAMES = frozenset(
    {
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
        "train_loss",
    }
)
_STEP_NAMES = frozenset(
    {"step", "global_step", "iteration", "iter", "steps", "trainer/global_step", "num_updates"}
)
#: bookkeeping that is not a metric of training stability
_SKIP_NAMES = frozenset(
    {"wall_time", "timestamp", "time_stamp", "kind", "action", "rank", "percentage", "metrics"}
)
_EVAL_PREFIXES = (
    "evalstats/",
    "eval/",
    "eval_",
    "val/",
    "val_",
    "validation/",
    "validation_",
    "valid/",
    "valid_",
    "test/",
    "test_",
)
_EVAL_SUFFIXES = ("/val", "/eval", "/validation", "_val")
_TRAIN_PREFIXES = ("trainiterstats/", "train/", "train_", "training/", "training_", "epoch_")
#: Lightning's ``self.log(..., on_step=True, on_epoch=True)`` writes ``loss_step`` per step and
#: ``loss_epoch`` (the epoch's mean) per epoch; :func:`build_lookup` keeps an ``_epoch`` mean
#: out of the field when its ``_step`` twin is there (one series per field)
_TRAIN_SUFFIXES = ("/train", "_step", "_epoch")


def classify(name: str) -> Slot:
    """Where a metric named ``name`` goes: ``("train", "loss", "loss")``, ``("eval", None, "f1")``..."""
    k = name.strip().lower()
    if k in _STEP_NAMES:
        return ("step", None, name)
    if k in _SKIP_NAMES:
        return ("skip", None, name)
    for p in _EVAL_PREFIXES:
        if k.startswith(p):
            return _eval_slot(k[len(p) :], name)
    for s in _EVAL_SUFFIXES:
        if k.endswith(s):
            return _eval_slot(k[: -len(s)], name)
    base = k
    for p in _TRAIN_PREFIXES:
        if base.startswith(p):
            base = base[len(p) :]
            break
    for s in _TRAIN_SUFFIXES:
        if base.endswith(s):
            base = base[: -len(s)]
            break
    if base in _SUMMARY_NAMES and base != k:
        return ("skip", None, name)
    if base in _TRAIN_ALIASES:
        return ("train", _TRAIN_ALIASES[base], name)
    if base in _SHARE_NAMES:
        return ("train", None, "clip_fraction")
    stat = _STAT_PREFIX.match(base)
    if stat is not None and _TRAIN_ALIASES.get(stat[1]) in _STAT_FIELDS:
        return ("train", _TRAIN_ALIASES[stat[1]], name)  # avr_loss, running_loss, mean_acc
    # Lightning LearningRateMonitor: lr-AdamW, lr-AdamW/pg1 (the first param group is the LR)
    if base.startswith("lr-") and (base.endswith("/pg1") or "/" not in base):
        return ("train", "lr", name)
    leaf, split_eval = _path_leaf(base)
    if leaf is not None:
        if split_eval:
            return _eval_slot(leaf, name)
        if leaf in _TRAIN_ALIASES and _TRAIN_ALIASES[leaf] != "epoch":
            return ("train", _TRAIN_ALIASES[leaf], name)
    task_eval = _task_eval_leaf(k)
    if task_eval is not None:
        return ("eval", _EVAL_ALIASES[task_eval], name)
    return ("train", None, name)


def _task_eval_leaf(name: str) -> str | None:
    """The loss/accuracy leaf of a task-prefixed eval key (HF Trainer with several eval sets:
    ``mrpc_en_eval_loss``, ``mrpc_en_eval_accuracy``), or None: an ``eval``/``val``/``valid``/
    ``test`` word after the first, right before a loss or accuracy name."""
    parts = name.split("_")
    if len(parts) < 3 or parts[-1] not in ("loss", "accuracy", "acc"):
        return None
    return parts[-1] if parts[-2] in _EVAL_SEGMENTS else None


#: a path segment that says the split (``validation/main/loss``, ``metrics/val/acc``)
_EVAL_SEGMENTS = frozenset({"val", "valid", "validation", "eval", "test"})


def _path_leaf(name: str) -> tuple[str | None, bool]:
    """A reporter path's last segment and whether another segment names an eval split
    (Chainer's ``main/loss`` and ``validation/main/accuracy``); ``(None, False)`` for a name
    that is not a path. The leaf counts only when the table knows it (``loss/aux`` stays a
    metric of its own)."""
    if "/" not in name:
        return None, False
    parts = [p for p in name.split("/") if p]
    if len(parts) < 2:
        return None, False
    return parts[-1], any(p in _EVAL_SEGMENTS for p in parts[:-1])


def _eval_slot(base: str, name: str) -> Slot:
    if base.endswith("_epoch"):  # Lightning's epoch mean (``val_loss_epoch``)
        base = base[: -len("_epoch")]
    field = _EVAL_ALIASES.get(base)
    if field is None:
        leaf, _ = _path_leaf(base)
        if leaf is not None and leaf != "epoch":
            field = _EVAL_ALIASES.get(leaf)
    return ("eval", field, name)


def build_lookup(names: list[str], mapping: dict[str, str] | None) -> dict[str, Slot]:
    """Slots for ``names`` with a user mapping ({field: name}) applied on top of the table."""
    lookup = {n: classify(n) for n in names}
    lower = {n.lower() for n in names}
    for n, (kind, field, metric) in list(lookup.items()):
        twin = n.lower().removesuffix("_epoch") + "_step"
        if field is not None and n.lower().endswith("_epoch") and twin in lower:
            lookup[n] = (kind, None, metric)  # the per-step series fills the field
    for field, src in (mapping or {}).items():
        if field == "step":
            lookup[src] = ("step", None, src)
        elif field.startswith("eval_"):
            lookup[src] = ("eval", field, src)
        else:
            lookup[src] = ("train", field, src)
        # a column the user re-mapped elsewhere must not also fill the same field by its own name
        for n, slot in list(lookup.items()):
            if n != src and slot[1] == field and n not in (mapping or {}).values():
                lookup[n] = (slot[0], None, n)
    return lookup


def to_float(v: Any) -> float | None:
    """A number from a JSON/CSV/text value: ``"nan"``, ``"NaN"``, ``"inf"`` included; a percent
    string is the fraction it writes (fairseq's ``"clip": "100%"`` -> 1.0); else None."""
    if v is None or isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str):
        s = v.strip()
        if not s:
            return None
        try:
            return float(s)
        except ValueError:
            return _percent(s)
    return None


def _percent(s: str) -> float | None:
    if len(s) < 2 or s[-1] != "%":
        return None
    try:
        return float(s[:-1]) / 100.0
    except ValueError:
        return None


#: a running statistic of a quantity is that quantity's reading (kohya's ``avr_loss``,
#: ``running_loss``, ``smoothed_loss``, ``mean_accuracy``): the loss a script chose to print
_STAT_PREFIX = re.compile(r"(?:avg|avr|average|mean|running|smoothed|smooth|ema)[_ ]?(\w+)$")
_STAT_FIELDS = frozenset({"loss", "accuracy", "grad_norm"})

#: names of the share of updates the trainer clipped, by name alone (``detectors.clipping``
#: reads the metric ``clip_fraction``)
_SHARE_NAMES = frozenset(
    {"clip_fraction", "clip_frac", "clipfrac", "clipped_fraction", "frac_clipped"}
)
#: names that are the clipped share only when their values are written as percentages: a bare
#: ``clip`` of 1.0 may be a clipping threshold, ``"clip": "100%"`` (fairseq) is a share
_CLIP_NAMES = frozenset({"clip", "clipped", "clip_rate", "clip_pct", "clip_percent"})


def percent_shares(rows: list[dict[str, Any]]) -> dict[str, Slot]:
    """Slots for the clipping-share columns of ``rows`` that the values themselves mark as
    shares: a clip-named key whose string values end in ``%``. ``to_float`` reads them as
    fractions; a clip key without ``%`` keeps its own name (a threshold is no share)."""
    out: dict[str, Slot] = {}
    for row in rows:
        for k, v in row.items():
            if k in out or k.lower() not in _CLIP_NAMES:
                continue
            if isinstance(v, str) and v.strip().endswith("%"):
                out[k] = ("train", None, "clip_fraction")
    return out


#: metric names (lower case, a train/eval prefix removed) that are the run's loss under another
#: name: a cross-entropy or the objective the optimiser minimises (OpenNMT's ``xent``,
#: MatConvNet's ``objective``); :mod:`.standins` reads them as the loss of a log that prints none
CROSS_ENTROPY = frozenset(
    {
        "xent",
        "nll",
        "nll_loss",
        "ce",
        "ce_loss",
        "cross_entropy",
        "cross-entropy",
        "crossentropy",
        "objective",
    }
)
_STANDIN_PREFIX = re.compile(
    r"^(?:train|training|valid|val|validation|eval|test|info\.train)[_ ./]"
)


def standin_name(name: str) -> bool:
    """Whether ``name`` is one of :data:`CROSS_ENTROPY`, a split prefix aside."""
    k = name.strip().lower()
    return k in CROSS_ENTROPY or _STANDIN_PREFIX.sub("", k) in CROSS_ENTROPY


_INT_FIELDS = frozenset({"samples", "tokens"})


def records_from_row(
    row: dict[str, Any], step: int, lookup: dict[str, Slot]
) -> tuple[StepRecord | None, StepRecord | None]:
    """Split one row into a train record and/or an eval record at ``step`` (None when empty)."""
    train: dict[str, Any] = {}
    tmetrics: dict[str, float] = {}
    evals: dict[str, Any] = {}
    emetrics: dict[str, float] = {}
    epoch: float | None = None
    for k, v in row.items():
        slot = lookup.get(k)
        if slot is None:
            slot = lookup[k] = classify(k)
        kind, field, metric = slot
        if kind == "step" or kind == "skip":
            continue
        x = to_float(v)
        if x is None:
            continue
        if field == "epoch":
            epoch = x
        elif kind == "train":
            if field is None:
                tmetrics[metric] = x
            elif field == "skipped":
                train["skipped"] = bool(x)
            elif field in _INT_FIELDS and not math.isfinite(x):
                tmetrics[metric] = x  # ``consumed samples: inf`` is data, not a count
            else:
                train[field] = int(x) if field in _INT_FIELDS else x
        elif field is None:
            emetrics[metric] = x
        else:
            evals[field] = x
    tr = ev = None
    # train metrics beside eval values are bookkeeping (``eval_runtime``), unless one of them is
    # the run's loss under another name (MatConvNet's ``objective`` beside ``val_objective``)
    if train or (tmetrics and ((not evals and not emetrics) or any(map(standin_name, tmetrics)))):
        tr = StepRecord(step=step, epoch=epoch, metrics=tmetrics, **train)
    elif tmetrics and (evals or emetrics):
        emetrics.update(tmetrics)  # e.g. eval_runtime rows: bookkeeping beside the eval values
    if evals or emetrics:
        ev = StepRecord(step=step, kind="eval", epoch=epoch, metrics=emetrics, **evals)
    return tr, ev


def step_of(row: dict[str, Any], lookup: dict[str, Slot]) -> int | None:
    """The step a row names (``step``/``global_step``/``iteration``...), or None."""
    for k, v in row.items():
        slot = lookup.get(k) or classify(k)
        if slot[0] == "step":
            x = to_float(v)
            if x is not None and math.isfinite(x):
                return int(x)
    return None
