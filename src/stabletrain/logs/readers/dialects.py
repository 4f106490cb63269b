"""What the generic text reader knows about each framework's console log: small tables, no parsers.

A dialect is recognised by a marker in a line and contributes only knowledge the generic reader
cannot guess: its own metric names (fairseq's ``gnorm`` and ``num_updates``, Megatron's ``lm loss``
and ``consumed samples``), which names are bookkeeping (``eta``, ``oom``, ``wall``), numbers printed
as a placeholder (Megatron's ``grad norm: 0.000`` when the norm was not computed), and whose config
keys a fix should use (``vocabulary``, i.e. ``ConfigFacts.format``). Everything else — finding the
items, the step, train vs eval, the units — is :mod:`stabletrain.logs.readers.text`'s generic code.

Sources of the tables: Megatron-LM ``training.py`` log line; DeepSpeed ``loss_scaler.py``; fairseq
``progress_bar.py`` (simple and json formats) and ``fairseq_cli/train.py``; mmengine/mmcv
``LoggerHook`` (``Epoch(train) [e][i/N]``, ``Epoch [e][i/N]``); torchvision references
``utils.MetricLogger``; Keras ``ProgbarLogger``; torchtitan ``metrics.py``; nanoGPT ``train.py``;
HF Trainer console dicts; Coqui ``trainer`` console; real logs in ``tests/fixtures/logs``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = [
    "BATCH_WORDS",
    "CLASS_COUNTS",
    "DIALECTS",
    "EPOCH_WORDS",
    "EVENT_LINES",
    "GENERIC",
    "STEP_WORDS",
    "TABLE",
    "TEXT_ALIASES",
    "Dialect",
    "EventLine",
    "dialect_of",
    "eval_marker",
]

#: names whose value is the optimizer step (a multi-word name counts when it ends with one:
#: ``validation loss at iteration 7000``, but not ``elapsed time per iteration``)
STEP_WORDS = frozenset(
    {
        "step",
        "steps",
        "iter",
        "iters",
        "iteration",
        "iterations",
        "global_step",
        "global step",
        "globalstep",
        "num_updates",
        "it",
        "update",
        "updates",
        "trainer/global_step",
        "acc_iter",
        "total_step",
    }
)
#: a batch counter is a step only beside an epoch or as a position (MXNet ``Epoch[7] Batch
#: [200]``, Paddle ``batch: [3600/8832]``, ``Pass 0, batch 100``): within an epoch it restarts
#: with each one, which ``text._Reader`` detects; ``one epoch, batch 4`` in prose is a setting
BATCH_WORDS = frozenset({"batch", "batch_id", "batch_idx"})
#: ``pass`` is PaddlePaddle v1's word for an epoch (``Pass 0, Batch 100, Cost 2.3``)
EPOCH_WORDS = frozenset({"epoch", "ep", "epochs", "pass"})

#: text-console names the shared table (``fields.classify``) does not hold because in a CSV or
#: JSON column they can mean something else (``time`` there is often a wall-clock timestamp)
TEXT_ALIASES: dict[str, str] = {
    "time": "step_time",
    "dt": "step_time",
    "iter_time": "step_time",
    "batch_time": "step_time",
    "batch time": "step_time",
    "time/step": "step_time",
    "step time": "step_time",
    "elapsed time per iteration": "step_time",
    "lm loss value": "loss",
    # the duration of an epoch printed on its own line (``time this epoch= 1.75``): a step time
    # of the epoch-summary record above it
    "time this epoch": "step_time",
    "epoch time": "step_time",
    "time per epoch": "step_time",
    "epoch_time": "step_time",
    # free-form scripts' words for the loss and the accuracy (``cost= 29.86``, ``Accu :0.0012``)
    "cost": "loss",
    "tot loss": "loss",
    "accu": "accuracy",
    "lm_loss value": "loss",
    "consumed samples": "samples",
    "consumed_samples": "samples",
    "reduced_train_loss": "loss",  # NeMo
    "per-step time": "step_time",  # TF2 object detection
    "losses": "loss",
    "total loss": "loss",
    "consumed tokens": "tokens",
    "lrm": "",  # nanochat's LR multiplier, not an LR
    "batch_cost": "step_time",  # PaddlePaddle: seconds per batch (``batch_cost: 0.3483``)
    "took": "step_time",  # ``Epoch 1 of 500 took 494.369s`` (Lasagne): the epoch's duration
    "reader_cost": "",  # PaddlePaddle's data wait: bookkeeping like data_time
    "data_cost": "",
}

#: a script's settings printed on a line of their own (``num_classes: 2000``,
#: ``Namespace(..., nb_classes=10, ...)``): the class count a chance-level judgement needs,
#: as the ConfigFacts name it becomes (the key is kept as the user's own)
CLASS_COUNTS: dict[str, str] = {
    "num_classes": "num_classes",
    "n_classes": "num_classes",
    "nb_classes": "num_classes",
    "num_class": "num_classes",
    "number of classes": "num_classes",
    "num_labels": "num_classes",
    "vocab_size": "vocab_size",
    "n_vocab": "vocab_size",
    "vocab size": "vocab_size",
}

#: bookkeeping printed beside the metrics (not a quantity of training stability)
_IGNORE = frozenset(
    {
        "eta",
        "oom",
        "wall",
        "train_wall",
        "total time",
        "num zeros",
        "max mem",
        "memory",
        "data",
        "data_time",
        "loader_time",
        "rank",
        "seed",
        "number of nan iterations",
        "actual seqlen",
        "percentage",
        "elapsed_time",
        "remaining_time",
        "total_flos",
        "train_runtime",
        "v_num",  # Lightning's logger version
        "gpu_mem",  # YOLO's table
        "instances",
        "size",
        "dataloader",
    }
)


@dataclass(frozen=True)
class Dialect:
    """One framework's console log: how to recognise its lines and what its names mean."""

    name: str
    #: a line of this dialect contains ``hint`` (cheap test) and matches ``marker``
    hint: str
    marker: re.Pattern[str]
    #: whose config keys a fix should use (``ConfigFacts.format``)
    vocabulary: str
    #: {the dialect's name, lower-case: StepRecord field or ``""`` for bookkeeping}
    aliases: dict[str, str] = field(default_factory=dict)
    #: fields this dialect prints as 0 when it did not compute them (read as missing)
    zero_is_missing: frozenset[str] = frozenset()
    #: a field whose identical non-zero value on consecutive steps means the step was skipped
    repeat_means_skipped: str | None = None
    #: the step is a position within an epoch (``(epoch - first) * N + i``) unless said otherwise
    #: where ``first`` is 0 or 1: the dialect's epochs count from it
    epoch_base: int | None = None
    #: accuracy names this dialect prints in percent (``acc1: 76.1``)
    percent: frozenset[str] = frozenset()
    #: {name (``"iteration/"``: the total after the step): (ConfigFacts key, the dialect's key)}
    facts: dict[str, tuple[str, str]] = field(default_factory=dict)


