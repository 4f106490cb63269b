"""Read console/text training logs: one generic reader, framework dialects as hints.

Every line goes through the same steps (:mod:`~stabletrain.logs.readers.lines`): normalise it
(ANSI colours, tqdm redraws, ``> `` quotes, leading timestamps, ``[rank3]:`` prefixes), find its
``name value`` items, then read them:

- **the step** from the line's own context: a step item (``iteration 5/100``, ``step: 5``,
  ``num_updates 300``, ``GLOBAL_STEP: 5``), else a position within an epoch (``Epoch: [3]
  [100/1251]``, ``Epoch(train) [1][200/735]``, ``epoch 001: 450 / 1891``, a Keras ``413/413 [===]``
  bar under an ``Epoch 3/10`` header, a counted step that restarts with each epoch: ``Epoch 11 ;
  Iter 50/213``: ``(epoch - first epoch) * N + i``), else what a header line
  just above said (a tqdm bar, Coqui's ``GLOBAL_STEP`` line), else the order of the records —
  never an invented number: the notes say when steps are counted;
- **train or eval** from the metric's name (``val_loss``, ``valid_ppl``, ``eval/loss``) or from a
  word before the line's first metric or on a header line above (``Test:``, ``valid on 'valid'
  subset``, ``Epoch(val)``, ``validation loss at iteration``, ``--> EVAL PERFORMANCE``); an eval
  line without a step of its own belongs to the last train step;
- **a role** for each metric from its name (:mod:`~stabletrain.logs.readers.fields`, plus the
  dialect's own names from :mod:`~stabletrain.logs.readers.dialects`), with units: ``ms``/``us``
  step times become seconds, ``s/it``/``it/s``/``ms/step`` rates become step times, and an accuracy
  column holding values above 1 is read as percent.

Framework knowledge lives in the dialect tables: Megatron prints ``grad norm: 0.000`` when it did
not compute the norm (missing) and repeats the last norm on a skipped step (``skipped=True``);
DeepSpeed's ``OVERFLOW! ... Attempted loss scale: X, reducing to Y`` is an event and a skipped step;
HF Trainer's console dicts and fairseq's json lines are read as dicts; an epoch-average summary line
(fairseq's ``| train |``) is set aside when the log also has per-step lines.

Speed: a log repeats a few line shapes; each shape is analysed once
(:mod:`~stabletrain.logs.readers.plan`) and every other line of it costs one ``bytes.translate``
and ``split`` plus the record it makes (a million Megatron lines: faster than the old per-framework
parser; ``bench/text_reader_speed.py``).

Limits: a line longer than 65,536 characters is skipped (said in the notes); a metric whose name
the tables do not know is kept under its own name in ``metrics`` (``--map`` gives it a role); an
accuracy column of values all at most 1 whose log does not say ``%`` is read as a fraction.

Lines printed by several ranks stay in ``RunData.raw`` with their rank, so the duplicate-logging
detector sees the repeats; ``records`` keep one per step. A file in which no training record is
found returns an empty ``raw`` with ``lines_total``/``lines_understood`` set: the caller reports it
(never a clean verdict on a log that was not understood).
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections import Counter
from itertools import pairwise
from pathlib import Path
from typing import Any

from stabletrain import safe_io
from stabletrain.logs.readers import dialects as dl
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import (
    Slot,
    build_lookup,
    records_from_row,
    standin_name,
    to_float,
)
from stabletrain.logs.readers.lines import (
    Item,
    dict_items,
    items,
    normalise,
    strip_ansi,
    table_header,
    table_row,
)
from stabletrain.logs.readers.plan import LinePlan, analyse, numbers, shape
from stabletrain.logs.readers.plan import number as _number
from stabletrain.logs.readers.roles import role_of
from stabletrain.records import StepRecord

_SUMMARY_ROW = object()  # a dict plan: HF Trainer's end-of-training summary, not a step
_HF_SUMMARY = ("train_runtime", "total_flos")  # HF Trainer's end-of-training dict
_TIME_UNITS = {"ms": 1000.0, "us": 1e6, "µs": 1e6, "s": 1.0, "sec": 1.0}  # divisors to seconds
#: a record without a step of its own needs one of these to count as a training record (a
#: ``lr: 0.001`` in a printed config is not a step)
_PRIMARY = frozenset({"loss", "eval_loss", "accuracy", "eval_accuracy"})
#: a record field that is a training signal a verdict can rest on (not the LR, not a time)
_SIGNAL = ("loss", "eval_loss", "accuracy", "eval_accuracy", "grad_norm", "loss_scale")
#: fields that would let a log pass for understood without any training signal
_SIDE = ("lr", "step_time", "clip_coef", "skipped", "action")
#: roles kept in ``metrics`` under the role's own name, for the detector that reads them
#: (``detectors.clipping`` reads ``clip_fraction``: the share of updates the trainer clipped)
_METRIC_ROLES = frozenset({"clip_fraction"})
_SPACES = re.compile(r"\s+")
_MERGEABLE = ("epoch", "loss", "grad_norm", "lr", "loss_scale", "skipped", "action", "accuracy")
_FIELDS = (*_MERGEABLE[1:], "eval_loss", "eval_accuracy", "step_time", "samples", "tokens")
_INT_FIELDS = frozenset({"samples", "tokens"})
_INF = math.inf
#: a row of a vertical key/value table (OpenAI baselines' logger): ``| lg_loss_scale | -1.62e+04 |``
_KV_ROW = re.compile(r"\|\s*([A-Za-z_][\w./@-]{0,63})\s*\|\s*(\S{1,40})\s*\|")
_KV_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)", re.I)
_MAX_PLANS = 50_000
_MAX_LINE = 65_536
#: a shape whose numbers the generic items do not line up with: analysed line by line
_NO_PLAN = LinePlan(-1, dl.GENERIC)


def read(path: Path, mapping: dict[str, str] | None = None, logging_steps: int = 1) -> RunData:
    text = safe_io.read_text(path, errors="replace")
    return parse_text(text, path, mapping, logging_steps)


def parse_text(
    text: str, path: Path, mapping: dict[str, str] | None = None, logging_steps: int = 1
) -> RunData:
    """Read a whole text log (see the module docstring); a log without one record read line by
    line may still be a training history printed as lists (:mod:`.series`)."""
    data = _Reader(path, mapping, logging_steps).read(text)
    if not data.raw and "[" in text:
        from stabletrain.logs.readers.series import read_series

        dump = read_series(text, path, mapping)
        if dump is not None and dump.raw:
            return dump
        data.tried.append("per-epoch series ('name: [v1, v2, ...]')")
    return data


def _step_value(v: bytes | str) -> int | None:
    """A step number, or None when it is not one a run can have (``inf``, 400 digits, -3)."""
    if v.isdigit() and len(v) < 16:
        return int(v)
    try:
        x = _number(v)
    except ValueError:
        return None
    if not math.isfinite(x) or x < 0 or x >= 1e15:
        return None
    return int(x)


def _as_step(x: float) -> int | None:
    """A computed step (``(epoch - 1) * N + i``), or None when it is no step a run can have."""
    return int(x) if math.isfinite(x) and 0 <= x < 1e15 else None


class _Reader:
    """The state of one pass over a log: the context lines carry over, the records, the counts."""

    def __init__(self, path: Path, mapping: dict[str, str] | None, logging_steps: int) -> None:
        self.data = RunData(path=path, format="text")
        self.user = build_lookup([], mapping) if mapping else {}
        self.logging_steps = logging_steps
        self.slots: dict[tuple[str, bool, str], tuple[Slot, str]] = {}
        self.plans: dict[bytes, LinePlan] = {}
        self.dict_plans: dict[tuple[tuple[str, ...], str], Any] = {}
        self.kinds: Counter[str] = Counter()
        self.understood = 0
        # context carried from header lines (Keras ``Epoch 3/10``, tqdm bars, Coqui's step line)
        self.epoch: float | None = None
        self.first_epoch: float | None = None
        self.pos: tuple[int, int] | None = None
        self.header_step: int | None = None
        self.split: bool | None = None
        self.last_train = -1
        self.fine = False  # a train record with a step of its own was read
        self.own_step = False  # the line being read has a step of its own
        self.coarse: list[StepRecord] = []
        self.counted = 0  # records numbered by order
        self.kv_block: list[tuple[str, str]] = []  # rows of a key/value block not yet read
        self.counted_now = False  # the line's record got its step from that count
        self.prev_norm: float | None = None
        self.prev_norm_step = -1
        self.ranks: set[int] = set()
        self.nanogpt_iter = False
        self.percent: set[str] = set()
        self.epoch_steps = False  # per-epoch lines numbered by their epoch
        self.skipped_by_repeat = 0
        self.long_lines = 0
        self.redraws = 0  # progress-bar lines that repeated the bar's previous record
        self.bar = False  # the line being read is a progress bar
        self.table: list[str] | None = None  # the column names of a whitespace table above
        self.table_rows = 0
        self.line_no = 0  # the physical line being read
        self.kept_at = -2  # the line that last gave a train record
        self.step_epoch: tuple[float, int] | None = None  # the last (epoch, counted step)
        self.per_epoch_counter = False  # the counted step restarts with each epoch
        self.echo_step = False  # the line being read took the step in effect (it has none)
        self.echoes = 0  # such lines that repeated the record above in other words
        self.max_count = 0  # the largest such count seen: the epoch's length when none is printed
        self.counted_per_epoch = False  # steps from that count, not from a printed total

    # -- the pass -------------------------------------------------------------------------------

    def read(self, text: str) -> RunData:
        data = self.data
        total = 0
        for physical in strip_ansi(text).split("\n"):
            line, rank = normalise(physical)
            # tqdm redraws: each carriage-return segment is a line, printed by the same rank
            for part in line.split("\r") if "\r" in line else (line,):
                if part is not line:
                    part, inner = normalise(part)
                    rank = rank if inner is None else inner
                if not part or part[0] == "#":  # a comment or a markdown heading
                    continue
                total += 1
                self.line_no = total
                if len(part) > _MAX_LINE:
                    self.long_lines += 1  # no logger prints this: a blob, not a record
                    continue
                if part[0] == "|" and (row := _KV_ROW.fullmatch(part)) is not None:
                    self.kv_block.append((row[1], row[2]))  # one row of a key/value block
                    continue
                if self.kv_block:
                    self._kv_flush(rank)
                if self._line(part, rank):
                    self.understood += 1
        if self.kv_block:
            self._kv_flush(None)
        data.lines_total, data.lines_understood = total, self.understood
        self._finish()
        return data

    def _kv_flush(self, rank: int | None) -> None:
        """A finished key/value block (OpenAI baselines' logger: ``| loss | 0.123 |`` rows
        between dashed lines, one block per logged step — improved/guided-diffusion, stable-
        baselines) read as one line of ``name: value`` items."""
        block, self.kv_block = self.kv_block, []
        numbers = [
            ("loss_scale", repr(_exp2(float(v)))) if k == "lg_loss_scale" else (k, v)
            for k, v in block
            if _KV_NUMBER.fullmatch(v)
        ]
        if numbers and self._line(" ".join(f"{k}: {v}" for k, v in numbers), rank):
            self.understood += len(block)

    def _line(self, line: str, rank: int | None) -> bool:
        self.echo_step = False
        self.counted_now = False
        for ev in dl.EVENT_LINES:
            for h in ev.hints:  # plain loops: no generator per line and event kind
                if h in line:
                    m = ev.pattern.search(line)
                    if m:
                        self._event(ev, m, line)
                        return True
                    break
        if "{'" in line or '{"' in line:
            rows = dict_items(line)
            if rows:
                self._context(items(line[: line.index("{")]), line)
                return self._dicts(rows, line, rank)
        if self.table is not None:
            cells = table_row(line, len(self.table))
            if cells is not None:
                if self.table_rows == 0:
                    self.understood += 1  # the header line above
                self.table_rows += 1
                return self._table_row(self.table, cells, rank)
            self.table = None
        raw = line.encode()
        key = shape(raw)
        plan = self.plans.get(key)
        if plan is None:
            plan = analyse(line) or _NO_PLAN
            if len(self.plans) >= _MAX_PLANS:
                self.plans.clear()  # a log of ever-new shapes: keep memory bounded
            self.plans[key] = plan
        values: list[Any] = numbers(raw) if plan is not _NO_PLAN else []
        if plan is _NO_PLAN or len(values) != plan.n:
            values = []
            plan = analyse(line, values) or _NO_PLAN
        elif plan.extra:
            values += plan.extra
        if not plan.metrics:
            header = table_header(line)
            if header is not None:
                self.table = _yolo_columns(header)
                self.table_rows = 0
                return False  # understood once a row follows (a sentence is no header)
        try:
            return self._apply(plan, values, rank)
        except ValueError:
            # the shape's plan does not fit this line after all (``x: 5-`` and ``x: -`` share a
            # shape): read it on its own
            values = []
            own = analyse(line, values)
            try:
                return self._apply(own, values, rank) if own is not None else False
            except ValueError:
                return False  # no number after all: the line is not understood

    def _table_row(
        self, names: list[str], cells: list[tuple[str, str | None]], rank: int | None
    ) -> bool:
        """A row under a whitespace table's header (YOLO's ``Epoch GPU_mem box_loss ...``, a
        script's ``epoch train_loss val_loss``)."""
        step = epoch = None
        row: dict[str, float] = {}
        for name, (value, _total) in zip(names, cells, strict=True):
            if not value:
                continue
            key = name.lower()
            if key in dl.STEP_WORDS:
                step = _step_value(value)
            elif key in dl.EPOCH_WORDS:
                epoch = _number(value)
                epoch = epoch if math.isfinite(epoch) else None
            else:
                row[name] = _number(value)
        primary = any(self._slot(n, False, dl.TABLE)[1] in _PRIMARY for n in row)
        if not row:
            return False
        self.own_step = step is not None or epoch is not None
        resolved, coarse = self._resolve(step, epoch, None, False, primary)
        if resolved is None:
            return False
        return self._add(row, resolved, epoch, dl.TABLE, rank, False, coarse)

    # -- items ----------------------------------------------------------------------------------

    def _apply(self, plan: LinePlan, values: list[Any], rank: int | None) -> bool:
        """Read one line's numbers through its shape's plan."""
        self.bar = plan.bar
        if plan.iter_lines:
            self.nanogpt_iter = True
        dialect = plan.dialect
        step = epoch = pos = None
        if plan.step is not None:
            step = _step_value(values[plan.step])
            if step is not None and plan.step_total is not None and "iteration/" in dialect.facts:
                total = _step_value(values[plan.step_total])
                if total is not None:
                    self._fact(dialect, "iteration/", total)
        if plan.epoch is not None:
            epoch = _number(values[plan.epoch])
            if epoch is not None and not math.isfinite(epoch):
                epoch = None
            if epoch is not None and self.first_epoch is None:
                self.first_epoch = epoch
            if epoch is not None and plan.epoch_header and plan.metrics:
                self.epoch = epoch  # ``Epoch 3/50 - Learning Rate: ...``: later lines are epoch 3
        if step is not None and epoch is not None:
            total = _step_value(values[plan.step_total]) if plan.step_total is not None else None
            step = self._per_epoch(step, epoch, total)
        if plan.pos is not None:
            i, n = _step_value(values[plan.pos[0]]), _step_value(values[plan.pos[1]])
            if i is not None and n is not None:
                pos = (i, n)
        if step is None and epoch is None and pos is None:
            self._class_count(plan, values)
        if not plan.metrics:
            if not plan.epoch_header:
                epoch = None  # ``1 epoch = 2640 batches`` is prose, not a header
            return self._header(step, epoch, pos, plan.marker)
        if plan.split is not None:
            is_eval = plan.split
        else:  # a block under an ``EVAL`` header, unless the line says where it is itself
            is_eval = bool(self.split) and step is None and epoch is None and pos is None
        comp = plan.compiled.get(is_eval)
        if comp is None:
            comp = plan.compiled[is_eval] = self._compile(plan, is_eval)
        kw, tmet, ekw, emet = _read_values(comp, values)
        if not (kw or tmet or ekw or emet):
            return self._header(step, epoch, pos, plan.marker)
        eval_line = is_eval or comp.all_eval
        step, coarse = self._resolve(step, epoch, pos, eval_line, comp.primary, comp.known)
        if step is None:
            return False
        if plan.rate is not None and not comp.has_time and (kw or tmet):
            idx, div, inverse = plan.rate
            rate = _seconds(values[idx], div, inverse=inverse)
            if rate is not None:
                kw["step_time"] = rate
        e = epoch if epoch is not None else self.epoch
        tr = ev = None
        if kw or (tmet and not ekw and not emet):
            tr = StepRecord(step, epoch=e, rank=rank, metrics=tmet, **kw)
        elif tmet:
            emet.update(tmet)  # bookkeeping beside eval values
        if ekw or emet:
            ev = StepRecord(step, kind="eval", epoch=e, rank=rank, metrics=emet, **ekw)
        if not comp.registered:
            comp.registered = True
            for name, role in comp.roles:
                self.data.roles.setdefault(name, role)
            self.percent.update(comp.percent)
        if tr is not None and comp.skipped:
            for idx in comp.skipped:
                if _number(values[idx]) > 0:
                    tr.skipped = True
        return self._keep(tr, ev, step, dialect, rank, coarse)

    def _per_epoch(self, step: int, epoch: float, total: int | None) -> int | None:
        """The step of a line naming an epoch and a counted step (``Epoch 11 ; Iter 50/213``,
        ``iters: 100, epoch: 19``): the counter as printed until it restarts when the epoch goes
        up; from then on it is a position within the epoch, ``(epoch - first epoch) * N + i``
        with N the printed total, else the largest count seen (the first epoch's steps are
        unchanged by that formula; without a total the steps are counted, said in the notes)."""
        last = self.step_epoch
        self.step_epoch = (epoch, step)
        self.max_count = max(self.max_count, step)
        if last is not None and epoch > last[0] and step <= last[1]:
            self.per_epoch_counter = True
        if not self.per_epoch_counter or self.first_epoch is None:
            return step
        if not total:
            self.counted_per_epoch = True
        return _as_step((epoch - self.first_epoch) * (total or self.max_count) + step)

    def _compile(self, plan: LinePlan, is_eval: bool) -> _Compiled:
        """How to turn a plan's metric values into record fields, for one split."""
        comp = _Compiled()
        dialect = plan.dialect
        for m in plan.metrics:
            slot, role = self._slot(m.name, is_eval, dialect)
            kind, field_, _ = slot
            if kind == "skip":
                continue
            div = _TIME_UNITS.get(m.unit, 1.0) if role == "step_time" else 1.0
            if (m.unit == "%" or m.key in dialect.percent) and role in (
                "accuracy",
                "eval_accuracy",
                "clip_fraction",
            ):
                comp.percent.add(role)
                div = 100.0  # ``Accuracy: 10.07%``, ``clip=100%``
            if m.total is not None and role in ("accuracy", "eval_accuracy"):
                # ``Accuracy: 1000/10000 (10.00%)`` (pytorch/examples): correct of total, the
                # fraction they make (the numerator alone read as 1000 "percent")
                comp.ratios.append((m.idx, m.total))
                div = 1.0
                comp.percent.discard(role)
            zero = field_ in dialect.zero_is_missing
            label = f"{role} (percent, read as a fraction)" if div == 100.0 else role
            if comp.ratios and comp.ratios[-1][0] == m.idx:
                label = f"{role} (a count of a total, read as a fraction)"
            comp.roles.append((m.name, label or "metric"))
            if role == "skipped_count":
                comp.skipped.append(m.idx)
            if role in _PRIMARY or role.endswith("perplexity") or standin_name(m.name):
                comp.primary = True  # a perplexity or a cross-entropy is the loss by another name
            if field_ == "step_time":
                comp.has_time = True
            # a metric with a role but no StepRecord field that a detector reads is kept under
            # its role's name (``clip=100%`` -> metrics["clip_fraction"] = 1.0)
            key = role if role in _METRIC_ROLES else m.name
            if kind == "train":
                if field_ is None or field_ == "epoch":
                    comp.tm.append((m.idx, key, div))
                else:
                    comp.tf.append((m.idx, field_, div, zero, m.name))
            elif field_ is None or field_ == "epoch":
                comp.em.append((m.idx, key, div))
            else:
                comp.ef.append((m.idx, field_, div, zero, m.name))
        comp.tf, extra_t = _one_per_field(comp.tf)
        comp.ef, extra_e = _one_per_field(comp.ef)
        if extra_t or extra_e:
            comp.tm += extra_t
            comp.em += extra_e
            parts = {name for _, name, _ in extra_t + extra_e}
            comp.roles = [(n, "metric" if n in parts else r) for n, r in comp.roles]
        # only values the vocabulary knows continue the record above (``time this epoch= 1.75``);
        # ``stopped after 19 epochs`` is prose
        comp.known = bool(comp.tf) and not (comp.tm or comp.em or comp.ef)
        comp.all_eval = bool(comp.ef or comp.em) and not (comp.tf or comp.tm)
        return comp

    def _class_count(self, plan: LinePlan, values: list[Any]) -> None:
        """A class count or vocabulary size the script printed as a setting (a line with no
        step): a fact for the chance-level judgement, the first one printed wins."""
        for m in plan.metrics:
            fact = dl.CLASS_COUNTS.get(m.key)
            if fact is None or fact in self.data.facts:
                continue
            v = _number(values[m.idx])
            if math.isfinite(v) and v >= 2 and v == int(v) and not m.unit:
                self.data.facts.set(fact, int(v), key=m.name, file=str(self.data.path))

    def _fact(self, dialect: dl.Dialect, name: str, value: int) -> None:
        fact, key = dialect.facts[name]
        if fact not in self.data.facts:
            self.data.facts.set(fact, value, key=key, file=str(self.data.path))

    def _header(self, step: int | None, epoch: float | None, pos: Any, marker: bool | None) -> bool:
        """A line that only says where the run is (``Epoch 3/10``, a tqdm bar, ``GLOBAL_STEP: 5``)
        or which phase follows (``--> EVAL PERFORMANCE``)."""
        if step is None and epoch is None and pos is None:
            if marker is not None:
                self.split = marker
                return True
            return False
        if epoch is not None:
            self.epoch = epoch
        if pos is not None:
            self.pos = pos
        if step is not None:
            self.header_step = step
        self.split = marker
        return True

    def _resolve(
        self,
        step: int | None,
        epoch: float | None,
        pos: Any,
        is_eval: bool,
        primary: bool,
        known: bool = False,
    ) -> tuple[int | None, bool]:
        """The step of a metric line, and whether it is an epoch summary (coarse)."""
        self.own_step = step is not None or (pos is not None and not is_eval)
        if step is not None:
            return step, False
        if is_eval:
            if self.header_step is not None and self.header_step > self.last_train:
                return self.header_step, False
            if not primary and self.header_step is None and epoch is None and pos is None:
                return None, False  # ``the last 4096 ...`` under a ``## Evaluation`` heading
            return max(self.last_train, 0), False
        e = epoch if epoch is not None else self.epoch
        if pos is not None:
            i, n = pos
            if e is None:
                return i, False
            base = 0 if (self.first_epoch == 0) else 1
            return _as_step((e - base) * n + i), False
        if epoch is not None:
            if self.fine:
                return self.last_train, True
            if float(epoch).is_integer():
                self.epoch_steps = True
                return _as_step(epoch), False
        if self.header_step is not None:
            return self.header_step, False
        if not primary:
            if known and self.kept_at == self.line_no - 1 and self.last_train >= 0:
                # a continuation line (``time this epoch= 1.75`` under ``Epoch: 0001 cost= 29.8``):
                # its values complete the record just above
                return self.last_train, False
            return None, False
        return self._carried()

    def _carried(self) -> tuple[int, bool]:
        """The step of a record whose line names none: the header above it, else the order."""
        if self.pos is not None and self.epoch is None:
            return self.pos[0], False
        if self.header_step is not None:
            return self.header_step, False
        step = _as_step(self.epoch) if self.epoch is not None else None
        if step is not None and not self.fine and step == self.epoch:
            self.epoch_steps = True  # ``Epoch 3/50`` header, then lines of that epoch
            return step, False
        if self.fine and self.last_train >= 0 and self.epoch is None:
            # the log numbers its steps elsewhere: a line without one (Caffe's ``Train net
            # output #0: loss = 51.5`` under ``Iteration 240, loss = 51.5``) is at the step in
            # effect, not a step 1, 2, 3 of its own among 240, 260... (a rewind every line)
            self.echo_step = True
            return self.last_train, False
        self.counted += 1
        self.counted_now = True
        return self.counted * self.logging_steps, False

    # -- names ----------------------------------------------------------------------------------

    def _slot(self, name: str, is_eval: bool, dialect: dl.Dialect) -> tuple[Slot, str]:
        """(slot for records_from_row, role) of a metric name, cached."""
        ck = (name, is_eval, dialect.name)
        hit = self.slots.get(ck)
        if hit is not None:
            return hit
        user = self.user.get(name)
        res = (user, user[1] or "") if user else role_of(name, is_eval, dialect)
        self.slots[ck] = res
        return res

    # -- records --------------------------------------------------------------------------------

    def _add(
        self,
        row: dict[str, float],
        step: int,
        epoch: float | None,
        dialect: dl.Dialect,
        rank: int | None,
        is_eval: bool,
        coarse: bool,
        lookup: dict[str, Slot] | None = None,
    ) -> bool:
        roles = self.data.roles
        if lookup is None:
            lookup = {}
            for n in row:
                lookup[n] = self._slot(n, is_eval, dialect)[0]
        for n in row:
            if n not in roles:
                slot, role = self._slot(n, is_eval, dialect)
                if slot[0] != "skip":
                    roles[n] = role or "metric"
        tr, ev = records_from_row(row, step, lookup)
        if tr is None and ev is None:
            return False
        e = epoch if epoch is not None else self.epoch
        for r in (tr, ev):
            if r is not None:
                if r.epoch is None:
                    r.epoch = e
                r.rank = rank
        return self._keep(tr, ev, step, dialect, rank, coarse)

    def _keep(
        self,
        tr: StepRecord | None,
        ev: StepRecord | None,
        step: int,
        dialect: dl.Dialect,
        rank: int | None,
        coarse: bool,
    ) -> bool:
        """Append a line's records to ``raw`` (folded into the previous record when they
        complete it), with the dialect's rules for skipped steps."""
        if rank is not None:
            self.ranks.add(rank)
            if self.counted_now and tr is not None:
                copy = self._copy_of(tr, rank)
                if copy is not None:  # another node printed this record: its step, not the next
                    self.counted -= 1
                    tr.step = step = copy.step
                    if ev is not None:
                        ev.step = step
        if self.echo_step:
            self.echo_step = False
            raw = self.data.raw
            if tr is not None and raw and raw[-1].step == step and _same_values(raw[-1], tr):
                self.echoes += 1
                tr = None  # the line above said it already (another wording, not another rank)
            if tr is None and ev is None:
                return True
        if tr is not None and self.bar and self._redraw(tr):
            tr = None  # the bar drawn again: its eval values (``val_acc``) may be new
        if tr is not None:
            field_ = dialect.repeat_means_skipped
            if field_ is not None:
                g = getattr(tr, field_)
                if g is not None and g == self.prev_norm and step > self.prev_norm_step:
                    tr.skipped = True  # the norm was not recomputed: the step was skipped
                    self.skipped_by_repeat += 1
                self.prev_norm, self.prev_norm_step = g, step
            self.kept_at = self.line_no
            if coarse:
                self.coarse.append(tr)
            else:
                self.fine = self.fine or (self.own_step and self._trains(tr))
                self.last_train = step
            if not self._merge_into_last(tr):
                self.data.raw.append(tr)
        if ev is not None and not (self.bar and self._redraw(ev)) and not self._merge_into_last(ev):
            self.data.raw.append(ev)
        self.kinds[dialect.name] += 1
        return True

    def _trains(self, rec: StepRecord) -> bool:
        """Whether a record carries a training quantity (a loss or a term of one, an accuracy, a
        gradient norm, an LR): only such per-step lines make the log's per-epoch lines summaries
        to set aside. A dataset scan's progress bar (ultralytics' ``train: Scanning ... 4
        images, 0 corrupt: 100%|...| 4/4``) has a position and no training quantity."""
        if any(v is not None for v in (rec.loss, rec.accuracy, rec.grad_norm, rec.lr)):
            return True
        roles = self.data.roles
        return any(roles.get(n, "").endswith("loss component") for n in rec.metrics)

    def _dicts(self, rows: list[dict[str, str]], line: str, rank: int | None) -> bool:
        """HF Trainer console dicts and fairseq json lines (each set of keys analysed once)."""
        self.bar = False
        done = False
        coarse_line = "| train |" in line
        dialect = dl.dialect_of(line)
        for row in rows:
            keys = tuple(row)
            plan = self.dict_plans.get((keys, dialect.name))
            if plan is None:
                plan = self.dict_plans[(keys, dialect.name)] = self._dict_plan(keys, dialect)
            if plan is _SUMMARY_ROW:
                continue
            step_key, epoch_key, value_keys, is_eval, lookup = plan
            vals: dict[str, float] = {}
            for k in value_keys:
                try:
                    vals[k] = float(row[k])  # the dict regex only lets numbers through
                except ValueError:
                    continue
            if not vals:
                continue
            step = _step_value(row[step_key]) if step_key is not None else None
            epoch = to_float(row[epoch_key]) if epoch_key is not None else None
            given = step is not None
            if step is None:
                if is_eval:
                    step = max(self.last_train, 0)
                else:  # the progress bar printed just before the dict, a header, the order
                    step, _ = self._carried()
            self.own_step = given
            if self._add(
                vals, step, epoch, dialect, rank, False, coarse_line and not is_eval, lookup
            ):
                done = True
        return done

    def _dict_plan(self, keys: tuple[str, ...], dialect: dl.Dialect) -> Any:
        """(step key, epoch key, value keys, all eval, slots) of a dict with these keys."""
        if any(k in keys for k in _HF_SUMMARY):
            return _SUMMARY_ROW
        step_key = epoch_key = None
        value_keys = []
        for k in keys:
            kk = k.lower()
            base = kk.split("_", 1)[1] if kk.startswith(("train_", "valid_")) else kk
            if base in dl.STEP_WORDS:
                step_key = step_key or k
            elif base == "epoch":
                epoch_key = k
            else:
                value_keys.append(k)
        is_eval = bool(value_keys) and all(
            k.lower().startswith(("valid_", "val_", "eval_", "test_")) for k in value_keys
        )
        lookup = {k: self._slot(k, False, dialect)[0] for k in value_keys}
        return step_key, epoch_key, value_keys, is_eval, lookup

    def _event(self, ev: dl.EventLine, m: re.Match[str], line: str) -> None:
        if ev.event == "nonfinite":
            at = _step_value(m.group(1))  # detectron2 names the iteration, the others the loss
            step = at if at is not None else self._last_step() + 1
            value = to_float(m.group(1)) if at is None else math.nan
            # a record, not a guard event: the framework stopped the run, not stabletrain
            self.data.raw.append(StepRecord(step=step, loss=math.nan if value is None else value))
            self.kinds[ev.name] += 1
            return
        if ev.event == "abort":
            self.data.events.append(
                {
                    "step": self._last_step(),
                    "event": "abort",
                    "severity": "error",
                    "message": line[:200],
                }
            )
            return
        self._context(items(line[: m.start()]), line)  # a tqdm bar printed before the message
        step = (self.pos[0] + 1) if self.pos is not None else self._last_step() + 1
        new = to_float(m.group(m.re.groups))
        if ev.log2 and new is not None:
            new = _exp2(new)
        if m.re.groups >= 2:
            old = to_float(m.group(1))
        else:  # ``setting loss scale to: 0.25`` (fairseq): the attempted scale is the one in force
            old = next(
                (r.loss_scale for r in reversed(self.data.raw) if r.loss_scale is not None),
                math.nan,
            )
        self.data.events.append(
            {
                "step": step,
                "event": "skip",
                "severity": "warning",
                "message": f"fp16 overflow: loss scale {old:g} -> {new:g}, step skipped",
                "data": {"reason": "fp16-overflow", "attempted_scale": old, "new_scale": new},
            }
        )
        self.data.raw.append(
            StepRecord(step=step, loss_scale=new, skipped=True, action="skip_nonfinite_grad")
        )
        self.kinds[ev.name] += 1

    def _context(self, its: list[Item], line: str) -> None:
        """Carry a tqdm position printed on the same line before a dict or an overflow message."""
        for it in its:
            if not it.name and it.total is not None:
                i, n = _step_value(it.value), _step_value(it.total)
                self.pos = (i, n) if i is not None and n is not None else self.pos

    def _merge_into_last(self, rec: StepRecord) -> bool:
        """Fold ``rec`` into the previous record of the same step when it completes it: no value
        differs and it is not the very same set of fields.

        A DeepSpeed overflow line and the HF dict printed at the same step describe one step, and
        so do the lines of one Coqui block, or a dict and a summary block that echoes it; a line
        repeated with the same fields (every rank printing it) stays a separate raw record, for
        the duplicate-logging detector.
        """
        raw = self.data.raw
        last = raw[-1] if raw else None
        if last is None or last.step != rec.step or last.kind != rec.kind or last.rank != rec.rank:
            return False
        if last.epoch is not None and rec.epoch is not None and last.epoch != rec.epoch:
            return False
        same = True  # the same fields as ``last``: a repeat (another rank), not a completion
        for f in _FIELDS:
            a, b = getattr(last, f), getattr(rec, f)
            if (a is None) != (b is None):
                same = False
            elif a is not None and not _same(a, b):
                return False
        for k, v in rec.metrics.items():
            w = last.metrics.get(k)
            if w is not None and not _same(w, v):
                return False
        if same and rec.metrics.keys() == last.metrics.keys():
            return False
        for f in _MERGEABLE + _FIELDS:
            if getattr(rec, f) is not None:
                setattr(last, f, getattr(rec, f))
        last.metrics.update(rec.metrics)
        return True

    def _copy_of(self, rec: StepRecord, rank: int) -> StepRecord | None:
        """A record of another rank among the last few with ``rec``'s values and epoch: the same
        record printed by every node, when the log gives no step (each copy would otherwise be
        counted as the next step)."""
        for r in self.data.raw[-1 : -2 - 2 * len(self.ranks) : -1]:
            if (
                r.rank != rank
                and r.kind == rec.kind
                and r.epoch == rec.epoch
                and r.metrics == rec.metrics
                and all(_same(getattr(r, f), getattr(rec, f)) for f in _FIELDS if f != "step_time")
            ):
                return r
        return None

    def _redraw(self, rec: StepRecord) -> bool:
        """Whether ``rec`` (from a progress bar) repeats the bar's previous record: a redraw."""
        last = next((r for r in reversed(self.data.raw[-2:]) if r.kind == rec.kind), None)
        if last is None or (last.step, last.rank) != (rec.step, rec.rank):
            return False
        if rec.metrics != last.metrics:
            return False
        if not all(_same(getattr(last, f), getattr(rec, f)) for f in _FIELDS if f != "step_time"):
            return False
        self.redraws += 1
        return True

    def _last_step(self) -> int:
        for r in reversed(self.data.raw):
            if r.kind == "train":
                return r.step
        return 0

    # -- the end --------------------------------------------------------------------------------

    def _finish(self) -> None:
        data = self.data
        if not data.raw:
            names = ", ".join(d.name for d in dl.DIALECTS)
            data.tried = [f"text ({names}, free-form 'name value' lines)"]
        if self.coarse and self.fine:
            drop = {id(r) for r in self.coarse}
            data.raw = [r for r in data.raw if id(r) not in drop]
            data.notes.append(
                f"{len(drop)} epoch-summary line(s) set aside: the log has per-step lines"
            )
        if self.epoch_steps and not self.fine:
            self._batches_of_epoch()
        self._clock_times()
        for role in ("accuracy", "eval_accuracy"):
            values = [getattr(r, role) for r in data.raw if getattr(r, role) is not None]
            finite = [v for v in values if math.isfinite(v)]
            if role not in self.percent and finite and 1.0 < max(finite) <= 100.0:
                for r in data.raw:
                    v = getattr(r, role)
                    if v is not None:
                        setattr(r, role, v / 100.0)
                for n, rl in data.roles.items():
                    if rl == role:
                        data.roles[n] = f"{role} (percent, read as a fraction)"
        if self.kinds:
            top = self.kinds.most_common(1)[0][0]
            data.dialect = top
            data.format = top if top != dl.GENERIC.name else "text"
            data.facts.format = self._vocabulary(top)
        if self.counted:
            data.notes.append(
                f"{self.counted} record(s) carry no step: numbered by their order x logging_steps "
                f"({self.logging_steps}), steps inferred"
            )
        if self.epoch_steps:
            data.notes.append(
                "per-epoch lines without a step: the epoch number is used as the step"
            )
        if self.per_epoch_counter:
            how = (
                f"an epoch counted as {self.max_count} steps (the largest count printed)"
                if self.counted_per_epoch
                else "the printed total per epoch"
            )
            data.notes.append(
                f"the step counter restarts with each epoch: steps are (epoch - first) x N + i, {how}"
            )
        if self.echoes:
            data.notes.append(
                f"{self.echoes} line(s) without a step repeating the record above (another "
                "wording of the same values) folded into it"
            )
        if self.redraws:
            data.notes.append(
                f"{self.redraws} progress-bar redraw(s) repeating the previous record folded"
            )
        if self.long_lines:
            data.notes.append(
                f"{self.long_lines} line(s) longer than {_MAX_LINE:,} characters not read"
            )
        if self.skipped_by_repeat:
            data.notes.append(
                f"{self.skipped_by_repeat} Megatron line(s) repeat the previous grad norm: marked skipped"
            )
        if len(self.ranks) > 1:
            data.notes.append(
                f"lines from {len(self.ranks)} ranks "
                f"({', '.join(map(_rank_name, sorted(self.ranks)))}): "
                "every rank's records are kept as read; one per step is analysed"
            )
        self._no_signal()

    def _clock_times(self) -> None:
        """A "time" that is a clock, not a duration: ``Time: 1564715520.47; Iter[1000]`` (a
        PaddlePaddle OCR script) printed Unix time under the name step durations go by. Every
        value of ``CLOCK_SECONDS`` or more (three years: no step or epoch lasts that long) makes
        them wall-clock times, kept as such and not as step times."""
        data = self.data
        times = [r.step_time for r in data.raw if r.step_time is not None]
        if not times or min(times) < CLOCK_SECONDS or not all(map(math.isfinite, times)):
            return
        for r in data.raw:
            if r.step_time is not None:
                r.wall_time, r.step_time = r.step_time, None
        for n, rl in data.roles.items():
            if rl == "step_time":
                data.roles[n] = "wall clock (Unix time: not a step time)"
        data.notes.append(
            "the log's 'time' values are Unix times (a clock): not read as step times"
        )

    def _no_signal(self) -> None:
        """No verdict on a log whose training signal was not found: when no record holds a
        loss, an accuracy, a grad norm or a loss scale while names the tables do not know were
        read (``avr_loss``, ``objective``), the records are dropped and ``tried`` says which
        names to ``--map`` — the caller then exits 2 instead of judging the LR or step times
        alone as "no problems found"."""
        data = self.data
        if not data.raw or any(getattr(r, f) is not None for r in data.raw for f in _SIGNAL):
            return
        if not any(getattr(r, f) is not None for r in data.raw for f in _SIDE):
            return  # nothing a verdict could rest on at all: the caller says so with the names
        parts = [n for n, role in data.roles.items() if role == "loss component"]
        if len(parts) >= 2:
            return  # terms of a loss printed without its total: their sum is the loss (standins)
        unknown = [n for n, role in data.roles.items() if role in ("metric", "eval metric")]
        unknown += parts  # one term alone is no loss (kohya's ``avr_loss``): --map it
        if not unknown:
            return
        known = sorted(
            {role for role in data.roles.values() if role not in ("metric", "eval metric")}
        )
        data.raw = []
        shown = ", ".join(unknown[:12]) + (" ..." if len(unknown) > 12 else "")
        data.tried = [
            f"text: records without a loss or accuracy (read: {', '.join(known) or 'nothing'}; "
            f"names not known: {shown}; --map loss={unknown[0]} if that is the loss)"
        ]

    def _batches_of_epoch(self) -> None:
        """Per-epoch lines that are really per-batch lines (``Epoch 2 train Loss: 0.0044 ...``
        printed after every batch): two consecutive train records with the same epoch and
        different values cannot both be the epoch's summary; when that holds for most records,
        every record is numbered by its order instead (a restarted run, whose epochs repeat far
        apart, is left alone)."""
        train = [r for r in self.data.raw if r.kind == "train"]
        repeats = sum(
            a.step == b.step and a.rank == b.rank and not _same_values(a, b)
            for a, b in pairwise(train)
        )
        if repeats == 0 or 2 * repeats < len(train):
            return  # a stray repeat (Keras' ``Epoch 00018: early stopping`` header) is no pattern
        step = 0
        for r in self.data.raw:
            if r.kind == "train":
                step += self.logging_steps
            r.step = max(step, self.logging_steps)
        self.epoch_steps = False
        self.counted = len(train)

    def _vocabulary(self, top: str) -> str:
        """Whose config keys a fix should use (``ConfigFacts.format``, see detectors.fixes).

        DeepSpeed overflow lines win over the HF dicts printed beside them: under DeepSpeed its
        ds_config holds the fp16 and clipping settings (HF's ``fp16``/``max_grad_norm`` only fill
        its "auto" values). build-nanogpt's ``step N`` lines come from code without a config.
        """
        if self.kinds["deepspeed"]:
            return "deepspeed"
        if top == "nanogpt":
            return "nanogpt" if self.nanogpt_iter else "generic-log"
        for d in dl.DIALECTS:
            if d.name == top:
                return d.vocabulary
        return "generic-log"


