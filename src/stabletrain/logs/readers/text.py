"""Read console/text training logs, including ones pasted into markdown or bug reports.

Recognised lines (ANSI colour codes and tqdm carriage returns stripped first):

- Megatron-LM / Megatron-DeepSpeed: ``iteration N/ M | lm loss: .. | loss scale: .. | grad norm: ..
  | number of skipped iterations: ..`` and ``validation loss at iteration N | lm loss value: ..``.
  Megatron prints ``grad norm: 0.000`` when it did not compute the norm (treated as missing); an
  identical non-zero grad norm on consecutive lines means the step was skipped (fp16 overflow: the
  norm is not recomputed), so those records get ``skipped=True``.
- DeepSpeed fp16 ``OVERFLOW! Rank 0 Skipping step. Attempted loss scale: X, reducing to Y`` (and
  the older ``Grad overflow`` wording): an event plus a skipped record with the new loss scale.
- HF Trainer console dicts ``{'loss': .., 'grad_norm': .., 'learning_rate': .., 'epoch': ..}``,
  Python reprs with ``nan``/``inf``; they carry no step, so steps are the row order times
  ``logging_steps`` (1 unless given) — said in the notes.
- nanoGPT style ``step N, loss: X, norm: G, lr: L, time: T ms`` and ``iter N: loss X, time Tms``.
- mmengine ``Epoch(train) [e][i/N]  lr: ..  loss: ..  grad_norm: ..`` (step = (e-1)*N + i).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from stabletrain.errors import LogReadError
from stabletrain.logs.readers.base import RunData
from stabletrain.logs.readers.fields import records_from_row, to_float
from stabletrain.records import StepRecord

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_NUM = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|NaN|inf|-inf|Infinity)"
_MEGATRON = re.compile(r"iteration\s+(\d+)\s*/\s*(\d+)\s*\|(.*)")
_MEGATRON_VAL = re.compile(r"validation loss at iteration\s+(\d+)\s*\|(.*)")
_OVERFLOW = re.compile(
    rf"(?:OVERFLOW!|[Oo]verflow).*?Skipping step\.?\s*Attempted loss scale:\s*({_NUM}),\s*reducing to\s*({_NUM})"
)
_MIN_SCALE = re.compile(r"loss scale already at minimum")
_TQDM = re.compile(r"\|\s*(\d+)/(\d+)\s*\[")
_HF_DICT = re.compile(r"\{'[^{}]*\}")
_HF_PAIR = re.compile(rf"'([^']+)':\s*({_NUM}|'[^']*')")
_NANOGPT = re.compile(r"^\s*(?:step|iter)\s+(\d+)\s*[,:|]\s*(.*)$")
_MMENGINE = re.compile(r"Epoch\((train|val)\)\s*\[(\d+)\]\s*\[\s*(\d+)\s*/\s*(\d+)\]\s*(.*)")
_MM_ITER = re.compile(r"Iter\((train|val)\)\s*\[\s*(\d+)\s*/\s*(\d+)\]\s*(.*)")
_PAIR = re.compile(rf"([A-Za-z][\w/ .()-]*?)\s*[:=]?\s+({_NUM})\s*(ms|s)?(?=\s*(?:[,|]|\s\s|$))")

_MEGATRON_KEYS = {
    "lm loss": "loss",
    "loss": "loss",
    "loss scale": "loss_scale",
    "grad norm": "grad_norm",
    "learning rate": "lr",
    "consumed samples": "samples",
    "consumed tokens": "tokens",
}
_HF_SUMMARY = ("train_runtime", "train_loss", "total_flos")


def read(path: Path, mapping: dict[str, str] | None = None, logging_steps: int = 1) -> RunData:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as e:
        raise LogReadError(f"{path}: cannot read ({e.strerror or e})") from e
    return parse_text(text, path, mapping, logging_steps)


def parse_text(
    text: str, path: Path, mapping: dict[str, str] | None = None, logging_steps: int = 1
) -> RunData:
    data = RunData(path=path, format="text")
    kinds: Counter[str] = Counter()
    lookup = _user_lookup(mapping)
    hf_rows = 0
    inferred = 0
    tqdm_step: int | None = None
    nanogpt_iter = False  # nanoGPT's train.py prints "iter N: loss ..."; build-nanogpt "step N"
    prev_norm: float | None = None
    prev_step = -1
    for raw_line in _ANSI.sub("", text).replace("\r", "\n").split("\n"):
        line = raw_line.strip()
        if not line:
            continue
        t = _TQDM.search(line)
        if t:
            tqdm_step = int(t.group(1))
        m = _MEGATRON.search(line)
        if m:
            rec = _megatron(int(m.group(1)), m.group(3), data)
            if "max_steps" not in data.facts:
                data.facts.set("max_steps", int(m.group(2)), key="train-iters", file=str(path))
            g = rec.grad_norm
            if g is not None and g == prev_norm and rec.step > prev_step:
                rec.skipped = True  # norm not recomputed: the step was skipped (overflow)
            prev_norm, prev_step = g, rec.step
            data.raw.append(rec)
            kinds["megatron"] += 1
            continue
        m = _MEGATRON_VAL.search(line)
        if m:
            vals = _pairs(m.group(2))
            loss = vals.get("lm loss value", vals.get("loss"))
            data.raw.append(StepRecord(step=int(m.group(1)), kind="eval", eval_loss=loss))
            kinds["megatron"] += 1
            continue
        m = _OVERFLOW.search(line)
        if m:
            step = (tqdm_step + 1) if tqdm_step is not None else _last_step(data) + 1
            old, new = to_float(m.group(1)), to_float(m.group(2))
            data.events.append(
                {
                    "step": step,
                    "event": "skip",
                    "severity": "warning",
                    "message": f"fp16 overflow: loss scale {old:g} -> {new:g}, step skipped",
                    "data": {"reason": "fp16-overflow", "attempted_scale": old, "new_scale": new},
                }
            )
            data.raw.append(
                StepRecord(step=step, loss_scale=new, skipped=True, action="skip_nonfinite_grad")
            )
            kinds["deepspeed"] += 1
        if _MIN_SCALE.search(line) and not line.startswith("#"):
            step = _last_step(data)
            data.events.append(
                {"step": step, "event": "abort", "severity": "error", "message": line[:200]}
            )
        if "{'" in line:
            for d in _HF_DICT.findall(line):
                row = {k: v for k, v in _HF_PAIR.findall(d)}
                if not row or any(k in row for k in _HF_SUMMARY):
                    continue
                hf_rows += 1
                given = to_float(row.get("step"))
                if given is not None:
                    step = int(given)
                elif tqdm_step is not None:
                    step = tqdm_step  # the progress bar printed just before the dict
                else:
                    step = hf_rows * logging_steps
                    inferred += 1
                _add_row(data, row, step, lookup)
                kinds["hf-console"] += 1
            continue
        m = _MMENGINE.search(line)
        if m:
            split, ep, i, n, rest = m.groups()
            step = (int(ep) - 1) * int(n) + int(i)
            _add_mm(data, split, step, rest, lookup, float(ep))
            kinds["mmengine"] += 1
            continue
        m = _MM_ITER.search(line)
        if m:
            split, i, _n, rest = m.groups()
            _add_mm(data, split, int(i), rest, lookup, None)
            kinds["mmengine"] += 1
            continue
        m = _NANOGPT.match(line)
        if m:
            row = _pairs(m.group(2), seconds=True)
            if row:
                _add_row(data, row, int(m.group(1)), lookup)
                kinds["nanogpt"] += 1
                nanogpt_iter = nanogpt_iter or line.startswith("iter")
    if kinds:
        data.format = kinds.most_common(1)[0][0]
        data.facts.format = _vocabulary(kinds, nanogpt_iter)
    if inferred:
        data.notes.append(
            f"HF console dicts carry no step: steps inferred as row order x logging_steps "
            f"({logging_steps}); eval rows count as rows too"
        )
    if kinds["megatron"] and any(r.skipped for r in data.raw if r.kind == "train"):
        n = sum(1 for r in data.raw if r.skipped)
        data.notes.append(f"{n} Megatron line(s) repeat the previous grad norm: marked skipped")
    if not data.raw and not data.events:
        raise LogReadError(
            f"{path}: no training-log lines recognised (Megatron, DeepSpeed, HF console, nanoGPT, "
            "mmengine); for CSV/JSONL pass the file as such or give a mapping"
        )
    return data


def _vocabulary(kinds: Counter[str], nanogpt_iter: bool) -> str:
    """Whose config keys a fix should use (``ConfigFacts.format``, see detectors.fixes).

    DeepSpeed overflow lines win over the HF dicts printed beside them: under DeepSpeed its
    ds_config holds the fp16 and clipping settings (HF's ``fp16``/``max_grad_norm`` only fill its
    "auto" values). build-nanogpt's ``step N`` lines come from code without a config: generic.
    """
    if kinds["deepspeed"]:
        return "deepspeed"
    top = kinds.most_common(1)[0][0]
    if top == "nanogpt":
        return "nanogpt" if nanogpt_iter else "generic-log"
    return top


def _megatron(step: int, rest: str, data: RunData) -> StepRecord:
    kw: dict[str, Any] = {}
    metrics: dict[str, float] = {}
    for part in rest.split("|"):
        key, sep, val = part.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        x = to_float(val)
        if x is None:
            continue
        field = _MEGATRON_KEYS.get(key)
        if field == "grad_norm" and x == 0.0:
            continue  # Megatron prints 0.000 when it did not compute the norm
        if field in ("samples", "tokens"):
            kw[field] = int(x)
        elif field is not None:
            kw[field] = x
        elif key.startswith("elapsed time per iteration"):
            kw["step_time"] = x / 1000.0 if "(ms)" in key else x
        elif key == "global batch size":
            if "batch_size" not in data.facts:
                data.facts.set("batch_size", int(x), key="global-batch-size", file=str(data.path))
            metrics[key] = x
        else:
            metrics[key] = x
            if key == "number of skipped iterations" and x > 0:
                kw["skipped"] = True
    return StepRecord(step=step, metrics=metrics, **kw)


def _pairs(rest: str, seconds: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, val, unit in _PAIR.findall(rest):
        k = key.strip().lower()
        x = to_float(val)
        if x is None:
            continue
        if seconds and k in ("time", "dt"):
            out["step_time"] = x / 1000.0 if unit == "ms" else x
        else:
            out[k] = x
    return out


def _user_lookup(mapping: dict[str, str] | None) -> dict[str, Any]:
    from stabletrain.logs.readers.fields import build_lookup

    return build_lookup([], mapping)


def _add_row(data: RunData, row: dict[str, Any], step: int, lookup: dict[str, Any]) -> None:
    tr, ev = records_from_row(row, step, lookup)
    if tr is not None and not _merge_into_last(data, tr):
        data.raw.append(tr)
    if ev is not None:
        data.raw.append(ev)


_MERGEABLE = ("epoch", "loss", "grad_norm", "lr", "loss_scale", "skipped", "action", "accuracy")


def _merge_into_last(data: RunData, rec: StepRecord) -> bool:
    """Fold ``rec`` into the previous record of the same step when they share no field.

    A DeepSpeed overflow line and the HF dict printed at the same step describe one step; a
    repeated identical dict (duplicate logging) shares fields and stays a separate raw record.
    """
    last = data.raw[-1] if data.raw else None
    if last is None or last.step != rec.step or last.kind != rec.kind:
        return False
    if any(getattr(last, f) is not None and getattr(rec, f) is not None for f in _MERGEABLE):
        return False
    for f in _MERGEABLE:
        if getattr(rec, f) is not None:
            setattr(last, f, getattr(rec, f))
    last.metrics.update(rec.metrics)
    return True


def _add_mm(
    data: RunData, split: str, step: int, rest: str, lookup: dict[str, Any], epoch: float | None
) -> None:
    row = _pairs(rest)
    row.pop("eta", None)
    if "time" in row:
        row["step_time"] = row.pop("time")
    if split == "val":
        step = _last_step(data)
        row = {f"val_{k}": v for k, v in row.items()}
    tr, ev = records_from_row(row, step, lookup)
    for r in (tr, ev):
        if r is not None:
            if r.epoch is None:
                r.epoch = epoch
            data.raw.append(r)


def _last_step(data: RunData) -> int:
    for r in reversed(data.raw):
        if r.kind == "train":
            return r.step
    return 0