_MEGATRON = Dialect(
    "megatron",
    "iteration",
    re.compile(r"iteration\s+\d+\s*/\s*\d+\s*\||validation loss at iteration"),
    "megatron",
    aliases={
        "lm loss": "loss",
        "loss scale": "loss_scale",
        "grad norm": "grad_norm",
        "learning rate": "lr",
        "number of skipped iterations": "skipped_count",
        "samples per second": "throughput",
        "tflops": "",
    },
    zero_is_missing=frozenset({"grad_norm"}),
    repeat_means_skipped="grad_norm",
    facts={
        "iteration/": ("max_steps", "train-iters"),
        "global batch size": ("batch_size", "global-batch-size"),
    },
)
_FAIRSEQ = Dialect(
    "fairseq",
    "",
    re.compile(r"^\| epoch \d{3}|\| (?:train_inner|train|valid) \||fairseq"),
    "fairseq",
    aliases={
        "gnorm": "grad_norm",
        # the share of updates clipped (``clip=100%``), not a clip coefficient: a metric with
        # its own role, kept as a fraction
        "clip": "clip_fraction",
        "wps": "throughput",
        "ups": "",
        "wpb": "",
        "bsz": "",
        "ntokens": "",
        "nsentences": "",
        "sample_size": "",
        "update": "",  # fractional epoch in the json format; num_updates is the step
        "best": "",
        "best_loss": "",
        "s/checkpoint": "",
        "words/s": "throughput",
        "words/batch": "",
    },
    # fairseq >= 0.9 logs ``clip`` as a percentage without the sign (``| clip 100``,
    # ``"clip": "37.5"``: ``metrics.log_scalar("clip", 100 if clipped else 0)`` averaged)
    percent=frozenset({"clip"}),
    epoch_base=1,
)
_MMENGINE = Dialect(
    "mmengine",
    "(",
    re.compile(r"(?:Epoch|Iter)\((?:train|val|test)\)"),
    "mmengine",
    aliases={"base_lr": ""},
    epoch_base=1,
)
_MMCV = Dialect(
    "mmcv",
    "Epoch [",
    re.compile(r"Epoch \[\d+\]\[\s*\d+/\d+\]"),
    "mmengine",
    epoch_base=1,
)
_TORCHVISION = Dialect(
    "torchvision",
    ": [",
    re.compile(r"^(?:Epoch: \[\d+\]|Test:)"),
    "generic-log",
    aliases={"img/s": "throughput", "acc1": "accuracy", "acc@1": "accuracy"},
    percent=frozenset({"acc1", "acc@1", "acc5", "acc@5"}),
    epoch_base=0,
)
_KERAS = Dialect(
    "keras",
    " - ",
    re.compile(r"^\d+/\d+ \[[=>.]*\] - | - loss: "),
    "keras",
)
_TORCHTITAN = Dialect(
    "torchtitan",
    "step:",
    re.compile(r"step:\s*\d+\s+loss:"),
    "torchtitan",
    aliases={"tps": "throughput", "tflops": "", "mfu": ""},
)
_NANOGPT = Dialect(
    "nanogpt",
    "",
    re.compile(r"^(?:step|iter) \d+"),
    "nanogpt",
    aliases={"mfu": "", "tokens/sec": "throughput", "tok/sec": "throughput"},
)
_HF = Dialect("hf-console", "{'", re.compile(r"\{'"), "hf-console")
_COQUI = Dialect(
    "coqui",
    "> ",
    re.compile(r"GLOBAL_STEP|\| > "),
    "generic-log",
    aliases={"current_lr": "lr", "avg_loss": "loss", "loader_time": ""},
)
#: free-form ``name value`` lines from a script of the user's own
GENERIC = Dialect("free-form", "", re.compile(""), "generic-log")
#: a whitespace table: a header line of names, then rows of numbers (YOLO's console, scripts)
TABLE = Dialect("table", "", re.compile(""), "generic-log")

