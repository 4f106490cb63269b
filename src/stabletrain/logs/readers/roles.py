"""The role of a metric name in a text log: the dialect's names, the shared table, then the name
without its leading words.

A console line names its metrics in prose as often as in identifiers: ``loss``, ``Loss is``,
``ValLoss``, ``valid_loss``, ``valid loss``, ``lm loss``, ``Current learning rate is``, ``train_gnorm``.
This module turns each into a :data:`~stabletrain.logs.readers.fields.Slot` (train or eval, the
StepRecord field or None) and a role for the report header (``loss``, ``grad_norm``, ``throughput``,
``perplexity``...), in this order:

1. a trailing ``is``/``=``/``of`` and a unit in parentheses are dropped; ``CamelCase`` is split;
2. a ``train``/``valid``/``val``/``eval``/``test`` prefix says the split (and is removed);
3. bookkeeping (``eta``, ``memory``, ``v_num``...) is skipped;
4. the dialect's own names (``gnorm``, ``lm loss``), then the text-console names
   (:data:`~stabletrain.logs.readers.dialects.TEXT_ALIASES`: ``time`` is a step time here), then the
   shared table every reader uses (:func:`stabletrain.logs.readers.fields.classify`);
5. a name of two or three words unknown as a whole is tried without its first words
   (``Current learning rate`` -> ``learning rate``, ``avg loss`` -> ``loss``); longer names are prose.

Limits: a name the tables do not know stays a metric under its own name (``--map`` gives it a
role); a one-word remainder other than ``loss`` is not trusted (``gradient clipping of norm`` is a
setting, not a grad norm).
"""

from __future__ import annotations

import re
from typing import Any

from stabletrain.logs.readers import dialects as dl
from stabletrain.logs.readers.fields import Slot, classify

__all__ = ["role_of"]

_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_SPACES = re.compile(r"\s+")


def role_of(name: str, is_eval: bool, dialect: dl.Dialect) -> tuple[Slot, str]:
    """(slot for ``fields.records_from_row``, role) of the metric ``name`` in a line
    that is an eval line (``is_eval``) or not, written in ``dialect``."""
    orig = name.strip()
    if orig.endswith(")") and "(" in orig:
        orig = orig[: orig.index("(")].strip()
    for tail in (" is", " =", " of"):
        if orig.endswith(tail):
            orig = orig[: -len(tail)]
    base = _SPACES.sub(" ", orig.lower())
    snake = _CAMEL.sub("_", orig).lower().replace(" ", "_")  # ValLoss -> val_loss
    bare, prefix_eval = _split_prefix(base)
    if not prefix_eval and snake != base:
        bare2, prefix_eval = _split_prefix(snake)
        if prefix_eval:
            bare = bare2
    if dl.ignored(base) or dl.ignored(bare):
        return ("skip", None, name), ""
    is_eval = is_eval or prefix_eval
    alias = dialect.aliases.get(bare)
    if alias is None:
        alias = dl.TEXT_ALIASES.get(bare)
    if alias == "":
        return ("skip", None, name), ""
    kind: Any
    field_: str | None
    if alias == "step_time" and is_eval:
        return ("skip", None, name), ""  # an eval batch's timing is no training signal
    if alias is not None:
        if alias in ("throughput", "skipped_count", "clip_fraction"):
            return ("eval" if is_eval else "train", None, name), alias
        kind, field_ = "train", alias
    else:
        kind, field_, _ = classify(snake)
        if field_ is None and kind != "skip" and bare != base:
            k2, f2, _ = classify(bare)  # ``Train-accuracy``: the table knows ``accuracy``
            if f2 is not None:
                kind, field_ = k2, f2
        words = base.split(" ")
        if len(words) > 3:
            words = []  # ``Non-finite weights make every loss`` is prose, not a loss
        while field_ is None and kind != "skip" and len(words) > 1:
            words = words[1:]
            if len(words) == 1 and words[0] != "loss":
                break  # ``gradient clipping of norm`` is a setting, not a grad norm
            k2, f2, _ = classify(" ".join(words))
            if f2 is None:
                k2, f2, _ = classify("_".join(words))
            if f2 is not None:
                kind, field_ = k2, f2
        if kind in ("skip", "step") or field_ == "epoch":
            return ("skip", None, name), ""
    if is_eval and kind == "train":
        kind = "eval"
        field_ = {"loss": "eval_loss", "accuracy": "eval_accuracy"}.get(field_ or "")
    role = field_ or _role_by_name(bare)
    if kind == "eval" and not field_ and role:
        role = f"eval {role}"
    return (kind, field_, name), role


_ROLE_WORDS = (
    ("throughput", "throughput"),
    ("perplexity", "perplexity"),
    ("ppl", "perplexity"),
    ("tokens/s", "throughput"),
    ("tok/s", "throughput"),
    ("tps", "throughput"),
    ("samples/s", "throughput"),
    ("/s", "throughput"),
    ("per second", "throughput"),
)


_TRAIN_PREFIXES = ("train_", "train/", "train ", "training_", "training/", "training ", "train-")
_EVAL_PREFIXES = (
    "vali_",  # the Time-Series-Library family (Informer, Autoformer...): ``Vali Loss``
    "vali ",
    "valid_",
    "valid/",
    "valid ",
    "val_",
    "val/",
    "val ",
    "eval_",
    "eval/",
    "eval ",
    "validation_",
    "validation/",
    "validation ",
    "test_",
    "test/",
    "test ",
    # MXNet's Speedometer / ``fit`` lines: ``Train-accuracy=0.98``, ``Validation-accuracy=0.97``
    "validation-",
    "val-",
    "eval-",
    "test-",
)


def _split_prefix(name: str) -> tuple[str, bool]:
    """``(name without a train/eval prefix, whether the prefix said eval)``."""
    for p in _EVAL_PREFIXES:
        if name.startswith(p):
            return name[len(p) :], True
    for p in _TRAIN_PREFIXES:
        if name.startswith(p):
            return name[len(p) :], False
    return name, False


#: one term of a loss printed without its total (YOLO's ``box_loss obj_loss cls_loss``, a
#: detector's ``loss_cls loss_bbox``): with two or more on a record, their sum is the loss
#: (logs.readers.standins)
_COMPONENT = re.compile(r"[a-z][a-z0-9]{0,15}_loss|loss_[a-z][a-z0-9]{0,15}")


def _role_by_name(base: str) -> str:
    if _COMPONENT.fullmatch(base):
        return "loss component"
    for word, role in _ROLE_WORDS:
        if word in base and (not word.isalpha() or len(word) > 3 or _whole_word(word, base)):
            return role
    return ""


def _whole_word(word: str, name: str) -> bool:
    """Whether a short word stands on its own in ``name`` (``valid ppl``, ``ppl_val``), not
    inside another (``self.applied_updates`` holds no perplexity)."""
    return re.search(rf"(?<![a-z]){word}(?![a-z])", name) is not None