_TOTAL = ("tot", "total", "overall", "sum")


#: a step "time" of this many seconds or more (three years) is a clock reading, not a duration
CLOCK_SECONDS = 1e8


def _one_per_field(
    entries: list[tuple[int, str, float, bool, str]],
) -> tuple[list[tuple[int, str, float, bool, str]], list[tuple[int, str, float]]]:
    """One value per record field when several names map to it (``Loc Loss: .. Cls Loss: ..
    Tot Loss: ..``): the one named the field itself or a total wins, a test-set value loses to a
    validation one (``Vali Loss: .. Test Loss: ..``: the validation curve is the one training
    watches), else the last printed; the others are kept as metrics under their own names (never
    silently dropped)."""
    by_field: dict[str, list[tuple[int, str, float, bool, str]]] = {}
    for e in entries:
        by_field.setdefault(e[1], []).append(e)
    if len(by_field) == len(entries):
        return entries, []
    keep, extra = [], []
    for f, es in by_field.items():

        def rank(e: tuple[int, str, float, bool, str], f: str = f) -> int:
            words = e[4].lower().replace("_", " ").split()
            if words and words[0] == "test":
                return -1
            return 2 if words == [f] else 1 if words and words[0].startswith(_TOTAL) else 0

        best = max(reversed(es), key=rank)  # ties: the last printed
        keep.append(best)
        extra += [
            (idx, name, div) for idx, _f, div, _z, name in es if (idx, name) != (best[0], best[4])
        ]
    return keep, extra


