"""The reference training loop: short enough to read in one sitting, like nanoGPT's train.py.

Every optimizer step goes through the guard, the one place where backward → unscale → norm →
checks → clip → step happens::

    for epoch ...:
        for micro-batch in this epoch's order (skipping those consumed before a resume):
            guard.backward(loss / grad_accum)
            at each accumulation boundary: outcome = guard.optimizer_step()  # steps the schedule
                                           run_log.log_step(outcome.to_record(...) + extras)
        evaluate → ReduceLROnPlateau, early stopping → checkpoint

Checkpoints are taken only at accumulation boundaries, so a resumed run replays exactly the same
micro-batches, RNG draws and updates as an uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from stabletrain.errors import TrainingAborted
from stabletrain.guard.ranklog import once_per_job
from stabletrain.train.checkpoint import (
    CHECKPOINT_FILE,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from stabletrain.train.config import TrainConfig
from stabletrain.train.data import corrupt, epoch_order, iter_batches
from stabletrain.train.models import loss_and_correct
from stabletrain.train.schedules import current_lr
from stabletrain.train.setup import Parts, build
from stabletrain.train.stats import EpochStats

log = once_per_job(logging.getLogger(__name__))
Status = Literal["completed", "early-stopped", "max-steps", "aborted"]


@dataclass
class LoopState:
    """Where the loop is; saved in every checkpoint."""

    step: int = 0  # optimizer steps taken (applied or skipped)
    epoch: int = 0
    batch: int = 0  # micro-batches consumed in this epoch
    global_batch: int = 0  # micro-batches consumed since the start (fault-injection index)
    best_val: float = math.inf
    bad_evals: int = 0
    status: Status | None = None
    wall_time: float = 0.0
    abort_reason: str | None = None
    stats: EpochStats = field(default_factory=EpochStats)


def train(
    cfg: TrainConfig,
    run_dir: Path,
    *,
    resume: bool = False,
    echo: Callable[[str], None] = log.info,
    progress: Any = None,
) -> tuple[LoopState, Parts]:
    """Train ``cfg`` into ``run_dir``; returns the final state. ``progress`` is a rich Progress."""
    saved = load_checkpoint(run_dir / CHECKPOINT_FILE) if resume else None  # fail before any write
    p = build(cfg, run_dir, resume=resume)
    if not p.dist.is_main:  # one console voice: the seeds' "same epoch printed 4 times"
        echo = _quiet
    st = LoopState()
    t_start = time.perf_counter()
    accum, n = cfg.train.grad_accum, p.batches_per_epoch
    tokens_per_sample = cfg.data.seq_len if p.data.task == "lm" else 0
    unlogged: list[_Extras] = []  # steps whose outcome the guard has not resolved yet
    try:
        if saved is not None:
            st = restore(p, saved)
            t_start -= st.wall_time
            echo(f"resumed from step {st.step} (epoch {st.epoch}, batch {st.batch})")
        while st.epoch < cfg.train.epochs and st.status is None:
            task = (
                progress.add_task(f"epoch {st.epoch + 1}", total=n, completed=st.batch)
                if progress
                else None
            )
            order = epoch_order(len(p.data.x_train), seed=cfg.run.seed, epoch=st.epoch,
                                rank=p.dist.rank, world_size=p.dist.world_size)  # fmt: skip
            p.model.train()
            step_samples = step_correct = step_count = 0.0
            t0 = time.perf_counter()
            for x, y in iter_batches(
                p.data.x_train, p.data.y_train, order, cfg.data.batch_size, st.batch
            ):
                x = corrupt(x, st.global_batch, cfg.data.corrupt).to(p.device)
                y = y.to(p.device)
                st.batch += 1
                st.global_batch += 1
                boundary = st.batch % accum == 0 or st.batch == n
                with p.autocast():
                    loss, correct = loss_and_correct(p.model(x), y)
                with _no_sync(p, boundary):
                    p.guard.backward(loss / accum)
                step_correct += float(correct)
                step_count += y.numel()
                step_samples += len(y)
                if not boundary:
                    continue
                outcome = p.guard.optimizer_step()
                st.step += 1
                samples = int(step_samples) * p.dist.world_size
                unlogged.append(
                    _Extras(outcome, st.step, st.epoch + st.batch / n, step_correct / step_count,
                            samples, samples * tokens_per_sample or None,
                            round(time.perf_counter() - t0, 6))
                )  # fmt: skip
                _log_resolved(p, st, unlogged)
                if progress:
                    progress.update(
                        task,
                        completed=st.batch,
                        description=f"epoch {st.epoch + 1} loss {st.stats.last_loss:.4f}",
                    )
                step_samples = step_correct = step_count = 0.0
                t0 = time.perf_counter()
                if cfg.train.max_steps and st.step >= cfg.train.max_steps:
                    st.status = "max-steps"
                    break
                if cfg.run.checkpoint_every and st.step % cfg.run.checkpoint_every == 0:
                    checkpoint(p, st, t_start)
            p.guard.flush()  # the sync-free guard's queued steps, before the epoch's summary
            _log_resolved(p, st, unlogged)
            if progress:
                progress.remove_task(task)
            if st.batch < n:  # stopped mid-epoch (max_steps)
                break
            echo(st.stats.line(st.epoch + 1, cfg.train.epochs))
            st.stats = EpochStats()
            if (st.epoch + 1) % cfg.train.eval_every == 0 or st.epoch + 1 == cfg.train.epochs:
                after_eval(p, st, evaluate(p), echo)
            st.epoch += 1
            st.batch = 0
            if not cfg.run.checkpoint_every:
                checkpoint(p, st, t_start)
        if st.status == "max-steps":
            after_eval(p, st, evaluate(p), echo)
            checkpoint(p, st, t_start)
        st.status = st.status or "completed"
    except TrainingAborted as e:  # the guard's diagnosis; the caller reports it and exits 1
        _log_resolved(p, st, unlogged)  # the steps the guard resolved before it aborted
        st.status, st.abort_reason = "aborted", str(e)
        echo(f"[aborted] {e}")
    finally:
        st.wall_time = time.perf_counter() - t_start
        p.run_log.close()
    return st, p


def _quiet(_msg: str) -> None:
    return None


@dataclass(slots=True)
class _Extras:
    """What the loop knows of a step beside the guard's outcome (logged once it resolves)."""

    outcome: Any
    step: int
    epoch: float
    accuracy: float
    samples: int
    tokens: int | None
    step_time: float


