"""The generic text-log line: normalise it, then find its ``name: number`` items.

Normalising removes what a console or a paste adds around a logger's message: ANSI colours and
markdown ``**`` (on the whole text, once), tqdm's carriage-return redraws (each redraw is its own
line), ``> `` quote prefixes from an issue or e-mail, leading timestamps (ISO, ``MM/DD``, absl/glog ``I0912 ...]``),
SageMaker's ``#015``/``#033`` escapes, and per-process prefixes (``[rank3]:``, ``rank 3:``,
``[default3]:`` from torchrun, ``[1,3]<stdout>:`` and ``[1,mpirank:3,algo-1]<stdout>:`` from
mpirun), whose rank is kept so that lines every rank printed stay visible as repeats. Logger
names and timestamps elsewhere in a line need no stripping: an item must start with a name, and
``- root - INFO -`` or ``eta: 0:00:25`` are no ``name number``.

An item is what a training script prints about one quantity, in any of the shapes the common
loggers use::

    loss: 2.31   loss=2.31   loss 2.31   loss = 2.31   lm loss: 2.31E+00   tps: 10,050
    iteration 29020/ 311541   Epoch: [3]   Epoch(train) [1][200/735]   [ 100/1251]
    time: 120.5ms   mfu: 13.99%   2ms/step   132.41s/it   elapsed time per iteration (ms): 4247.9

A name is up to six words (``number of skipped iterations``); a value in brackets or followed by
``/ total`` is a position (epoch or batch); a value may carry a unit (``ms``, ``s``, ``%``,
``s/it``...), and a running average printed after it in parentheses (``loss: 6.9 (7.1)``) is
left alone. Python dict reprs and JSON objects inside a line (HF Trainer, fairseq's json format)
are read by :func:`dict_items`.

Whitespace tables (a header line of names, then rows of numbers: YOLO's console, a script's
``epoch  train_loss  val_loss``) are read by :func:`table_header` and :func:`table_row`.

Every pattern is linear in the line's length (possessive runs, no match starting inside a run of
digits or letters): a 60,000-digit number or a 200,000-letter line is read in well under a second.

Limits: a name must start with an ASCII letter or ``_``; numbers written with thousands separators
are read only with ``,`` every three digits; a value in an exotic unit (``1.2k``) is not read.
"""

from __future__ import annotations

import ipaddress
import math
import re
from typing import NamedTuple

__all__ = [
    "Item",
    "dict_items",
    "items",
    "normalise",
    "strip_ansi",
    "table_header",
    "table_row",
    "to_number",
]