#: YOLOv5's console table before v6 names its loss columns ``box obj cls`` (later ``box_loss``...)
_YOLO_LOSSES = frozenset({"box", "obj", "cls", "dfl", "seg"})


def _yolo_columns(header: list[str]) -> list[str]:
    """A table header with YOLO's short loss names spelled as its later ones (``box`` ->
    ``box_loss``) when it is YOLO's table: a ``gpu_mem`` column beside ``Epoch``."""
    low = [h.lower() for h in header]
    if "gpu_mem" not in low or "epoch" not in low:
        return header
    return [f"{h}_loss" if h.lower() in _YOLO_LOSSES else h for h in header]


def _exp2(lg: float) -> float:
    """2 ** ``lg`` (a loss scale printed as its base-2 logarithm), inf beyond a float's range."""
    try:
        return math.ldexp(1.0, int(lg)) * 2.0 ** (lg - int(lg)) if math.isfinite(lg) else 2.0**lg
    except OverflowError:
        return math.inf


def _rank_name(rank: int) -> str:
    """A rank as the log named it: a node's IPv4 address (see ``lines.normalise``) or a number."""
    return str(ipaddress.IPv4Address(rank)) if rank >= 1 << 24 else str(rank)


def _same_values(a: StepRecord, b: StepRecord) -> bool:
    """Whether two records hold the same values (a line printed twice, not two batches)."""
    return a.metrics == b.metrics and all(_same(getattr(a, f), getattr(b, f)) for f in _FIELDS)