def _log_resolved(p: Parts, st: LoopState, unlogged: list[_Extras]) -> None:
    """Log, in order, the steps whose outcome is resolved (at once on the guard's immediate
    path; at its reads on the sync-free path): epoch stats, and every ``log_every``-th or
    skipped step to the run log."""
    done = 0
    for e in unlogged:
        o = e.outcome
        if not o.resolved:
            break
        done += 1
        st.stats.add(o.loss, e.accuracy, o.grad_norm, o.lr, skipped=o.skipped)
        if e.step % p.cfg.run.log_every == 0 or o.skipped:
            rec = o.to_record(epoch=e.epoch)
            rec.accuracy = e.accuracy
            rec.samples, rec.tokens, rec.step_time = e.samples, e.tokens, e.step_time
            p.run_log.log_step(rec)
    del unlogged[:done]


def _no_sync(p: Parts, boundary: bool) -> Any:
    # DDP all-reduces on every backward; accumulate locally and reduce only at the boundary
    if p.dist.enabled and not boundary:
        return p.model.no_sync()  # type: ignore[operator]
    import contextlib

    return contextlib.nullcontext()


@torch.no_grad()
def evaluate(p: Parts) -> tuple[float, float]:
    """Mean loss and accuracy over the whole validation split (every rank computes it alike)."""
    p.raw_model.eval()
    total_loss = total_correct = total_count = 0.0
    bs = p.cfg.data.batch_size * 4
    for i in range(0, len(p.data.x_val), bs):
        x, y = p.data.x_val[i : i + bs].to(p.device), p.data.y_val[i : i + bs].to(p.device)
        with p.autocast():
            loss, correct = loss_and_correct(p.raw_model(x), y)
        total_loss += float(loss) * y.numel()
        total_correct += float(correct)
        total_count += y.numel()
    p.raw_model.train()
    return total_loss / total_count, total_correct / total_count