#: tried in order; the first that matches names the line's dialect
DIALECTS: tuple[Dialect, ...] = (
    _MEGATRON,
    _HF,
    _MMENGINE,
    _MMCV,
    _FAIRSEQ,
    _TORCHVISION,
    _TORCHTITAN,
    _KERAS,
    _COQUI,
    _NANOGPT,
)


@dataclass(frozen=True)
class EventLine:
    """A line that reports what the framework did (skipped a step, gave up), not metrics."""

    name: str
    hints: tuple[str, ...]  # a cheap test: one of these is in the line
    pattern: re.Pattern[str]
    #: ``"skip"``: the step was skipped, groups 1 and 2 are the old and new loss scale;
    #: ``"abort"``: the run stopped; ``"nonfinite"``: the run stopped on a NaN/inf loss, group 1
    #: is the loss or the iteration it happened at
    event: str
    #: the scale is printed as its base-2 logarithm (OpenAI's fp16 trainer: ``lg_loss_scale``)
    log2: bool = False


_SCALE = r"([-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|inf|nan))"
EVENT_LINES: tuple[EventLine, ...] = (
    # DeepSpeed fp16 loss scaler (and the older "Grad overflow" wording)
    EventLine(
        "deepspeed",
        ("OVERFLOW", "verflow"),
        re.compile(
            rf"(?:OVERFLOW!|[Oo]verflow).*?Skipping step\.?\s*Attempted loss scale:\s*{_SCALE},"
            rf"\s*reducing to\s*{_SCALE}"
        ),
        "skip",
    ),
    # fairseq (2019) ``| WARNING: overflow detected, setting loss scale to: 0.25``: the new scale
    # only; the attempted one is the scale in force before it
    EventLine(
        "fairseq",
        ("setting loss scale to",),
        re.compile(rf"[Oo]verflow detected, setting loss scale to:?\s*{_SCALE}"),
        "skip",
    ),
    # NVIDIA apex amp: ``Gradient overflow.  Skipping step, reducing loss scale to 32768.0``
    # (amp_C / FP16_Optimizer) and ``... Skipping step, loss scaler 0 reducing loss scale to
    # 16384.0`` (apex.amp, one scaler per loss): the new scale only, as fairseq's
    EventLine(
        "apex",
        ("reducing loss scale to",),
        re.compile(
            rf"[Oo]verflow\.?\s+Skipping step,\s*(?:loss scaler \d+\s+)?reducing loss scale to"
            rf"\s*{_SCALE}"
        ),
        "skip",
    ),
    # OpenAI's improved/guided-diffusion fp16 trainer: ``Found NaN, decreased lg_loss_scale to
    # -16199.354`` (the step is skipped; the scale is 2 ** lg)
    EventLine(
        "openai-fp16",
        ("decreased lg_loss_scale to",),
        re.compile(rf"Found NaN, decreased lg_loss_scale to\s*{_SCALE}"),
        "skip",
        log2=True,
    ),
    EventLine(
        "deepspeed",
        ("loss scale already at minimum",),
        re.compile("loss scale already at minimum"),
        "abort",
    ),
    # a framework stopping the run on a non-finite loss: the loss at that step was NaN/inf even
    # when no metric line printed it. TF Estimator's NanTensorHook, detectron2's
    # ``FloatingPointError``, the DeiT/MAE/DINO/BEiT loop's ``Loss is nan, stopping training``
    EventLine(
        "tensorflow",
        ("Model diverged",),
        re.compile(r"Model diverged with loss = (NaN|nan|inf|Inf|-inf)"),
        "nonfinite",
    ),
    EventLine(
        "detectron2",
        ("Loss became infinite or NaN",),
        re.compile(r"Loss became infinite or NaN at iteration\s*=\s*(\d+)"),
        "nonfinite",
    ),
    EventLine(
        "deit",
        ("stopping training",),
        re.compile(r"Loss is (nan|inf|-inf|NaN|Inf), stopping training"),
        "nonfinite",
    ),
)