def _same(a: Any, b: Any) -> bool:
    """Equal as printed values: ``0.1007`` and ``10.07%`` are; NaN equals NaN."""
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9) or (a != a and b != b)
    return bool(a == b)


class _Compiled:
    """A plan's metrics for one split: (value index, field, unit divisor, zero is missing, name)
    for record fields, (value index, name, unit divisor) for other metrics."""

    __slots__ = (
        "all_eval",
        "ef",
        "em",
        "has_time",
        "known",
        "percent",
        "primary",
        "ratios",
        "registered",
        "roles",
        "skipped",
        "tf",
        "tm",
    )

    def __init__(self) -> None:
        self.tf: list[tuple[int, str, float, bool, str]] = []
        self.tm: list[tuple[int, str, float]] = []
        self.ef: list[tuple[int, str, float, bool, str]] = []
        self.em: list[tuple[int, str, float]] = []
        self.skipped: list[int] = []
        #: (value, total) indexes of an accuracy printed as a count of a total
        self.ratios: list[tuple[int, int]] = []
        self.roles: list[tuple[str, str]] = []
        self.percent: set[str] = set()
        self.primary = False
        self.has_time = False
        self.known = False  # every value is a known record field (may continue the line above)
        self.registered = False
        #: every value is an eval value by its name (``Validation perplexity: nan``): the line is
        #: an eval line, placed at the last train step, not numbered as a step of its own
        self.all_eval = False