#: a tqdm-style position may carry its share in parentheses: ``[ 350/5004 (  7%)]`` (timm)

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_WORDS = r"nan|NaN|NAN|inf|Inf|INF|Infinity|infinity"
#: a number, or a non-finite word; after a bare space the word must not start a phrase
#: (``grad_norm: nan  loss: 2.1`` holds a NaN, ``number of nan iterations: 0`` does not): one
#: space and a letter after it make prose, a column gap (two spaces or more, a tab) a next
#: field (insightface's ``Loss nan   LearningRate 0.001000``)
#: (possessive digit runs and no start inside a run: a 400-digit number is read in linear time)
_NUM = (
    r"[-+]?(?<![\d.])(?:\d{1,3}(?:,\d{3})++(?:\.\d++)?(?![\d,])|\d++(?:\.\d*+)?(?:[eE][-+]?\d++)?"
    r"|\.\d++(?:[eE][-+]?\d++)?"
    rf"|(?:(?<=[:=])|(?<=[:=]\s)|(?<=[:=]\s\s)|(?<=[:=]\s\s\s))(?:{_WORDS})"
    rf"|(?:{_WORDS})(?!\s[A-Za-z]))"
)
#: a word of a name; possessive (``*+``), so a long run of letters is scanned once, not
#: backtracked into (a 20,000-letter line took 100 s with a plain ``*``)
_WORD = r"[A-Za-z_](?:[\w@/\-]|\.(?=\w))*+(?:\([A-Za-z]+\))?"
_UNIT = r"ms/step|us/step|µs/step|s/step|sec/step|s/it|it/s|ms|us|µs|sec|s|%|GiB|MiB|GB|MB"
_ITEM = re.compile(
    rf"(?:(?<![\w@/.\-])(?P<name>{_WORD}(?: {_WORD}){{0,5}}?)(?:\s*\((?P<tag>[A-Za-z/%]{{1,16}})\))?"
    rf"(?:\s*[:=]\s*|\s+|(?=\[)))?"  # ``Epoch[7]`` (MXNet): a name, then its bracketed value
    rf"(?P<lb>\[\s*)?(?P<num>{_NUM})(?:\s*/\s*(?P<tot>\d+))?(?(lb)(?:\s*\(\s*\d+%\))?\s*\])"
    rf"(?:\s?(?P<unit>{_UNIT}))?"
    r"(?=[\s,;|)\]}\[(]|[:.]\s|[:.]$|$)",
    re.ASCII,  # ``\d`` is 0-9: a number is one ``float()`` reads the same as str or bytes
)
_QUOTE = re.compile(r"^(?:\s*>)+\s?")
#: a multi-node launcher's node prefix (pdsh under DeepSpeed / LLaMA-Factory / torchrun on several
#: hosts): ``10.96.202.43: {'loss': ...}``, every node printing the line behind its IPv4 address
_HOST = re.compile(r"^((?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}):\s+")
_RANK = re.compile(
    r"^\s*(?:\[(?:rank|default)\s*(\d{1,6})\]\s*:?|(?:rank|RANK|Rank)\s*(\d{1,6})\s*:"
    r"|\[\d{1,6},(?:mpirank:)?(\d{1,6})[^\]]{0,40}\]<std\w+>:)\s*"
)
_TIME = re.compile(
    r"^\[?(?:\d{4}[-/]\d{2}[-/]\d{2}|\d{2}/\d{2}(?:/\d{2,4})?)[ T]\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d+)?"
    r"(?:Z|[+-]\d{2}:?\d{2})?\]?:?\s*"
    # absl/glog: ``I0912 11:40:27.956218 139735407601536 model_lib_v2.py:652] ``
    r"|^[IWEF]\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [\w./-]+:\d+\]\s*"
)
#: Python logging's default record prefix after the time: ``- INFO -``, ``- mmdet - INFO -``
#: (the message then starts the line, as line-anchored headers and dialect marks expect)
_LEVEL = re.compile(r"-\s*(?:[\w.]+\s*-\s*)?(?:INFO|WARNING|WARN|DEBUG|ERROR|CRITICAL)\s*-\s*")
_DICT = re.compile(r"\{[^{}]*\}")
_DICT_PAIR = re.compile(rf"""['"]([^'"]+)['"]\s*:\s*(?:({_NUM})|['"]({_NUM})%?['"])(?=\s*[,}}])""")


class Item(NamedTuple):
    """One ``name value`` found in a line; ``name`` is ``""`` for a bare value (``[ 100/1251]``,
    ``2ms/step``)."""

    name: str
    tag: str  # a unit or split in parentheses after the name: ``(ms)``, ``(train)``
    value: str
    total: str | None  # ``/ total`` after the value: a position (``iteration 5/100``)
    bracketed: bool
    unit: str
    start: int


def strip_ansi(text: str) -> str:
    """``text`` without ANSI colour/cursor codes (cheap when there are none) and without markdown
    bold markers (``**``) a paste into an issue adds; the ``#015``/``#033`` escapes some log
    collectors (SageMaker, syslog) write for carriage return and ESC are read as those characters
    first."""
    if "#015" in text or "#033" in text:
        text = text.replace("#015", "\r").replace("#033", "\x1b")
    if "**" in text:  # markdown bold pasted into an issue: ``loss: nan**``, ``92.77**39``
        text = text.replace("**", "")
    return _ANSI.sub("", text) if "\x1b" in text else text