#: a whole line (or block) is an evaluation when one of these words precedes its first metric
_EVAL_MARKER = re.compile(
    r"(?<![\w/.-])(?:valid(?:ation)?|val|eval(?:uation|uating)?|test(?:ing)?)(?![\w/.-])",
    re.IGNORECASE,
)
_TRAIN_MARKER = re.compile(r"(?<![\w/.-])train(?:ing)?(?![\w/.-])", re.IGNORECASE)


def dialect_of(line: str) -> Dialect:
    """The dialect a line is written in (:data:`GENERIC` when none says so)."""
    for d in DIALECTS:
        if d.hint in line and d.marker.search(line):
            return d
    return GENERIC


def eval_marker(text: str) -> bool | None:
    """True if ``text`` (the part of a line before its metrics, or a header line) says it is an
    evaluation, False if it says training, None if it says neither."""
    if _EVAL_MARKER.search(text):
        return True
    if _TRAIN_MARKER.search(text):
        return False
    return None


#: a source location a logger prints (``train_util.py:779``, ``trainer.cc:42``): no metric
_SOURCE_FILE = re.compile(r"\.(?:py|pyx|cc|cpp|cxx|c|h|hpp|cu|js|ts|java|go|rs|lua|jl)$")
#: a lone function word before a number is prose (``Epoch 1 of 500``, ``saved at 300``)
_FUNCTION_WORDS = frozenset(
    {"of", "at", "in", "to", "by", "for", "on", "from", "with", "and", "or"}
)


def ignored(name: str) -> bool:
    """Whether a (lower-case) name is bookkeeping in every dialect: the table above, a source
    location (``train_util.py``) or a lone function word (``of``)."""
    return name in _IGNORE or name in _FUNCTION_WORDS or _SOURCE_FILE.search(name) is not None