def _read_values(
    comp: _Compiled, values: list[Any]
) -> tuple[dict[str, Any], dict[str, float], dict[str, Any], dict[str, float]]:
    """(train fields, train metrics, eval fields, eval metrics) of one line."""
    if comp.ratios:
        values = list(values)
        for i, t in comp.ratios:
            total = _number(values[t])
            values[i] = _number(values[i]) / total if total > 0 else math.nan
    tm = {name: _number(values[idx]) / div for idx, name, div in comp.tm} if comp.tm else {}
    em = {name: _number(values[idx]) / div for idx, name, div in comp.em} if comp.em else {}
    out: list[dict[str, Any]] = []
    for fields_, mets in ((comp.tf, tm), (comp.ef, em)):
        kw: dict[str, Any] = {}
        for idx, f, div, zero, name in fields_:
            v = values[idx]
            try:
                x = float(v)
            except ValueError:
                x = _number(v)
            if zero and x == 0.0:
                continue
            if f in _INT_FIELDS:
                if x == x and x not in (_INF, -_INF):
                    kw[f] = int(x)
                else:
                    mets[name] = x  # ``consumed samples: inf`` is data, not a count
            elif f == "skipped":
                kw[f] = bool(x)
            else:
                kw[f] = x / div if div != 1.0 else x
        out.append(kw)
    return out[0], tm, out[1], em


def _seconds(value: bytes | str, div: float, *, inverse: bool) -> float | None:
    try:
        x = _number(value)
    except ValueError:
        return None
    if inverse:
        return 1.0 / x if x else None
    return x / div