#: a quoted name with a (quoted) number outside a dict: ``'loss': '1.024392'`` (PaddleDetection
#: 1.x prints its losses as the repr of a dict's items); read as ``loss: 1.024392``
_QUOTED_ITEM = re.compile(rf"""(['"])([A-Za-z_][\w./@-]{{0,63}})\1\s*:\s*(['"]?)({_NUM})\3""")


def unquote_items(s: str) -> str:
    """``s`` with every quoted ``'name': 'number'`` item outside braces written bare."""
    if "{" in s:  # a dict repr or JSON object: :func:`dict_items` reads it
        return s
    return _QUOTED_ITEM.sub(r"\2: \4", s)


#: darknet's iteration line puts each value before its name (``10313: 0.576849, 0.677636 avg,
#: 0.002000 rate, 3.992994 seconds, 1320064 images``; AlexeyAB's fork adds ``loss`` and ``hours
#: left``): rewritten as ``name: value`` items
_DARKNET = re.compile(
    rf"(?:^|\|)\s*(?P<it>\d+):\s*(?P<loss>{_NUM}),\s*(?P<avg>{_NUM}) avg(?: loss)?,\s*"
    rf"(?P<lr>{_NUM}) rate,\s*(?P<sec>{_NUM}) seconds,\s*(?P<img>\d+) images"
)


def _darknet(s: str) -> str:
    m = _DARKNET.search(s)  # after a process manager's ``0|yolo | `` prefix too
    if m is None:
        return s
    return (
        f"iteration: {m['it']} loss: {m['loss']} loss_avg: {m['avg']} lr: {m['lr']} "
        f"time: {m['sec']}s images: {m['img']}"
    )


#: a numpy-printed vector after a name (``loss [9.21  9.20  nan ...]``: PaddlePaddle fluid's
#: fetched loss, one value per device), possibly wrapped onto the next line (no ``]``)
_VECTOR_NAME = re.compile(r"([A-Za-z_][A-Za-z_ ]{0,40}?)\s*[:=]?\s*$")


def _vector(s: str) -> str:
    """``name [v1 v2 ...]`` read as ``name: x``, x the mean, NaN/inf when one element is: a
    step's values across devices. Only after a step context on the line (``Pass 0, batch 100,
    loss [...]``); a line that is only a vector is a per-epoch series (:mod:`.series`)."""
    i = s.find("[")
    while i > 0:
        close = s.find("]", i)
        end = len(s) if close < 0 else close
        tokens = s[i + 1 : end].split()
        if len(tokens) >= 2 and tokens[0][-1:] != ",":
            try:
                xs = [float(v) for v in tokens]
            except ValueError:
                xs = []
            m = _VECTOR_NAME.search(s, 0, i) if xs else None
            if m is not None and any(c.isdigit() for c in s[: m.start()]):
                bad = [x for x in xs if not math.isfinite(x)]
                x = bad[0] if bad else sum(xs) / len(xs)
                return f"{s[: m.start()]}{m[1]}: {x!r}{s[end + 1 :]}"
        if close < 0:
            break
        i = s.find("[", close)
    return s


#: a non-finite word padded to a column width with a fill character: Python's ``{:x<6f}`` (the
#: format PaddleOCR prints every value with) writes NaN as ``nanxxx``, inf as ``infxxx``; a number
#: is wider than the width and keeps no fill
_PADDED = re.compile(r"(?<![\w.])([-+]?(?:nan|inf))x{1,16}(?![\w.])", re.IGNORECASE)


