"""Non-finite loss and gradient norms (NaN/inf).

Seeds 002 and 004 (``Avg Grad Norm: inf``, loss stuck at 12) are what this names: a step whose
loss or gradient norm is not finite. Whether the run survived depends on what happened next: a
step the guard (or GradScaler) skipped leaves the weights intact; an applied non-finite update
corrupts them, and every later loss is NaN.

Under fp16 AMP an inf gradient with a finite loss is usually the loss scaler probing its range,
not a divergence: those steps are left to ``LossScaleDetector`` (``fp16-overflow``) so the same
step is not reported twice. Two cases are not probing, and are ``nonfinite-grad`` (seed 004: the
scale halved on every step down to 1e-17 while ``grad_norm=inf`` stayed — the gradients had
exploded, the scaler was not the cause):

- the scale is at or below its floor (``SCALE_FLOOR`` = 1): it no longer amplifies anything, so the
  unscaled gradients are inf themselves;
- the scale stopped backing off: an inf gradient on the record right after another one, at the same
  or a higher scale (a static scale, or a scaler pinned at its minimum) — a dynamic scaler halves
  after every overflow, so a repeated inf at an unchanged scale is no probe.

Bad batch or instability (issue 13): the first step of each non-finite episode is judged by its
lead-up (:class:`~stabletrain.detectors.badbatch.Onset`). When no episode had one — the loss and
gradient norm were at their usual level just before, the LR had not just risen — the cause is
the data, reported as its own finding ``bad-batch`` (the cause of ``nonfinite-loss``/``-grad``):
check those batches and let the guard skip them, not "LR too high". An episode after a rising
gradient norm or loss, or right after the LR rose (a warm-up's end, a jump), stays an instability.

A non-finite eval loss in a log whose train loss stayed finite (or was not logged) is
``nonfinite-loss`` too, from the evaluations (an error unless later evaluations were finite).

Limits: a log that records no loss/grad norm gives nothing to see; a single inf at a scale above
the floor stays fp16-overflow even if the gradients were truly inf (the log cannot tell them apart).
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np

from stabletrain.detectors.amp import SCALE_FLOOR
from stabletrain.detectors.badbatch import Onset, bad_batch_fixes, describe_before
from stabletrain.detectors.base import epoch_index
from stabletrain.detectors.columns import Batch
from stabletrain.detectors.fixes import lower_lr_fix, make_fix, setting
from stabletrain.records import SEVERITY_ORDER, ConfigFacts, Finding, Fix, StepRecord


def _nonfinite(v: float | None) -> bool:
    return v is not None and not math.isfinite(v)


class NonFiniteDetector:
    """Steps with a NaN/inf loss (``nonfinite-loss``) or grad norm (``nonfinite-grad``)."""

    ids: tuple[str, ...] = ("nonfinite-loss", "nonfinite-grad", "bad-batch")

    #: episode onsets judged (the first ones; later ones are counted, not kept)
    max_onsets = 32

    def __init__(self) -> None:
        self.bad: dict[str, list[int]] = {"nonfinite-loss": [], "nonfinite-grad": []}
        self.skipped: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        self.epochs: dict[str, list[int]] = {"nonfinite-loss": [], "nonfinite-grad": []}
        self.n_records = 0
        self.last_loss_finite: bool | None = None
        self.finite_after: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        self.unknown_skip: dict[str, int] = {"nonfinite-loss": 0, "nonfinite-grad": 0}
        #: the loss scale of the previous scaled record if its grad norm was non-finite
        self.prev_inf_scale: float | None = None
        self.max_lr = 0.0
        self.onset = Onset()
        #: one per non-finite episode: {"step", "lead_up" (None: too early to tell), "reasons",
        #: "before", "skipped"}
        self.onsets: list[dict[str, Any]] = []
        self.n_onsets = 0
        self.in_episode = False
        #: ``n_records`` at the last fp16 overflow the scaler absorbed (an inf grad, finite loss)
        self.overflow_at: int | None = None
        self.saw_scale = False  # a loss scale logged: fp16 with a scaler
        #: eval records with a non-finite eval loss, and finite eval losses after the first one
        self.eval_bad: list[int] = []
        self.eval_finite_after = 0

    def _scaler_probing(self, record: StepRecord) -> bool:
        """Whether a non-finite grad norm is the loss scaler probing its range (fp16-overflow)."""
        scale = record.loss_scale
        if scale is None or record.loss is None:
            return False
        if scale <= SCALE_FLOOR:
            return False  # nothing amplified: the gradients are inf themselves
        # inf again right after an inf, and the scale did not go down: nothing is backing off
        return self.prev_inf_scale is None or scale < self.prev_inf_scale

    def _eval(self, record: StepRecord) -> None:
        """An eval record: a non-finite eval loss is the model's loss gone non-finite too."""
        v = record.eval_loss
        if v is None:
            return
        if not math.isfinite(v):
            self.eval_bad.append(record.step)
        elif self.eval_bad:
            self.eval_finite_after += 1

    def update(self, record: StepRecord) -> Finding | None:
        if record.kind != "train":
            self._eval(record)
            return None
        self.n_records += 1
        if record.lr is not None and record.lr > self.max_lr:
            self.max_lr = record.lr  # the fix's LR value when the config gives none
        fid: str | None = None
        if _nonfinite(record.loss):
            fid = "nonfinite-loss"
        elif _nonfinite(record.grad_norm) and not self._scaler_probing(record):
            fid = "nonfinite-grad"
        if record.loss_scale is not None:
            self.saw_scale = True
            self.prev_inf_scale = record.loss_scale if _nonfinite(record.grad_norm) else None
        for k, steps in self.bad.items():
            if steps and fid != k and record.loss is not None and math.isfinite(record.loss):
                self.finite_after[k] += 1
        if record.loss is not None:
            self.last_loss_finite = math.isfinite(record.loss)
        if fid is None and _nonfinite(record.grad_norm):
            self.overflow_at = self.n_records  # the scaler probing: overflow, not a clean step
        if fid is None:
            self.in_episode = False
            self.onset.push(record.loss, record.grad_norm, record.lr)
            return None
        if not self.in_episode:
            self._judge_onset(record)
        self.in_episode = True
        self.bad[fid].append(record.step)
        epoch = epoch_index(record.epoch)
        if epoch is not None:
            self.epochs[fid].append(epoch)
        if record.skipped:
            self.skipped[fid] += 1
        elif record.skipped is None:
            self.unknown_skip[fid] += 1
        what = "loss" if fid == "nonfinite-loss" else "gradient norm"
        value = record.loss if fid == "nonfinite-loss" else record.grad_norm
        return Finding(
            id=fid,
            severity="error",
            title=f"non-finite {what} ({value}) at step {record.step}",
            steps=[record.step],
            epochs=[] if epoch is None else [epoch],
            evidence={"value": value, "skipped": bool(record.skipped)},
            source="log",
        )

    def _judge_onset(self, record: StepRecord) -> None:
        self.n_onsets += 1
        if len(self.onsets) >= self.max_onsets:
            return
        verdict = self.onset.judge(record.lr)
        if self.overflow_at is not None and self.n_records - self.overflow_at <= self.onset.size:
            # fp16 gradients overflowing (the scaler backing off) in the steps before: the
            # precision was already at its limit, not a batch out of the blue
            reason = "the fp16 gradients were already overflowing in the steps before"
            verdict = {"lead_up": True, "reasons": [reason], "before": {}}
        self.onsets.append(
            {
                "step": record.step,
                "lead_up": None if verdict is None else verdict["lead_up"],
                "reasons": [] if verdict is None else verdict["reasons"],
                "before": "" if verdict is None else describe_before(verdict),
                "skipped": bool(record.skipped),
            }
        )

    def update_many(self, batch: Batch) -> None:
        """``update`` for every record of the batch (see ``detectors.base``): records with a
        non-finite loss or grad norm one by one, the finite stretches between them in bulk."""
        loss, grad = batch.floats("loss"), batch.floats("grad_norm")
        batch.floats("lr")
        loss_none, grad_none = batch.none("loss"), batch.none("grad_norm")
        scale_none = batch.none("loss_scale")
        odd = ~np.isfinite(loss)  # non-finite, or missing (NaN here)
        if loss_none is not None:
            odd &= ~loss_none
        odd_grad = ~np.isfinite(grad)
        if grad_none is not None:
            odd_grad &= ~grad_none
        train, n, start = batch.train, len(batch), 0
        for i in np.flatnonzero(~train).tolist():
            self._eval(batch[i])  # eval records are few: one by one
        for i in [*np.flatnonzero((odd | odd_grad) & train).tolist(), n]:
            if i > start:
                t = start + np.flatnonzero(train[start:i])
                self._finite_stretch(batch, t, loss_none, scale_none)
            if i < n:
                self.update(batch[i])
            start = i + 1

    def _finite_stretch(
        self,
        batch: Batch,
        t: np.ndarray,
        loss_none: np.ndarray | None,
        scale_none: np.ndarray | None,
    ) -> None:
        """``update`` on train records ``t`` whose loss and grad norm are finite or missing."""
        if t.size == 0:
            return
        self.n_records += int(t.size)
        self.max_lr = batch.running_max("lr", t, self.max_lr)
        if scale_none is None or not scale_none[t].all():
            self.prev_inf_scale = None
            self.saw_scale = True
        n_loss = int(t.size) if loss_none is None else int((~loss_none[t]).sum())
        for k, steps in self.bad.items():
            if steps:
                self.finite_after[k] += n_loss
        if n_loss:
            self.last_loss_finite = True
        self.in_episode = False
        # the last values of the stretch, as push() would have kept them
        for name, col in (("loss", "loss"), ("grad", "grad_norm"), ("lr", "lr")):
            keep = t[np.isfinite(batch.floats(col)[t])][-self.onset.size :]
            if keep.size:
                self.onset.extend(name, batch.take(col, keep))

    def finish(self, facts: ConfigFacts | None = None) -> list[Finding]:
        facts = facts or ConfigFacts()
        out: list[Finding] = []
        # fp16 overflows in the forward come without a lead-up too: under fp16 (the config says
        # so, or the log has a loss scale) a sudden NaN is not evidence of bad data
        fp16 = self.saw_scale or _is_fp16(facts)
        data_cause = (
            not fp16 and bool(self.onsets) and all(o["lead_up"] is False for o in self.onsets)
        )
        lead = next((o for o in self.onsets if o["lead_up"]), None)
        for fid, steps in self.bad.items():
            if not steps:
                continue
            what = "loss" if fid == "nonfinite-loss" else "gradient norm"
            n, skipped = len(steps), self.skipped[fid]
            recovered = self.finite_after[fid] > 0 and bool(self.last_loss_finite)
            # All skipped and the run went on with finite losses: handled, but worth knowing.
            severity: Literal["warning", "error"] = (
                "warning" if skipped == n and recovered else "error"
            )
            if recovered:
                outcome = "training continued with finite losses afterwards"
            elif self.finite_after[fid] > 0:
                # finite losses between them, the last one not: intermittent, not (yet) corrupted
                outcome = (
                    "finite losses came between them, but the log ends on a non-finite loss: "
                    "the run had not recovered when the log ends"
                )
            else:
                outcome = "the loss never became finite again: the weights are corrupted"
            unknown = self.unknown_skip[fid]
            if skipped == n:
                handled = f"all {n} were skipped (no update applied)"
            elif unknown == n:
                handled = f"the log does not say whether these {n} steps were skipped"
            else:
                handled = f"{n - skipped - unknown} of {n} were applied as updates" + (
                    f" (the log does not say for {unknown})" if unknown else ""
                )
            isolated = n <= 3 and recovered
            if data_cause:
                cause = (
                    "Nothing led up to it: the steps just before were as usual and the LR had not "
                    "risen, so the cause is the data at those steps (see bad-batch), not the "
                    "learning rate."
                )
            elif lead is not None:
                cause = (
                    f"Before step {lead['step']} " + "; ".join(lead["reasons"]) + ": the updates "
                    "were diverging (a learning rate too high for this point of training, no or "
                    "too loose gradient clipping, or fp16 overflow)."
                )
            elif isolated:
                cause = (
                    "Isolated non-finite steps with finite steps around them usually come from a "
                    "bad batch (NaN/inf in the inputs or labels, a log of 0, a division by a zero "
                    "count)."
                )
            else:
                cause = (
                    "Repeated non-finite steps mean the updates are diverging: a learning rate "
                    "too high, no or too loose gradient clipping, or fp16 overflow."
                )
            out.append(
                Finding(
                    id=fid,
                    severity=severity,
                    title=f"{n} step(s) with a non-finite {what}, first at step {steps[0]}",
                    explanation=f"{handled}; {outcome}. {cause}",
                    steps=list(steps),
                    epochs=sorted(set(self.epochs[fid])),
                    evidence={
                        "count": n,
                        "fraction": round(n / max(self.n_records, 1), 4),
                        "first_step": steps[0],
                        "last_step": steps[-1],
                        "skipped": skipped,
                        "recovered": recovered,
                    },
                    # a data cause's fixes are the bad-batch finding's (its cause), not repeated
                    fixes=[] if data_cause else _fixes(facts, isolated, self.max_lr or None),
                    source="log",
                    related=["bad-batch"] if data_cause else [],
                )
            )
        if data_cause and out:
            out.insert(0, self._bad_batch(facts, out))
        if self.eval_bad and not self.bad["nonfinite-loss"]:
            out.append(self._eval_finding())
        return out

    def _eval_finding(self) -> Finding:
        """``nonfinite-loss`` from the evaluations alone: the train loss was finite or not
        logged, but the model's eval loss was NaN/inf."""
        steps = self.eval_bad
        n, recovered = len(steps), self.eval_finite_after > 0
        outcome = (
            "later evaluations were finite again"
            if recovered
            else "the eval loss never became finite again: the model's outputs are non-finite"
        )
        return Finding(
            id="nonfinite-loss",
            severity="warning" if recovered else "error",
            title=f"{n} evaluation(s) with a non-finite eval loss, first at step {steps[0]}",
            explanation=(
                f"{outcome}. A NaN/inf eval loss means the weights or the eval batches hold "
                "non-finite values (a diverged update, fp16 overflow in the forward pass, or a "
                "bad eval sample)."
            ),
            steps=list(steps),
            evidence={
                "count": n,
                "first_step": steps[0],
                "last_step": steps[-1],
                "recovered": recovered,
                "source": "eval_loss",
            },
            fixes=[] if recovered else _fixes(ConfigFacts(), False, self.max_lr or None),
            source="log",
        )

    def _onset_steps(self) -> list[int]:
        return [int(o["step"]) for o in self.onsets]

    def _all_skipped(self) -> bool:
        return all(o["skipped"] for o in self.onsets)

    def _bad_batch(self, facts: ConfigFacts, effects: list[Finding]) -> Finding:
        """The data cause of non-finite episodes none of which had a lead-up."""
        steps = self._onset_steps()
        severity = max((f.severity for f in effects), key=lambda s: SEVERITY_ORDER[s])
        lines = [f"step {o['step']}: before it {o['before']}" for o in self.onsets[:5]]
        more = self.n_onsets - len(lines)
        outcome = (
            "each was skipped and training went on"
            if self._all_skipped() and severity != "error"
            else "an applied update from such a batch turned the weights non-finite"
            if severity == "error"
            else "the run went on"
        )
        return Finding(
            id="bad-batch",
            severity=severity,
            title=f"{self.n_onsets} bad batch(es): a non-finite step out of the blue, first at "
            f"step {steps[0]}",
            explanation=(
                "A non-finite loss or gradient norm appeared with no lead-up — "
                + "; ".join(lines)
                + (f"; and {more} more" if more > 0 else "")
                + ". The gradient norm and the loss had not risen beyond their usual noise and "
                "the learning rate had not just gone up, so this is not an instability that "
                "built up (which a lower LR or tighter clipping would fix) but the data at those "
                f"steps: {outcome}. Typical sources: NaN/inf or extreme values in the inputs, "
                "labels out of range, an empty target, a log of 0 or a division by a zero count "
                "in the loss."
                + (
                    ""
                    if "precision" in facts
                    else " The precision is not known: if this run trains in fp16, an overflow "
                    "in the forward pass also comes without a lead-up."
                )
            ),
            steps=steps,
            evidence={
                "onsets": self.n_onsets,
                "steps": steps,
                "before": {str(o["step"]): o["before"] for o in self.onsets[:10]},
                "skipped": self._all_skipped(),
            },
            fixes=bad_batch_fixes(facts, steps, self._all_skipped())
            + (
                []
                if "precision" in facts
                else [
                    make_fix(
                        facts,
                        "Or, if the run trains in fp16, train in bf16 (fp32's range, no overflow).",
                        precision="bf16",
                    )
                ]
            ),
            source="log",
            related=[f.id for f in effects],
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "bad": {k: list(v) for k, v in self.bad.items()},
            "skipped": dict(self.skipped),
            "epochs": {k: list(v) for k, v in self.epochs.items()},
            "n_records": self.n_records,
            "last_loss_finite": self.last_loss_finite,
            "finite_after": dict(self.finite_after),
            "unknown_skip": dict(self.unknown_skip),
            "prev_inf_scale": self.prev_inf_scale,
            "max_lr": self.max_lr,
            "onset": self.onset.state_dict(),
            "onsets": [dict(o, reasons=list(o["reasons"])) for o in self.onsets],
            "n_onsets": self.n_onsets,
            "in_episode": self.in_episode,
            "overflow_at": self.overflow_at,
            "saw_scale": self.saw_scale,
            "eval_bad": list(self.eval_bad),
            "eval_finite_after": self.eval_finite_after,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.bad = {k: [int(s) for s in v] for k, v in state["bad"].items()}
        self.skipped = {k: int(v) for k, v in state["skipped"].items()}
        self.epochs = {k: [int(e) for e in v] for k, v in state["epochs"].items()}
        self.n_records = int(state["n_records"])
        self.last_loss_finite = state["last_loss_finite"]
        self.finite_after = {k: int(v) for k, v in state["finite_after"].items()}
        unknown = state.get("unknown_skip", {})
        self.unknown_skip = {k: int(unknown.get(k, 0)) for k in self.bad}
        prev = state.get("prev_inf_scale")
        self.prev_inf_scale = None if prev is None else float(prev)
        self.max_lr = float(state.get("max_lr", 0.0))
        self.onset.load_state_dict(state.get("onset", {}))
        self.onsets = [dict(o, reasons=list(o["reasons"])) for o in state.get("onsets", [])]
        self.n_onsets = int(state.get("n_onsets", len(self.onsets)))
        self.in_episode = bool(state.get("in_episode", False))
        self.overflow_at = state.get("overflow_at")
        self.saw_scale = bool(state.get("saw_scale", False))
        self.eval_bad = [int(s) for s in state.get("eval_bad", [])]
        self.eval_finite_after = int(state.get("eval_finite_after", 0))


def _is_fp16(facts: ConfigFacts) -> bool:
    return facts.get("precision") in ("fp16", "16", "16-mixed", "float16")


def _fixes(facts: ConfigFacts, isolated: bool, logged_lr: float | None) -> list[Fix]:
    fixes: list[Fix] = []
    if isolated:
        fixes.append(
            Fix(
                "Check the batches at these steps for NaN/inf inputs or labels; let the guard "
                "skip non-finite steps meanwhile.",
                code="guard = stabletrain.Guard(model, optimizer)  # skip_nonfinite=True",
            )
        )
    fixes.append(lower_lr_fix(facts, 3.0, logged_lr))
    clip, _ = setting(facts, "max_grad_norm")  # HF and Megatron clip at 1.0 unless told not to
    if not isinstance(clip, (int, float)) or clip <= 0:
        fixes.append(make_fix(facts, "Clip gradients at norm 1.0.", max_grad_norm=1.0))
    if _is_fp16(facts):
        fixes.append(
            make_fix(
                facts,
                "Train in bf16 instead of fp16 (no loss scaling, same range as fp32).",
                precision="bf16",
            )
        )
    return fixes