def after_eval(
    p: Parts, st: LoopState, result: tuple[float, float], echo: Callable[[str], None]
) -> None:
    """Log the eval, step ReduceLROnPlateau (reporting reductions), apply early stopping."""
    from stabletrain.records import StepRecord

    val_loss, val_acc = result
    p.run_log.log_eval(
        StepRecord(step=st.step, epoch=st.epoch + 1, eval_loss=val_loss, eval_accuracy=val_acc)
    )
    echo(f"  eval: loss {val_loss:.4f}  accuracy {val_acc:.2%}")
    # worsening → best-eval weights, plateau → a lower LR
    if p.guard.observe_eval(val_loss) == "rollback":
        # the run now holds the best evaluation's weights: evaluate them, so the run's last
        # evaluation and the plateau/early-stop decisions below are about the model it keeps
        val_loss, val_acc = evaluate(p)
        p.run_log.log_eval(
            StepRecord(step=st.step, epoch=st.epoch + 1, eval_loss=val_loss, eval_accuracy=val_acc)
        )
        echo(f"  eval of the restored weights: loss {val_loss:.4f}  accuracy {val_acc:.2%}")
    if p.plateau is not None:
        before = current_lr(p.optimizer)
        p.plateau.step(val_loss)
        after = current_lr(p.optimizer)
        if after < before:
            msg = f"Learning rate reduced: {before:.3e} -> {after:.3e} (val loss {val_loss:.4f})"
            echo(msg)
            p.run_log.log_event(
                st.step, "lr-reduced", msg, data={"from": before, "to": after, "val_loss": val_loss}
            )
    patience = p.cfg.train.early_stopping_patience
    if val_loss < st.best_val - p.cfg.train.early_stopping_min_delta:
        st.best_val, st.bad_evals = val_loss, 0
    else:
        st.bad_evals += 1
    if patience is not None and st.bad_evals >= patience:
        msg = f"early stopping: val loss has not improved on {st.best_val:.4f} for {st.bad_evals} evals"
        echo(msg)
        p.run_log.log_event(
            st.step, "early-stop", msg, data={"best_val_loss": st.best_val, "patience": patience}
        )
        st.status = "early-stopped"


def checkpoint(p: Parts, st: LoopState, t_start: float) -> None:
    if not p.dist.is_main:
        return
    st.wall_time = time.perf_counter() - t_start
    save_checkpoint(p.run_dir / CHECKPOINT_FILE, {
        "model": p.raw_model.state_dict(),
        "optimizer": p.optimizer.state_dict(),
        "scheduler": p.scheduler.state_dict(),
        "scaler": p.scaler.state_dict() if p.scaler is not None else None,
        "guard": p.guard.state_dict(),
        "rng": rng_state(),
        "loop": {**asdict(st), "stats": st.stats.state_dict()},
    })  # fmt: skip


def restore(p: Parts, state: dict[str, Any]) -> LoopState:
    p.raw_model.load_state_dict(state["model"])
    p.optimizer.load_state_dict(state["optimizer"])
    p.scheduler.load_state_dict(state["scheduler"])
    if p.scaler is not None and state.get("scaler") is not None:
        p.scaler.load_state_dict(state["scaler"])
    p.guard.load_state_dict(state["guard"])
    set_rng_state(state["rng"])
    loop = dict(state["loop"])
    stats = EpochStats()
    stats.load_state_dict(loop.pop("stats"))
    return LoopState(**loop, stats=stats)