def normalise(line: str) -> tuple[str, int | None]:
    """The logger's message of one line and the rank that printed it (None when not said)."""
    s = line.strip()
    if not s:
        return s, None
    if "xx" in s or "nanx" in s or "infx" in s:
        s = _PADDED.sub(r"\1", s)
    if "'" in s or '"' in s:
        s = unquote_items(s)
    if " avg" in s and " rate," in s:
        s = _darknet(s)
    c = s[0]
    if c == ">":
        s = _QUOTE.sub("", s)
        if not s:
            return s, None
        c = s[0]
    rank = None
    if c == "[" or c == "r" or c == "R":
        m = _RANK.match(s)
        if m:
            rank = int(next(g for g in m.groups() if g is not None))
            s = s[m.end() :]
            c = s[:1]
    elif c.isdigit():
        s, rank = _host(s, rank)
        c = s[:1]
    if c.isdigit() or c == "[" or (c in "IWEF" and s[1:2].isdigit()):
        m = _TIME.match(s)
        if m:
            s = s[m.end() :]
            if s[:1] == "-":
                m = _LEVEL.match(s)
                if m:
                    s = s[m.end() :]
    if s[:1].isdigit():  # after a logger's own prefix, or a ``[rank0]:`` one
        s, rank = _host(s, rank)
    if "[" in s:
        s = _vector(s)  # after the prefixes: a timestamp's digits are no step context
    return s, rank


def _host(s: str, rank: int | None) -> tuple[str, int | None]:
    """``s`` without a leading node address and the rank that names the node (the address as an
    integer: one process per node prints), else ``s`` and ``rank`` as they were."""
    if not s[1:4].count(".") or (m := _HOST.match(s)) is None:
        return s, rank
    return s[m.end() :], int(ipaddress.IPv4Address(m[1]))


def items(line: str) -> list[Item]:
    """Every ``name value`` item of a normalised line, in order."""
    return [
        Item(
            m["name"] or "",
            m["tag"] or "",
            m["num"],
            m["tot"],
            m["lb"] is not None,
            m["unit"] or "",
            m.start(),
        )
        for m in _ITEM.finditer(line)
    ]


def dict_items(line: str) -> list[dict[str, str]]:
    """The flat ``{'key': number, ...}`` / ``{"key": "number", ...}`` objects inside a line."""
    out = []
    for d in _DICT.findall(line):
        row = {k: a or b for k, a, b in _DICT_PAIR.findall(d)}
        if row:
            out.append(row)
    return out


def to_number(text: str) -> float:
    """A value as :data:`_NUM` matched it; ``1,024`` -> 1024.0, a 400-digit integer -> inf."""
    if "," in text:
        text = text.replace(",", "")
    return float(text)


_BAR = re.compile(r"\d+%\|")


def table_header(line: str) -> list[str] | None:
    """The column names of a whitespace table's header line (``Epoch  GPU_mem  box_loss ...``,
    ``epoch  train_loss  val_loss  lr``): three or more words that each start with a letter,
    alone on the line or followed by a progress bar; None for any other line."""
    words = line.split()
    names = []
    for i, w in enumerate(words):
        if not (w[0].isalpha() or w[0] == "_"):
            if _BAR.match(w):  # ``Class  Images ... mAP50-95): 100%|███| 66/66 [...]`` (YOLO)
                break
            return None
        names.append(w.rstrip(":"))
        if w.endswith(":"):
            if i + 1 < len(words) and not _BAR.match(words[i + 1]):
                return None
            break
    return names if len(names) >= 3 else None


def table_row(line: str, width: int) -> list[tuple[str, str | None]] | None:
    """The cells of a table row under a header of ``width`` names: (value, total) per column,
    ``("", None)`` for a cell that is no number (``9.03G``, ``all``); None when the line is no
    row (fewer cells, or more than one that is no number)."""
    cells = line.split(None, width)[:width]
    if len(cells) < width:
        return None
    out: list[tuple[str, str | None]] = []
    misses = 0
    for c in cells:
        v, _, tot = c.rstrip(":,").partition("/")
        try:
            float(v)
        except ValueError:
            misses += 1
            out.append(("", None))
            continue
        out.append((v, tot if tot.isdigit() else None))
    return out if misses <= 1 else None
