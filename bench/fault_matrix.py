"""Fault matrix: 60 fault classes x 3 seeds x 5 model families under 7 protection methods.

Round 1: 17 fault classes and 4 stable references over four families; round 2 (``--round 2``):
10 unseen fault classes and 3 stable references, adding a vanilla RNN family; round 3
(``--round 3``): 9 unseen fault classes and 2 stable references; round 4 (``--round 4``): 12
unseen fault classes and 1 stable reference; round 5 (``--round 5``): 12 unseen fault classes
and 1 stable reference.

Every fault enters the run the way it does in practice -- through the data, the config, the
precision or the initialisation -- never by faking a loss. Families (``fault_families.py``): a
CNN with BatchNorm on digits, an 8-layer MLP without normalisation on digits, a pre-LN GPT and an
LSTM as character LMs on the Python standard library's sources. Each run is 200 optimizer steps
(eval every 10). Methods: ``none``, ``clip`` (``clip_grad_norm_(1.0)``), ``zclip``, ``autoclip``,
``skipclip`` (the hand-written skip-non-finite + clip 1.0 loop), ``guard`` (``default`` preset)
and ``guard_adaptive`` (``adaptive`` preset), all from ``baselines.py``. The guard is used
through its public API only (``stabletrain.Guard``, ``GuardConfig.preset``); when it has
``observe_eval`` it gets the val loss after every eval, and when it has ``autocast`` its fp16
runs put the forward under ``guard.autocast(dtype=torch.float16)`` so it may fall back to a wider
dtype (``--torch-autocast`` keeps ``torch.autocast``; ``--fp32`` runs those scenarios in fp32 on the
same inputs, what a fall-back could reach at best); both are detected with ``hasattr``, so the
same script runs on the code before and after they exist.

Scenarios, with the outcome a robust guard should reach, written BEFORE the guard ran on them
(fault sizes were set by running ``none`` only). T = TUNE half, H = HELD-OUT half, decided here
before the first run; the guard may be tuned on T, H is reported untouched beside it.

stable (one per family: AdamW, Kaiming, normalised data; gpt with a 20-step warm-up)
  stable_cnn / stable_mlp / stable_gpt / stable_lstm: the references (lstm at lr 1e-2, gpt at
  3e-3 with a 20-step warm-up). Robust guard: takes no
  action, ends within 1% of ``none``.
cnn (BatchNorm)
  T nan_batchnorm     one NaN pixel row in batch 40 (a corrupt image); the forward writes NaN
                      into BN's running stats. Expect: skip, restore BN buffers, end ~ stable.
  T plateau_late      SGD momentum 0.9 at lr 0.3, ReduceLROnPlateau on val loss with patience 10
                      evals, which reacts too late. Expect: lower the LR on the eval plateau or
                      worsening, sooner than the scheduler; end >= none, ideally not failed.
  H inf_cluster       8 consecutive all-inf batches at 60-67 (a bad shard). Expect: skip 8 steps
                      without rollback or LR cap, restore BN buffers, end ~ stable.
  H aggressive_scaler fp16 autocast, GradScaler init 2**24 growing every 10 steps: overflow skips
                      and scale swings. Expect: no crash, no rollback from scaler skips, ~ none.
mlp (8 layers, no normalisation)
  T nan_sparse        whole NaN batches at 30, 95, 150. Expect: 3 skips, nothing else, ~ stable.
  T bad_init          weights normal(std 0.5) (~2.8x Kaiming over 8 layers). Expect: warn; end
                      >= none (no method is expected to reach the reference).
  T fp16_params_adam  ``model.half()`` + AdamW eps 1e-8 (0 in fp16): the first update writes
                      NaN. Expect: undo the update, name the cause (eps / fp32 master weights);
                      abort early or repair -- never train on NaN weights.
  T first_nan_scaler  fp16 autocast + GradScaler (init 2**16) and the very first batch NaN.
                      Expect: no crash; skip it; end ~ stable.
  H scaled_1e6        batches multiplied by 1e6 at 50, 90, 130 (an unnormalised file). Expect:
                      skip or clip those updates without rollback; end ~ stable.
  T high_lr_sgd       (held out until tuned on, 2026-12-07) SGD momentum 0.9 at lr 0.3 from step 0. Expect: back off the LR on the
                      damage; end >= none and >= clip.
  H nan_accum         gradient accumulation 4 x 8, micro-batches 100 and 420 NaN. Expect: skip
                      those optimizer steps (or drop the micro-batch), ~ stable.
  H fp16_overflow     fp16 autocast + GradScaler on inputs in raw 16-bit units (0..65535, a
                      forgotten normalisation): every forward overflows, the scale collapses, the
                      plain loop trains nothing (fp32 reaches ~0.78 of the reference).
                      Expect: fall back to bf16/fp32 where the guard owns autocast
                      (``Guard.autocast`` when it exists), else stop early naming fp16 overflow.
gpt (pre-LN transformer LM)
  T lr_jump           the schedule multiplies the LR by 30 from step 80 (a mistyped milestone).
                      Expect: roll back to before the jump, cap the LR; end ~ stable.
  H no_warmup         lr 3e-2 with no warm-up. Expect: lower the LR / ramp it on the early
                      damage; end >= none.
lstm (character LM)
  T high_lr_adam      Adam lr 0.2 (20x the stable 1e-2), no warm-up: the metric stalls below
                      its best, no single spike. Expect: see the trend against the run's own
                      best, roll back, lower the LR; end >= none.
  T eval_divergence   trained on only 128 blocks (4k characters) at lr 2e-2: the val loss
                      climbs as it memorises. Reference: the best eval of the ``none`` run of the
                      same seed (early stopping in hindsight), since the small set can never
                      reach the stable config. Expect (observe_eval): roll back to the
                      best-eval snapshot, lower the LR; end within 5% of that best.
  T label_noise       (held out until tuned on, 2026-12-07) steps 60-99 get random target characters (a mislabelled shard). Expect:
                      no harmful action; end ~ stable.

Round 2 (``--round 2``): unseen faults, written after round 1 had been tuned on and BEFORE any
guard ran on them (fault sizes set by running ``none`` only; the values are in ``ROUND2``).
First-sight figures: the session-start code (``PYTHONPATH=/work/base/src``) and the tree at the
commit that added them. Its T/H split is fixed here, before that first run.

stable (round 2)
  stable_rnn          vanilla tanh RNN LM, Adam 3e-3. Robust guard: no action, ~ none.
  ref_bs1_mlp         the mlp at batch 1, AdamW 1e-3 (its family LR): a noisy but sane run;
                      the reference of bs1_high_lr. Robust guard: no action, ~ none.
  ref_deep_sgd        a 16-layer mlp, SGD momentum 0.9 at lr 0.02 (a sane LR for it; reaches
                      0.43-0.69): the reference of deep_sgd_nan. Robust guard: no action.
rnn (vanilla tanh RNN LM)
  T rnn_explode       SGD momentum 0.9 at lr 0.8 (lr 0.3 trains well, 0.53): gradients explode
                      through time; none ends 0.12-0.45. Expect: clip / back off the LR on the
                      damage, roll back before it; end >= none, not diverged.
gpt
  T wd_huge           AdamW lr 1e-2 (3.3x) with weight_decay 1.0 (a "1.0" meant for another
                      optimizer's wd scale): none ends ~0.93 of stable. Expect: no harm; if
                      the loss trends away from its best, roll back / lower the LR; >= none.
  T fp16_gpt          fp16 autocast + GradScaler (init 2**16) on the stable GPT config (meant as
                      fp16 autocast on the LSTM, which has no fp16 CPU kernel: every method
                      crashed in oneDNN, a crash no guard should hide). none ~ stable. Expect:
                      no crash, no action from scaler skips; ~ stable.
  H adam_beta2_eps    AdamW betas (0.9, 0.9), eps 1e-12 at lr 6e-3 (2x): update sizes jump
                      when a rare large gradient meets a v that forgets fast; none ~0.95 of
                      stable. Expect: no harmful action; damage -> lower the LR; >= none.
mlp
  T cosine_restart    cosine schedule over the run, restarting at step 100 at 30x the base LR
                      (a restart peak typed for another model): none 0.56-0.68 of 0.93.
                      Expect: roll back to before the restart, cap the LR below the peak
                      that did the damage; end ~ stable.
  H input_shift       inputs x30 from step 100 to the end (a pipeline bug: normalisation
                      dropped); eval on clean data. none ~0.95-1.0 (Adam adapts). Expect:
                      accept the new loss level, no rollback loop, no abort; >= none.
  H bs1_high_lr       batch 1 at AdamW 5e-3 (5x); reference ref_bs1_mlp (batch 1 at 1e-3).
                      none ~0.5 of it. Expect: see the trend, lower the LR; >= none; no
                      action on ref_bs1_mlp's noise.
  H deep_sgd_nan      16-layer mlp, SGD momentum 0.9 at lr 0.05 (2.5x ref_deep_sgd) and a NaN
                      batch at 70: none ends at chance. Expect: skip the NaN, back off the LR
                      on the damage; not diverged, >= none.
cnn
  T label_shift       labels shifted by one class (y -> y+1 mod 10) for batches 80-109 (a
                      corrupted label shard): none ~0.97-0.98 of stable. Expect: no harmful
                      action; an eval decline may roll back to before the shard; ~ stable.
lstm
  H dup_batch         one batch served 20 times in a row at 60 and at 130 (a loader stuck on
                      a batch): none ~0.97-0.98 of stable. Expect: no harmful action; ~ stable.

Round 3 (``--round 3``): unseen faults, written after rounds 1-2 had been tuned on (three
sessions) and BEFORE any guard ran on them (fault sizes set by running ``none`` only, values in
``ROUND3``; committed before the first-sight run of the session-start code). Its T/H split is
fixed here. Whatever a robust guard should do, it must never end worse than ``none``.

stable (round 3)
  ref_cnn_bs256       the cnn at batch 256, SGD momentum 0.9 at lr 0.1 (none 0.972-0.975): the
                      reference of cnn_lsr. Robust guard: no action, ~ none.
  ref_accum_sgd       the mlp with accumulation 4 x 8 (loss / 4), SGD momentum 0.9 at lr 0.05
                      (none 0.82-0.86): the reference of accum_nodiv. No action, ~ none.
gpt
  T warmup_high_lr    AdamW lr 3e-2 (10x) *with* a 10-step warm-up: the warm-up does not save
                      it; none 0.29-0.33 (two seeds at chance). Expect: roll back on the early
                      damage and lower / ramp the LR; not diverged, >= none.
  H postln_no_warmup  post-LN blocks, AdamW 1.5e-2, no warm-up (post-LN at 1e-2 trains, 0.41-0.43;
                      pre-LN takes 1e-2): none at chance on all seeds. Expect: start-up damage ->
                      roll back, ramp the LR; not diverged, >= none.
  H emb_init          token embedding (tied head) initialised at std 1.0 (``nn.Embedding``'s
                      default, GPT-2's 0.02 forgotten): none 0.29-0.33. Expect: no harm, >= none
                      (normalised net: the init repair does not apply).
cnn
  T cnn_lsr           batch 256 at SGD 0.8 (the linear scaling rule from 0.1 at 32, applied
                      without its warm-up); reference ref_cnn_bs256: none 0.10-0.93 (two seeds
                      collapse). Expect: early damage -> roll back, lower / ramp the LR; >= none.
lstm
  T garbage_shard     every 10th batch is random characters in and out (a garbage shard
                      interleaved): none 0.52-0.54 (~0.98). Expect: recurring spikes skipped or
                      accepted, no rollback loop or LR cut; ~ none.
  H adam_eps0         Adam eps 0: characters absent from a batch have 0 grad and 0 second moment,
                      0/0 = NaN in their embedding rows at the first update; none ends NaN.
                      Expect: undo the update, name eps; never train on NaN weights.
mlp
  T accum_nodiv       accumulation 4 x 8 whose loss is summed, not divided (4x gradient, an
                      effective SGD lr 0.2 where 0.05 was meant); reference ref_accum_sgd: none
                      0.09-0.11 (diverged). Expect: back off the LR on the damage; not diverged.
  H manual_ce_nan     AdamW 1e-2 with the loss written -(one_hot * log(softmax)).sum(): a
                      confident model's underflowed probability gives 0 * log(0) = NaN late in
                      the run (seed 2 at ~step 185; seeds 0-1 end 0.90-0.91). Expect: skip the
                      NaN steps, no rollback loop, no abort blaming the data; >= none.
rnn
  H step_unit         StepLR meant per epoch (x0.7 every 10) stepped per batch: the LR is 0.03x
                      by step 100; none 0.34-0.35 (~0.69). No LR rise can be expected of a guard.
                      Expect: no harmful action; >= none.

Round 4 (``--round 4``): unseen faults, written after rounds 1-3 had been tuned on (four
sessions; every held-out half before it is touched) and BEFORE any guard ran on them; fault
sizes set by running ``none`` only (values in ``ROUND4``), committed before the first-sight run
of the session-start code. Drawn from how real runs fail (GitHub reports: a resume without the
optimizer state, stylegan2-ada-pytorch#108 and OneVision-Encoder#65; BN running stats wrong
at eval, pytorch#1206; padding counted in the loss; a sum-over-time LM loss; an LR range test
left on; a hand-written attention without 1/sqrt(d)). The T/H split is fixed here, before any
run, by family balance (not by the ``none`` figures). Whatever a robust guard does, it must
never end worse than ``none``.

stable (round 4)
  ref_rnn_sgd         the vanilla RNN LM at SGD momentum 0.9, lr 0.3, mean loss (none
                      0.541/0.530/0.536): the reference of sum_over_time. No action, ~ none.
cnn
  T blank_shard       batches 160-179 are black frames (one constant input, labels kept): BN's
                      running variance is pulled toward 0 late in the run; none 0.961-0.969
                      (stable 0.975-0.978). Expect: no harmful action; ~ none.
  T val_nan_row       one NaN example in the val set: every reported val loss is NaN, training
                      is clean (judged on the clean val set); none = stable. Expect: a NaN
                      eval is data, not damage: no rollback, LR change or abort; ~ none.
  H stuck_eval_mode   model.train() forgotten after the first evaluation: BN trains on frozen
                      running stats from step 10; none 0.961/0.961/0.972. Expect: no harm; ~ none.
  H unfreeze_backbone backbone LR 0 for 100 steps (frozen), then unfrozen at 30x the base LR
                      (a backbone multiplier of 30 where 0.3 was meant); none 0.955-0.969 (10x: 0.953-0.967).
                      Expect: no harm; damage after the unfreeze -> roll back / cap; >= none.
mlp
  T bf16_params       model.to(bfloat16), AdamW 1e-3: updates below bf16's resolution are
                      lost; none 0.928/0.928/0.955 (~ stable). Expect: no harm, no abort; ~ none.
  H tiny_inputs       train and val inputs x 1/16 (a wrong normalisation constant, consistent
                      in train and eval); none 0.947/0.953/0.942 (~ stable). Expect: no
                      action; ~ none.
gpt
  T const_shard       batches 100-119 are whitespace-only files (inputs and targets the most
                      frequent character), AdamW betas (0.9, 0.95): a burst of trivially easy
                      batches, then a loss jump back on real text; none 0.412/0.408/0.365.
                      Expect: the jump back is not damage; no rollback loop; ~ none.
  H resume_fresh_adam the optimizer state is lost after step 100 (a resume that reloaded only
                      the weights): Adam's first steps are lr * sign(g); none 0.364/0.361/0.404
                      (stable 0.394/0.378/0.409). Expect: damage -> roll back, lower the LR
                      briefly; >= none.
  H attn_no_scale     hand-written attention with softmax scale 1.0 (1/sqrt(24) forgotten) at
                      AdamW 1e-2 (at 3e-3 none ends 0.389-0.422, no fault): none
                      0.324/0.336/0.318. Expect: roll back / lower the LR on damage; >= none.
lstm
  T pad_in_loss       blocks of random length 4-32 padded with token 0 (a real character) and
                      the padding counted in the loss (ignore_index forgotten); none
                      0.489/0.479/0.497 (stable 0.536-0.547). No guard can remove it. Expect:
                      no harmful action; >= none.
  H lr_range_left_on  Adam from 1e-3, LR x1.03 every step (an LR range test left in the config:
                      1e-2 at ~step 78, 0.37 at step 200); none 0.385/0.401/0.391. Expect: see
                      the trend against the run's own best, roll back, cap the LR; >= none.
rnn
  T sum_over_time     the LM loss summed over the 32 positions, averaged over the batch (32x the
                      gradient of the mean meant), SGD 0.3; reference ref_rnn_sgd: none
                      0.284/0.113/0.118. Expect: back off / clip the damage; not diverged.

Round 5 (``--round 5``): unseen faults, written after rounds 1-4 had been tuned on (every held-out
half before it is touched) and BEFORE any guard ran on them; fault sizes set by running ``none``
only (values in ``ROUND5``; 2026-12-08 01:25-01:36 UTC, session 6), committed with the T/H split
before the first-sight run of the session-start code. Each comes from how real runs fail, as
reported on GitHub or Q&A sites (a loader without ``shuffle=True``; a resume on a smaller machine;
momentum 0.99 for 0.9; Adam betas given in the wrong order; a TensorFlow ``keep_prob`` ported as
PyTorch's dropout ``p``, e.g. bonlime/keras-deeplab-v3-plus#4, piergiaj/pytorch-i3d#58; AdamW's
decoupled weight decay passed to Adam; images from a source with the other axis order; a softmax
before ``CrossEntropyLoss``; CLIP's logit scale without its clamp, openai/CLIP#46; a resume whose
``load_state_dict(strict=False)`` loaded nothing; LM targets not shifted, songlab-cal/tape#32, or
shifted twice, huggingface/transformers#44642). The split is by family and kind of fault
(optimizer config, model config, data, resume: one of each kind in each half where possible),
not by the ``none`` figures. Whatever a robust guard does, it must never end worse than ``none``.

stable (round 5)
  ref_lstm_dropout    the LSTM with dropout 0.1 on its output (what keep_prob 0.9 meant; none
                      0.537/0.540/0.530): the reference of keep_prob_dropout. No action, ~ none.
cnn
  T unshuffled        every epoch in label order (no shuffle over a dataset stored class by
                      class): each batch holds one or two classes; none 0.072/0.178/0.089 (at or
                      below chance). No guard can reorder the data. Expect: no harmful action;
                      an eval rollback to the best-eval weights may help; >= none.
  T resume_small_batch from step 100 the batch is 4, not 32, at the same AdamW 3e-3 (a resume on
                      a smaller machine; BatchNorm on 4 examples); none 0.930/0.930/0.866
                      (stable 0.975/0.978/0.975). Expect: noise is not damage; >= none.
  H transposed_shard  batches 140-179 hold transposed images (a source with the other axis
                      order); none 0.930/0.953/0.911. Expect: no harmful action; an eval decline
                      may roll back to before the shard; >= none.
mlp
  T momentum_typo     the 16-layer mlp at SGD lr 0.02 with momentum 0.99 (0.9 meant: ~10x the
                      step); reference ref_deep_sgd: none 0.106 on all seeds (diverged). Expect:
                      back off the LR on the damage; not diverged.
  H softmax_twice     a Softmax as the model's last layer, its output fed to the cross-entropy;
                      none 0.521/0.944/0.702 (stable 0.925/0.933/0.967). No guard can remove it.
                      Expect: no harmful action; >= none.
  H logit_temp        the logits times a learnable exp(s), s initialised at log(1/0.07) (x14.3),
                      never clamped; none 0.880/0.858/0.891. Expect: clip / lower the LR on
                      damage, no harm; >= none.
gpt
  T betas_swapped     AdamW betas (0.999, 0.9) (the pair given in the wrong order) at 3e-3; none
                      0.272/0.286/0.312 (chance 0.307). Expect: roll back on the damage and
                      lower the LR; not diverged; >= none.
  H resume_weights_lost after step 100 the weights are a fresh initialisation while the optimizer
                      state and the schedule carry on (strict=False loaded no key); none
                      0.351/0.357/0.350 (stable 0.394/0.378/0.409). Note: the guard's in-memory
                      snapshots survive this in-process "resume", which a real restart would not
                      give it. Expect: >= none.
lstm
  T keep_prob_dropout dropout 0.9 on the LSTM output (keep_prob 0.9 passed as p); reference
                      ref_lstm_dropout: none 0.412/0.395/0.397. No guard can remove the dropout.
                      Expect: no harmful action; >= none.
  H unshifted_shard   batches 140-179 have targets equal to their inputs (a shard tokenised
                      without the shift): the train loss collapses on a shortcut, then climbs
                      back; none 0.391/0.423/0.417. Expect: no harmful action; an eval rollback to
                      before the shard may help; >= none.
rnn
  T adam_l2           torch.optim.Adam with weight_decay 0.01 (AdamW's decoupled 0.01 meant: an
                      L2 term inside the adaptive update); none 0.424/0.423/0.408 (stable
                      0.493/0.507/0.505). Expect: no harmful action; >= none.
  H double_shift      targets one position further (next-next character: labels shifted by hand
                      before a loss that shifts them again); none 0.285/0.289/0.293 (below
                      chance). No guard can fix it. Expect: no harmful action; >= none.

Per method it reports: *crashed* (an exception other than TrainingAborted, caught and counted;
a crash never stops the bench), *diverged* (non-finite weights, buffers or val loss, metric at
chance, or a guard abort), *failed* (crashed, diverged, or final metric < 95% of the stable
reference of the same family and seed under ``none``), and the mean relative metric (final
metric / that reference; 0 for a crash). Per scenario and seed it flags where the guard ended
worse than ``none`` (relative metric lower by more than 0.02, or diverged/crashed where none did
not). Stable configs show the guard's cost.

    .venv/bin/python bench/fault_matrix.py [--seeds 0,1,2] [--faults a,b] [--methods m,n]
        [--families cnn,mlp] [--out results.json] [--halves tune,held-out] [--round 1,2,3,4,5]

Round 1: 21 scenarios x 7 methods x 3 seeds = 441 runs: 210 s CPU on one thread (4 min
wall on a quiet 2-core box, 13 min on a busy one). Both rounds: 714 runs, 548 s CPU, 867 s wall
on the busy box (round 2's fp16 GPT is most of the difference: CPU fp16 matmuls are slow).
All three rounds (``--round 1,2,3``): 945 runs, 1124 s CPU, 1373 s wall on the busy box
(2026-12-07). Round 4 alone: 288 runs, 448 s CPU, 1140 s wall on a busy box (session 5); the
default runs all five rounds. Round 5 alone, six methods: 252 runs, 322 s CPU, 691 s wall on a busy box (session 6).
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import statistics
import sys
import time
import traceback
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stabletrain
from baselines import Method, add_guard_options, apply_guard_options, make_stepper
from fault_families import (
    FAMILIES,
    SPECS,
    FamilyName,
    build_model,
    chance,
    dataset,
    draw_batches,
    evaluate,
)
from stabletrain.errors import TrainingAborted
from stabletrain.train.models import loss_and_correct

STEPS = 200
EVAL_EVERY = 10
Half = Literal["stable", "tune", "held-out"]
#: matrix method -> (baselines stepper, guard preset)
METHODS: dict[str, tuple[Method, Any]] = {
    "none": ("none", None),
    "clip": ("clip", None),
    "zclip": ("zclip", None),
    "autoclip": ("autoclip", None),
    "skipclip": ("skipclip", None),
    "guard": ("guard", None),  # the --guard-preset option's preset (default: "default")
    "guard_adaptive": ("guard", "adaptive"),
}
#: guard methods run their fp16 forward under ``Guard.autocast`` when the guard has it (it may
#: then fall back to bf16/fp32); ``--torch-autocast`` keeps ``torch.autocast`` for every method
GUARD_AUTOCAST = True
#: ``--fp32``: the fp16 scenarios run in fp32 (no autocast, no GradScaler), on the same inputs:
#: what a fall-back to fp32 could reach at best
FP32 = False
#: raw digits pixel counts (0..16) as 16-bit units (0..65535)
RAW16 = 4096.0


@dataclass(frozen=True)
class Scenario:
    name: str
    family: FamilyName
    half: Half
    opt: Literal["adamw", "sgd"] = "adamw"
    lr: float | None = None  # None: the family's
    warmup: int | None = None  # None: the family's
    nan_batches: tuple[int, ...] = ()  # micro-batch positions filled with NaN
    inf_batches: tuple[int, ...] = ()
    nan_row_batches: tuple[int, ...] = ()  # one NaN example in the batch
    scaled_batches: tuple[int, ...] = ()  # x 1e6
    label_noise: tuple[int, int] | None = None  # [start, end) positions with random labels
    lr_jump: tuple[int, float] | None = None  # (step, factor) in the schedule
    plateau_patience: int | None = None
    fp16_autocast: bool = False
    scaler: dict[str, float] | None = None  # GradScaler kwargs; None: no scaler
    fp16_params: bool = False
    raw16_inputs: bool = False
    init_std: float | None = None
    accum: int = 1
    train_subset: int | None = None
    #: "stable": the family's stable config (none, same seed); "best_eval": the best eval of
    #: this scenario's own ``none`` run (early stopping with hindsight); any other value names
    #: a stable scenario whose ``none`` run (same seed) is the reference
    reference: str = "stable"
    # -- round 2 (written after round 1 was tuned on, before any guard ran on them) --
    round: int = 1
    betas: tuple[float, float] | None = None  # AdamW betas; None: torch's
    eps: float | None = None  # AdamW eps; None: torch's
    weight_decay: float = 0.0
    batch: int | None = None  # None: the family's
    depth: int | None = None  # the mlp's layers; None: 8
    #: cosine decay over the run, restarting at (step, peak factor x the base LR)
    cosine_restart: tuple[int, float] | None = None
    label_shift: tuple[int, int] | None = None  # [start, end) positions: label -> label + 1
    #: (position, count): the batch at position is delivered again in the next count - 1 slots
    dup_batches: tuple[tuple[int, int], ...] = ()
    input_scale_from: tuple[int, float] | None = None  # (position, factor) until the end
    # -- round 3 (written after rounds 1-2 were tuned on, before any guard ran on them) --
    post_ln: bool = False  # gpt: post-LN blocks
    emb_std: float | None = None  # gpt: token-embedding (tied head) init std
    #: training loss written as -(one_hot * log(softmax)).sum(): 0 * log(0) = NaN as soon as
    #: any class's probability underflows to 0 (eval keeps the library's cross-entropy)
    manual_ce: bool = False
    accum_divide: bool = True  # False: accumulated micro-batch losses are summed, not averaged
    #: (size, gamma): StepLR meant per epoch, stepped per batch: x gamma every ``size`` steps
    step_decay: tuple[int, float] | None = None
    #: every n-th batch (positions n-1, 2n-1, ...) is garbage: random inputs and targets
    garbage_every: int | None = None
    # -- round 4 (written after rounds 1-3 were tuned on, before any guard ran on them) --
    #: batches whose inputs are one constant (black frames; for text, a shard of whitespace
    #: files: inputs and targets all the most frequent character), labels kept on images
    blank_batches: tuple[int, ...] = ()
    stay_eval: bool = False  # the model is left in eval mode after the first evaluation
    #: the val loss the loop reports (observe_eval, plateau) is computed on a val set holding one
    #: NaN example; the judged metric is the clean one
    val_nan_row: bool = False
    #: (step, factor): every parameter but the model's ``head`` has LR 0 until ``step`` (frozen
    #: backbone), then ``factor`` x the base LR
    unfreeze: tuple[int, float] | None = None
    bf16_params: bool = False  # model.to(torch.bfloat16): pure bf16 weights and optimizer state
    input_scale: float = 1.0  # train AND val inputs x this (a wrong normalisation constant)
    resume_at: int | None = None  # after this optimizer step the optimizer state is lost
    attn_scale: float | None = None  # gpt: attention softmax scale (None: 1/sqrt(d_head))
    #: lm: each block's length is drawn in [pad_min, SEQ]; the rest is filled with token 0 in
    #: inputs and targets and counted in the loss (no ignore_index: padding learnt as text)
    pad_min: int | None = None
    token_sum: bool = False  # lm loss summed over the block's positions, averaged over the batch
    lr_growth: float | None = None  # the LR is x this every step (an LR range test left on)
    # -- round 5 (written after rounds 1-4 were tuned on, before any guard ran on them) --
    dropout: float = 0.0  # lstm/rnn: dropout on the recurrent output
    softmax_out: bool = False  # a Softmax as the model's last layer, fed to the cross-entropy
    logit_temp: float | None = None  # a learnable, unclamped temperature on the logits
    momentum: float = 0.9  # SGD momentum
    #: Adam (not AdamW) with this weight_decay: an L2 term inside the adaptive update (AdamW's
    #: decoupled 0.01 passed to Adam)
    adam_l2: float | None = None
    by_label: bool = False  # batches in label order, every epoch the same (no shuffle)
    #: (position, batch): from this micro-batch on, only the first ``batch`` examples
    small_batch_from: tuple[int, int] | None = None
    unshifted: tuple[int, int] | None = None  # [start, end) positions: lm targets = inputs
    #: lm: targets shifted this many positions further (1: next-next character, the labels
    #: shifted by hand before a loss that shifts them again)
    target_shift: int = 0
    #: after this optimizer step the weights are a fresh initialisation (a resume whose
    #: ``load_state_dict(strict=False)`` matched no key: "module." prefixes) while the
    #: optimizer state and the schedule carry on
    reinit_at: int | None = None
    #: [start, end) positions whose images are transposed (a source stored width-major, or
    #: read with the other library's axis order)
    transposed: tuple[int, int] | None = None


#: round 2's fault sizes, set by running ``none`` only (see the docstring)
ROUND2: dict[str, float] = {
    "rnn_explode_lr": 0.8,
    "wd_huge_lr": 1e-2,
    "cosine_peak": 30.0,
    "beta2_lr": 6e-3,
    "bs1_lr": 5e-3,
    "deep_sgd_lr": 0.05,
}
#: round 3's fault sizes, set by running ``none`` only (see the docstring)
ROUND3: dict[str, float] = {
    "warm_lr": 3e-2,
    "postln_lr": 1.5e-2,
    "lsr_lr": 0.8,
    "lsr_ref_lr": 0.1,
    "accum_lr": 0.05,
    "ce_lr": 1e-2,
    "emb_std": 1.0,
}

#: round 4's fault sizes, set by running ``none`` only (see the docstring)
ROUND4: dict[str, float] = {
    "rnn_sgd_lr": 0.3,
    "unfreeze_factor": 30.0,
    "input_scale": 1 / 16,
    "growth": 1.03,
    "growth_lr": 1e-3,
    "attn_lr": 1e-2,
    "resume_lr": 3e-3,
    "const_lr": 3e-3,
    "bf16_lr": 1e-3,
    "pad_min": 4,
}

#: round 5's fault sizes, set by running ``none`` only (see the docstring)
ROUND5: dict[str, float] = {
    "ref_dropout": 0.1,
    "keep_prob": 0.9,
    "small_batch": 4,
    "typo_momentum": 0.99,
    "typo_lr": 0.02,
    "temp": 0.07,
    "betas_lr": 3e-3,
    "adam_l2": 1e-2,
}

SCENARIOS: list[Scenario] = [
    Scenario("stable_cnn", "cnn", "stable"),
    Scenario("stable_mlp", "mlp", "stable"),
    Scenario("stable_gpt", "gpt", "stable"),
    Scenario("stable_lstm", "lstm", "stable"),
    # cnn
    Scenario("nan_batchnorm", "cnn", "tune", nan_row_batches=(40,)),
    Scenario("plateau_late", "cnn", "tune", opt="sgd", lr=0.3, plateau_patience=10),
    Scenario("inf_cluster", "cnn", "held-out", inf_batches=tuple(range(60, 68))),
    Scenario("aggressive_scaler", "cnn", "held-out", fp16_autocast=True,
             scaler={"init_scale": 2.0**24, "growth_interval": 10}),
    # mlp
    Scenario("nan_sparse", "mlp", "tune", nan_batches=(30, 95, 150)),
    Scenario("bad_init", "mlp", "tune", init_std=0.5),
    Scenario("fp16_params_adam", "mlp", "tune", fp16_params=True),
    Scenario("first_nan_scaler", "mlp", "tune", fp16_autocast=True, scaler={},
             nan_batches=(0,)),
    Scenario("scaled_1e6", "mlp", "held-out", scaled_batches=(50, 90, 130)),
    Scenario("high_lr_sgd", "mlp", "tune", opt="sgd", lr=0.3),  # tuned on: was held-out
    Scenario("nan_accum", "mlp", "held-out", accum=4, nan_batches=(100, 420)),
    Scenario("fp16_overflow", "mlp", "held-out", fp16_autocast=True, scaler={},
             raw16_inputs=True),
    # gpt
    Scenario("lr_jump", "gpt", "tune", lr_jump=(80, 30.0)),
    Scenario("no_warmup", "gpt", "held-out", lr=3e-2, warmup=0),
    # lstm
    Scenario("high_lr_adam", "lstm", "tune", lr=0.2),
    Scenario("eval_divergence", "lstm", "tune", lr=2e-2, train_subset=128,
             reference="best_eval"),
    Scenario("label_noise", "lstm", "tune", label_noise=(60, 100)),  # tuned on: was held-out
    # -- round 2: unseen faults, measured first with the code of the session that wrote them --
    Scenario("stable_rnn", "rnn", "stable", round=2),
    Scenario("ref_bs1_mlp", "mlp", "stable", batch=1, reference="ref_bs1_mlp", round=2),
    Scenario("ref_deep_sgd", "mlp", "stable", opt="sgd", lr=0.02, depth=16,
             reference="ref_deep_sgd", round=2),
    Scenario("rnn_explode", "rnn", "tune", opt="sgd", lr=ROUND2["rnn_explode_lr"], round=2),
    Scenario("wd_huge", "gpt", "tune", lr=ROUND2["wd_huge_lr"], weight_decay=1.0, round=2),
    Scenario("cosine_restart", "mlp", "tune", cosine_restart=(100, ROUND2["cosine_peak"]),
             round=2),
    Scenario("label_shift", "cnn", "tune", label_shift=(80, 110), round=2),
    Scenario("fp16_gpt", "gpt", "tune", fp16_autocast=True, scaler={}, round=2),
    Scenario("adam_beta2_eps", "gpt", "held-out", lr=ROUND2["beta2_lr"], betas=(0.9, 0.9),
             eps=1e-12, round=2),
    Scenario("dup_batch", "lstm", "held-out", dup_batches=((60, 20), (130, 20)), round=2),
    Scenario("input_shift", "mlp", "held-out", input_scale_from=(100, 30.0), round=2),
    Scenario("bs1_high_lr", "mlp", "held-out", batch=1, lr=ROUND2["bs1_lr"],
             reference="ref_bs1_mlp", round=2),
    Scenario("deep_sgd_nan", "mlp", "held-out", opt="sgd", lr=ROUND2["deep_sgd_lr"], depth=16,
             nan_batches=(70,), reference="ref_deep_sgd", round=2),
    # -- round 3: unseen faults, written before any guard ran on them (see the docstring) --
    Scenario("ref_cnn_bs256", "cnn", "stable", opt="sgd", lr=ROUND3["lsr_ref_lr"], batch=256,
             reference="ref_cnn_bs256", round=3),
    Scenario("ref_accum_sgd", "mlp", "stable", opt="sgd", lr=ROUND3["accum_lr"], accum=4,
             reference="ref_accum_sgd", round=3),
    Scenario("warmup_high_lr", "gpt", "tune", lr=ROUND3["warm_lr"], warmup=10, round=3),
    Scenario("cnn_lsr", "cnn", "tune", opt="sgd", lr=ROUND3["lsr_lr"], batch=256,
             reference="ref_cnn_bs256", round=3),
    Scenario("garbage_shard", "lstm", "tune", garbage_every=10, round=3),
    Scenario("accum_nodiv", "mlp", "tune", opt="sgd", lr=ROUND3["accum_lr"], accum=4,
             accum_divide=False, reference="ref_accum_sgd", round=3),
    Scenario("postln_no_warmup", "gpt", "held-out", post_ln=True, lr=ROUND3["postln_lr"],
             warmup=0, round=3),
    Scenario("emb_init", "gpt", "held-out", emb_std=ROUND3["emb_std"], round=3),
    Scenario("manual_ce_nan", "mlp", "held-out", manual_ce=True, lr=ROUND3["ce_lr"], round=3),
    Scenario("step_unit", "rnn", "held-out", step_decay=(10, 0.7), round=3),
    Scenario("adam_eps0", "lstm", "held-out", eps=0.0, round=3),
    # -- round 4: unseen faults, written before any guard ran on them (see the docstring) --
    Scenario("ref_rnn_sgd", "rnn", "stable", opt="sgd", lr=ROUND4["rnn_sgd_lr"],
             reference="ref_rnn_sgd", round=4),
    Scenario("blank_shard", "cnn", "tune", blank_batches=tuple(range(160, 180)), round=4),
    Scenario("val_nan_row", "cnn", "tune", val_nan_row=True, round=4),
    Scenario("bf16_params", "mlp", "tune", bf16_params=True, lr=ROUND4["bf16_lr"], round=4),
    Scenario("const_shard", "gpt", "tune", blank_batches=tuple(range(100, 120)),
             betas=(0.9, 0.95), lr=ROUND4["const_lr"], round=4),
    Scenario("pad_in_loss", "lstm", "tune", pad_min=int(ROUND4["pad_min"]), round=4),
    Scenario("sum_over_time", "rnn", "tune", opt="sgd", lr=ROUND4["rnn_sgd_lr"], token_sum=True,
             reference="ref_rnn_sgd", round=4),
    Scenario("stuck_eval_mode", "cnn", "held-out", stay_eval=True, round=4),
    Scenario("unfreeze_backbone", "cnn", "held-out", unfreeze=(100, ROUND4["unfreeze_factor"]),
             round=4),
    Scenario("tiny_inputs", "mlp", "held-out", input_scale=ROUND4["input_scale"], round=4),
    Scenario("resume_fresh_adam", "gpt", "held-out", resume_at=100, lr=ROUND4["resume_lr"],
             round=4),
    Scenario("attn_no_scale", "gpt", "held-out", attn_scale=1.0, lr=ROUND4["attn_lr"], round=4),
    Scenario("lr_range_left_on", "lstm", "held-out", lr=ROUND4["growth_lr"],
             lr_growth=ROUND4["growth"], round=4),
    # -- round 5: unseen faults, written before any guard ran on them (see the docstring) --
    Scenario("ref_lstm_dropout", "lstm", "stable", dropout=ROUND5["ref_dropout"],
             reference="ref_lstm_dropout", round=5),
    Scenario("unshuffled", "cnn", "tune", by_label=True, round=5),
    Scenario("resume_small_batch", "cnn", "tune",
             small_batch_from=(100, int(ROUND5["small_batch"])), round=5),
    Scenario("momentum_typo", "mlp", "tune", opt="sgd", lr=ROUND5["typo_lr"], depth=16,
             momentum=ROUND5["typo_momentum"], reference="ref_deep_sgd", round=5),
    Scenario("betas_swapped", "gpt", "tune", betas=(0.999, 0.9), lr=ROUND5["betas_lr"],
             round=5),
    Scenario("keep_prob_dropout", "lstm", "tune", dropout=ROUND5["keep_prob"],
             reference="ref_lstm_dropout", round=5),
    Scenario("adam_l2", "rnn", "tune", adam_l2=ROUND5["adam_l2"], round=5),
    Scenario("transposed_shard", "cnn", "held-out", transposed=(140, 180), round=5),
    Scenario("softmax_twice", "mlp", "held-out", softmax_out=True, round=5),
    Scenario("logit_temp", "mlp", "held-out", logit_temp=ROUND5["temp"], round=5),
    Scenario("resume_weights_lost", "gpt", "held-out", reinit_at=100, round=5),
    Scenario("unshifted_shard", "lstm", "held-out", unshifted=(140, 180), round=5),
    Scenario("double_shift", "rnn", "held-out", target_shift=1, round=5),
]  # fmt: skip
BY_NAME = {s.name: s for s in SCENARIOS}
#: scenarios that are another scenario's reference
REFERENCES = {s.reference for s in SCENARIOS} - {"stable", "best_eval"}


@dataclass
class Result:
    scenario: str
    method: str
    seed: int
    metric: float = 0.0
    val_loss: float = math.inf
    finite: bool = True
    aborted: str | None = None
    crashed: str | None = None
    steps: int = 0
    evals: list[float] = field(default_factory=list)
    #: the val loss at each eval (what the guard's ``observe_eval`` is given)
    eval_losses: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: the guard's log lines (INFO and up, first 40) and how many there were
    log: list[str] = field(default_factory=list)
    log_lines: int = 0


class _Capture(logging.Handler):
    """Keeps the guard's log lines of one run (what it did, and why) for the JSON output."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1
        if len(self.lines) < 40:
            self.lines.append(record.getMessage()[:200])


def _inject(sc: Scenario, batches: list[tuple[torch.Tensor, torch.Tensor]], seed: int) -> None:
    """Corrupt the drawn batches in place, as a bad shard or file would."""
    g = torch.Generator().manual_seed(2000 + seed)
    classes = dataset(SPECS[sc.family].task).num_classes
    for at, count in sc.dup_batches:  # a loader that serves one batch again and again
        for i in range(at + 1, min(at + count, len(batches))):
            batches[i] = (batches[at][0].clone(), batches[at][1].clone())
    lm = SPECS[sc.family].task == "lm"
    common = int(torch.bincount(dataset("lm").x_train.flatten()).argmax()) if lm else 0
    for i, (x, y) in enumerate(batches):
        if i in sc.blank_batches:  # black frames / whitespace-only files
            if lm:
                x, y = torch.full_like(x, common), torch.full_like(y, common)
            else:
                x = torch.full_like(x, float(x.min()))
        if lm and sc.pad_min is not None:  # variable-length blocks padded with token 0
            x, y = x.clone(), y.clone()
            lengths = torch.randint(sc.pad_min, x.shape[1] + 1, (x.shape[0],), generator=g)
            for row, n in enumerate(lengths.tolist()):
                x[row, n:] = 0
                y[row, n - 1 :] = 0
        if sc.input_scale != 1.0:
            x = x * sc.input_scale
        if sc.garbage_every and i % sc.garbage_every == sc.garbage_every - 1:
            x = (
                torch.randint(0, classes, x.shape, generator=g)
                if lm
                else torch.randn(x.shape, generator=g)
            )
            y = torch.randint(0, classes, y.shape, generator=g)
        if sc.raw16_inputs:
            x = (x * 6.0168 + 4.8842) * RAW16  # undo the standardisation: raw counts in 16 bits
        if i in sc.nan_batches:
            x = torch.full_like(x, math.nan)
        elif i in sc.inf_batches:
            x = torch.full_like(x, math.inf)
        elif i in sc.scaled_batches:
            x = x * 1e6
        elif i in sc.nan_row_batches:
            x = x.clone()
            x[0] = math.nan
        if sc.input_scale_from is not None and i >= sc.input_scale_from[0]:
            x = x * sc.input_scale_from[1]
        if sc.label_noise and sc.label_noise[0] <= i < sc.label_noise[1]:
            y = torch.randint(0, classes, y.shape, generator=g)
        if sc.label_shift and sc.label_shift[0] <= i < sc.label_shift[1]:
            y = (y + 1) % classes
        if sc.unshifted and sc.unshifted[0] <= i < sc.unshifted[1]:
            y = x.clone()  # a shard tokenised without the one-position shift
        if sc.transposed and sc.transposed[0] <= i < sc.transposed[1]:
            x = x.transpose(-1, -2).contiguous()
        if sc.target_shift:
            k = sc.target_shift
            y = torch.cat([y[:, k:], y[:, -1:].expand(-1, k)], dim=1)
        if sc.small_batch_from is not None and i >= sc.small_batch_from[0]:
            x, y = x[: sc.small_batch_from[1]], y[: sc.small_batch_from[1]]
        batches[i] = (x, y)


def _schedule(sc: Scenario, warmup: int) -> Any:
    jump, restart, decay, growth = sc.lr_jump, sc.cosine_restart, sc.step_decay, sc.lr_growth

    def factor(step: int) -> float:
        f = min(1.0, (step + 1) / warmup) if warmup else 1.0
        if jump is not None and step >= jump[0]:
            f *= jump[1]
        if restart is not None:  # cosine to 5% over the run; a restart at a new peak
            at, peak = restart
            start, top = (at, peak) if step >= at else (0, 1.0)
            t = (step - start) / (STEPS - start)
            f *= top * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * t)))
        if decay is not None:
            f *= decay[1] ** (step // decay[0])
        if growth is not None:
            f *= growth**step
        return f

    return factor


def manual_cross_entropy(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy as it is often hand-written: 0 * log(0) = NaN once a probability underflows."""
    logp = torch.log(torch.softmax(logits.float(), dim=-1))
    onehot = nn.functional.one_hot(y, logits.shape[-1]).to(logp.dtype)
    return -(onehot * logp).sum(-1).mean()


def token_sum_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """An LM loss summed over the block's positions and averaged over the batch (mean meant)."""
    per = nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="none"
    )
    return per.view(y.shape[0], -1).sum(1).mean()


def finite_model(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(t).all()) for t in [*model.parameters(), *model.buffers()]
               if t.is_floating_point())  # fmt: skip


def _build(sc: Scenario, fam: Any) -> nn.Module:
    return build_model(
        fam, sc.init_std, sc.depth, post_ln=sc.post_ln, emb_std=sc.emb_std,
        attn_scale=sc.attn_scale, dropout=sc.dropout, softmax_out=sc.softmax_out,
        logit_temp=sc.logit_temp,
    )  # fmt: skip


def _reinit(model: nn.Module, sc: Scenario, fam: Any, seed: int) -> None:
    """Overwrite the weights in place with a fresh initialisation (another seed), keeping the
    parameter objects the optimizer holds."""
    rng = torch.get_rng_state()
    torch.manual_seed(10_000 + seed)
    fresh = _build(sc, fam).state_dict()
    torch.set_rng_state(rng)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            t.copy_(fresh[name])


def run_one(sc: Scenario, method: str, seed: int) -> Result:
    res = Result(sc.name, method, seed)
    t0 = time.perf_counter()
    if FP32 and sc.fp16_autocast:
        sc = replace(sc, fp16_autocast=False, scaler=None)
    fam = SPECS[sc.family]
    torch.manual_seed(seed)
    model = _build(sc, fam)
    if sc.fp16_params:
        model = model.half()
    if sc.bf16_params:
        model = model.to(torch.bfloat16)
    lr = sc.lr if sc.lr is not None else fam.lr
    params: Any = model.parameters()
    if sc.unfreeze is not None:  # two groups: the backbone (frozen, then unfrozen) and the head
        head = {id(p) for p in model.head.parameters()}  # type: ignore[union-attr]
        params = [
            {"params": [p for p in model.parameters() if id(p) not in head]},
            {"params": list(model.head.parameters())},  # type: ignore[union-attr]
        ]
    opt: torch.optim.Optimizer
    if sc.opt == "sgd":
        opt = torch.optim.SGD(params, lr=lr, momentum=sc.momentum)
    else:
        adam: dict[str, Any] = {"weight_decay": sc.weight_decay}
        if sc.betas is not None:
            adam["betas"] = sc.betas
        if sc.eps is not None:
            adam["eps"] = sc.eps
        opt = (
            torch.optim.AdamW(params, lr=lr, **adam)
            if sc.adam_l2 is None
            else torch.optim.Adam(params, lr=lr, **{**adam, "weight_decay": sc.adam_l2})
        )
    warmup = fam.warmup if sc.warmup is None else sc.warmup
    factor = _schedule(sc, warmup)
    sched = (
        torch.optim.lr_scheduler.LambdaLR(opt, factor)
        if warmup or sc.lr_jump or sc.cosine_restart or sc.step_decay or sc.lr_growth
        else None
    )
    if sc.unfreeze is not None:
        at, mult = sc.unfreeze
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda step: 0.0 if step < at else mult * factor(step), factor]
        )
    plateau = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=sc.plateau_patience, factor=0.1)
        if sc.plateau_patience is not None
        else None
    )
    scaler = torch.amp.GradScaler("cpu", **sc.scaler) if sc.scaler is not None else None
    kind, preset = METHODS[method]
    batch = (sc.batch or fam.batch) // sc.accum
    batches = draw_batches(
        fam, seed, STEPS * sc.accum, batch, sc.train_subset, by_label=sc.by_label
    )
    _inject(sc, batches, seed)
    capture = _Capture()
    logger = logging.getLogger("stabletrain")
    logger.addHandler(capture)
    try:
        stepper = make_stepper(kind, model, opt, scaler, sched, preset)
        guard = getattr(stepper, "guard", None)
        use_guard_autocast = (
            GUARD_AUTOCAST and sc.fp16_autocast and guard is not None and hasattr(guard, "autocast")
        )
        micro = 0
        for x, y in stepper.batches(batches):
            if sc.fp16_params:
                x = x.half()
            if sc.bf16_params:
                x = x.to(torch.bfloat16)
            if use_guard_autocast:
                ctx: Any = guard.autocast(dtype=torch.float16, device_type="cpu")  # type: ignore[union-attr]
            else:
                ctx = torch.autocast("cpu", dtype=torch.float16, enabled=sc.fp16_autocast)
            with ctx:
                if sc.manual_ce:
                    loss = manual_cross_entropy(model(x), y)
                elif sc.token_sum:
                    loss = token_sum_loss(model(x), y)
                else:
                    loss, _ = loss_and_correct(model(x), y)
            stepper.backward(loss / sc.accum if sc.accum > 1 and sc.accum_divide else loss)
            micro += 1
            if micro % sc.accum:
                continue
            stepper.optimizer_step()
            res.steps += 1
            if res.steps == sc.resume_at:  # a resume that did not restore the optimizer state
                opt.state.clear()
            if res.steps == sc.reinit_at:  # a resume that restored everything but the weights
                _reinit(model, sc, fam, seed)
            if res.steps % EVAL_EVERY == 0:
                vl, metric = evaluate(model, fam, x_scale=sc.input_scale)
                if sc.val_nan_row:  # what the loop reports: the val loss with a corrupt example
                    vl, _ = evaluate(model, fam, x_scale=sc.input_scale, nan_row=True)
                if sc.stay_eval:  # model.train() forgotten after the evaluation
                    model.eval()
                res.evals.append(round(metric, 4))
                res.eval_losses.append(round(vl, 5) if math.isfinite(vl) else math.inf)
                stepper.observe_eval(vl)
                if plateau is not None:
                    plateau.step(vl)
    except TrainingAborted as e:
        res.aborted = f"step {res.steps}: {str(e).splitlines()[0][:160]}"
    except Exception as e:  # a crash is a result to count, never the end of the bench
        tb = traceback.extract_tb(e.__traceback__)[-1]
        res.crashed = f"{type(e).__name__}: {str(e)[:120]} ({Path(tb.filename).name}:{tb.lineno})"
    finally:
        logger.removeHandler(capture)
    res.log, res.log_lines = capture.lines, capture.count
    res.finite = finite_model(model)
    try:
        vl, metric = evaluate(model, fam, x_scale=sc.input_scale)
    except Exception as e:  # a model the run left unusable
        res.crashed = res.crashed or f"eval: {type(e).__name__}: {str(e)[:120]}"
        vl, metric = math.inf, 0.0
    res.val_loss = vl if math.isfinite(vl) else math.inf
    res.metric = 0.0 if res.crashed else metric
    res.seconds = time.perf_counter() - t0
    return res


# -- judging -------------------------------------------------------------------------------------
def diverged(r: Result) -> bool:
    fam = SPECS[BY_NAME[r.scenario].family]
    return bool(
        r.aborted or not r.finite or not math.isfinite(r.val_loss) or r.metric <= chance(fam.task)
    )


class Judge:
    """References (stable config of the family, same seed, ``none``) and the per-run verdicts."""

    def __init__(self, results: list[Result]) -> None:
        self.by = {(r.scenario, r.method, r.seed): r for r in results}
        self.ref: dict[tuple[str, int], float] = {}
        for r in results:
            if r.scenario.startswith("stable_") and r.method == "none":
                self.ref[BY_NAME[r.scenario].family, r.seed] = r.metric
            if BY_NAME[r.scenario].reference == "best_eval" and r.method == "none":
                self.ref[r.scenario, r.seed] = max([r.metric, *r.evals])
            if r.scenario in REFERENCES and r.method == "none":
                self.ref[r.scenario, r.seed] = r.metric

    def rel(self, r: Result) -> float | None:
        sc = BY_NAME[r.scenario]
        key = (
            sc.family if sc.reference == "stable"
            else sc.name if sc.reference == "best_eval"
            else sc.reference,
            r.seed,
        )  # fmt: skip
        ref = self.ref.get(key)
        return None if not ref else r.metric / ref

    def failed(self, r: Result) -> bool:
        rel = self.rel(r)
        return bool(r.crashed) or diverged(r) or (rel is not None and rel < 0.95)

    def worse_than_none(self, r: Result) -> bool:
        base = self.by.get((r.scenario, "none", r.seed))
        if base is None:
            return False
        if r.crashed or (diverged(r) and not (diverged(base) or base.crashed)):
            return True
        a, b = self.rel(r), self.rel(base)
        return a is not None and b is not None and a < b - 0.02


#: the halves of each round, reported apart
GROUPS = (
    "r1 tune", "r1 held-out", "r2 tune", "r2 held-out", "r3 tune", "r3 held-out", "r4 tune",
    "r4 held-out", "r5 tune", "r5 held-out",
)  # fmt: skip


def group(sc: Scenario) -> str:
    """``stable``, or the scenario's round and half (``r2 held-out``)."""
    return "stable" if sc.half == "stable" else f"r{sc.round} {sc.half}"


def in_group(scenarios: list[Scenario], name: str) -> list[Scenario]:
    """The scenarios of a group; ``all faults``: every scenario that is not stable."""
    return [
        s for s in scenarios if group(s) == name or (name == "all faults" and s.half != "stable")
    ]


def summarise(results: list[Result], scenarios: list[Scenario], methods: list[str]) -> str:
    j = Judge(results)
    out: list[str] = []
    runs = {(r.scenario, r.method): [] for r in results}  # type: dict[tuple[str, str], list[Result]]
    for r in results:
        runs[r.scenario, r.method].append(r)

    def cell(rs: list[Result]) -> str:
        rels = [j.rel(r) for r in rs]
        known = [x for x in rels if x is not None]
        mean = f"{statistics.mean(known):.3f}" if known else "  -  "
        c, d, f = sum(bool(r.crashed) for r in rs), sum(diverged(r) for r in rs), 0
        f = sum(j.failed(r) for r in rs)
        return f"{c}/{d}/{f} {mean}"

    out.append("cell = crashed/diverged/failed of the seeds, mean metric relative to the stable")
    out.append("reference of the family and seed (none); failed = crashed, diverged or < 0.95\n")
    out.append("| scenario | half | " + " | ".join(methods) + " |")
    out.append("|---|---|" + "---|" * len(methods))
    for sc in scenarios:
        cells = [cell(runs.get((sc.name, m), [])) for m in methods]
        out.append(f"| {sc.name} ({sc.family}) | {group(sc)} | " + " | ".join(cells) + " |")
    out.append("")
    for half in (*GROUPS, "all faults", "stable"):
        chosen = in_group(scenarios, half)
        if not chosen:
            continue
        out.append(f"**{half}** ({len(chosen)} scenarios)\n")
        out.append(
            "| method | runs | crashed | diverged | failed | mean rel. metric | worse than none |"
        )
        out.append("|---|---|---|---|---|---|---|")
        for m in methods:
            rs = [r for s in chosen for r in runs.get((s.name, m), [])]
            if not rs:
                continue
            rels = [x for x in (j.rel(r) for r in rs) if x is not None]
            mean = f"{statistics.mean(rels):.3f}" if rels else "-"
            worse = sum(j.worse_than_none(r) for r in rs) if m != "none" else 0
            out.append(
                f"| {m} | {len(rs)} | {sum(bool(r.crashed) for r in rs)} | "
                f"{sum(diverged(r) for r in rs)} | {sum(j.failed(r) for r in rs)} | {mean} | "
                f"{worse if m != 'none' else '-'} |"
            )
        out.append("")
    out.extend(targets(j, runs, scenarios, methods))
    notes = []
    for r in results:
        if r.crashed:
            notes.append(f"- CRASH {r.method} / {r.scenario} seed {r.seed}: {r.crashed}")
        elif r.aborted:
            notes.append(f"- abort {r.method} / {r.scenario} seed {r.seed}: {r.aborted}")
    for m in methods:
        if not m.startswith("guard"):
            continue
        worse = [
            f"{r.scenario}/{r.seed} ({j.rel(r) or 0:.3f} vs {j.rel(j.by[r.scenario, 'none', r.seed]) or 0:.3f})"
            for r in results
            if r.method == m and j.worse_than_none(r)
        ]  # fmt: skip
        if worse:
            notes.append(f"- {m} worse than none on: " + ", ".join(worse))
        stable = [r for r in results if r.method == m and BY_NAME[r.scenario].half == "stable"]
        acted = [f"{r.scenario}/{r.seed}" for r in stable if any(map(_is_action, r.log))]
        if stable:
            notes.append(
                f"- {m} acted on {len(acted)}/{len(stable)} stable runs (rollback, LR "
                "change, ramp or repair)" + (": " + ", ".join(acted) if acted else "")
            )
    if notes:
        out.append("\n".join(notes))
    return "\n".join(out)


#: log lines that say the guard changed the run (not a skip, not a health line)
ACTION_MARKS = ("rolled back", "LR capped", "LR ramped", "init repaired", "evaluations")


def _is_action(line: str) -> bool:
    return any(mark in line for mark in ACTION_MARKS)


def targets(
    j: Judge,
    runs: dict[tuple[str, str], list[Result]],
    scenarios: list[Scenario],
    methods: list[str],
) -> list[str]:
    """The issue's targets for each guard method, per half: 0 crashed, 0 diverged, failed <= 1/4
    of the runs and <= half of the best other method's, never worse than none, stable >= 0.99."""
    others = [m for m in methods if not m.startswith("guard")]
    out: list[str] = []
    for m in (m for m in methods if m.startswith("guard")):
        out.append(f"**targets, {m}**\n")
        out.append("| half | crashed = 0 | diverged = 0 | failed <= 1/4 | failed <= best other / 2 "
                   "| worse than none = 0 |")  # fmt: skip
        out.append("|---|---|---|---|---|---|")
        for half in (*GROUPS, "all faults"):
            chosen = in_group(scenarios, half)
            rs = [r for s in chosen for r in runs.get((s.name, m), [])]
            if not rs:
                continue
            crashed = sum(bool(r.crashed) for r in rs)
            div = sum(diverged(r) for r in rs)
            failed = sum(j.failed(r) for r in rs)
            other_failed = {
                o: sum(j.failed(r) for s in chosen for r in runs.get((s.name, o), []))
                for o in others
            }
            best = min(other_failed, key=other_failed.__getitem__) if other_failed else None
            worse = sum(j.worse_than_none(r) for r in rs)

            def verdict(ok: bool) -> str:
                return "met" if ok else "**missed**"

            best_cell = (
                f"{failed} vs {best} {other_failed[best]}: "
                f"{verdict(2 * failed <= other_failed[best])}"
                if best
                else "-"
            )
            out.append(
                f"| {half} ({len(rs)} runs) | {crashed}: {verdict(crashed == 0)} | "
                f"{div}: {verdict(div == 0)} | {failed}/{len(rs)}: "
                f"{verdict(4 * failed <= len(rs))} | {best_cell} | {worse}: {verdict(worse == 0)} |"
            )
        stable = [s for s in scenarios if s.half == "stable"]
        cells = []
        for s in stable:
            rels = [x for x in (j.rel(r) for r in runs.get((s.name, m), [])) if x is not None]
            if rels:
                mean = statistics.mean(rels)
                cells.append(f"{s.name} {mean:.3f}" + ("" if mean >= 0.99 else " **missed**"))
        if cells:
            out.append(f"\nstable configs within 1% of none (mean rel >= 0.99): {', '.join(cells)}")
        out.append("")
    return out


def load_results(path: Path) -> list[Result]:
    data = json.loads(path.read_text())
    return [Result(**r) for r in data["results"]]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated seeds")
    ap.add_argument("--faults", default="", help="comma-separated scenario names (default: all)")
    ap.add_argument("--methods", default=",".join(METHODS), help="comma-separated subset")
    ap.add_argument("--families", default=",".join(FAMILIES), help="comma-separated subset")
    ap.add_argument("--halves", default="stable,tune,held-out", help="comma-separated subset")
    ap.add_argument(
        "--round",
        default="1,2,3,4,5",
        help="comma-separated rounds (1: the first matrix, 2-5: unseen when written)",
    )
    ap.add_argument("--out", type=Path, help="write every run's result here as JSON")
    ap.add_argument(
        "--torch-autocast",
        action="store_true",
        help="guard methods use torch.autocast too, not Guard.autocast (the guard cannot then "
        "change the dtype)",
    )
    ap.add_argument(
        "--fp32",
        action="store_true",
        help="fp16 scenarios run in fp32 on the same inputs (no autocast, no GradScaler): what "
        "a precision fall-back could reach at best",
    )
    ap.add_argument(
        "--report", type=Path, help="print the tables of a saved --out file, run nothing"
    )
    add_guard_options(ap)
    args = ap.parse_args()
    apply_guard_options(args)
    global GUARD_AUTOCAST, FP32
    GUARD_AUTOCAST = not args.torch_autocast
    FP32 = args.fp32
    torch.set_num_threads(1)
    quiet = logging.getLogger("stabletrain")
    quiet.setLevel(logging.INFO)  # kept by _Capture per run, never printed
    quiet.propagate = False
    quiet.addHandler(logging.NullHandler())
    warnings.filterwarnings("ignore")
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        ap.error(f"unknown method(s) {unknown}; allowed: {', '.join(METHODS)}")
    wanted = set(args.faults.split(",")) - {""}
    if wanted - set(BY_NAME):
        ap.error(f"unknown scenario(s) {sorted(wanted - set(BY_NAME))}")
    scenarios = [
        s for s in SCENARIOS
        if (not wanted or s.name in wanted)
        and s.family in args.families.split(",")
        and s.half in args.halves.split(",")
        and str(s.round) in args.round.split(",")
    ]  # fmt: skip
    # the references are needed for every relative figure: run them even when filtered out
    refs = [BY_NAME[f"stable_{f}"] for f in sorted({s.family for s in scenarios})]
    refs += [BY_NAME[s.reference] for s in scenarios if s.reference in REFERENCES]
    if args.report:
        saved = [r for r in load_results(args.report) if r.method in methods or r.method == "none"]
        names = {r.scenario for r in saved}
        shown = [s for s in scenarios if s.name in names]
        print(summarise(saved, shown, [m for m in methods if any(r.method == m for r in saved)]))
        return
    print(f"stabletrain from {stabletrain.__file__}", flush=True)
    t0 = time.perf_counter()
    results: list[Result] = []
    extra = {r.name: r for r in refs if r not in scenarios}
    for sc in [*extra.values(), *scenarios]:
        todo = methods if sc in scenarios else ["none"]
        if sc.reference == "best_eval" and "none" not in todo:
            todo = ["none", *todo]  # its reference is the none run
        for m in todo:
            for seed in seeds:
                r = run_one(sc, m, seed)
                results.append(r)
            rs = results[-len(seeds) :]
            tags = " ".join(
                f"{r.metric:.3f}" + ("C" if r.crashed else "A" if r.aborted else "") for r in rs
            )
            print(f"# {sc.name:18s} {m:15s} {tags}  ({sum(r.seconds for r in rs):.1f} s)",
                  flush=True)  # fmt: skip
    shown = [s for s in SCENARIOS if s in scenarios]
    print("\n" + summarise(results, shown, methods))
    total = time.perf_counter() - t0
    cpu = time.process_time()
    print(f"\n{len(results)} runs, {total:.0f} s wall, {cpu:.0f} s CPU (one thread)")
    if args.out:
        args.out.write_text(json.dumps({
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "stabletrain": stabletrain.__file__,
            "argv": sys.argv[1:],
            "seconds": round(total, 1),
            "cpu_seconds": round(cpu, 1),
            "results": [asdict(r) for r in results],
        }, indent=1))  # fmt: skip


if __name__ == "__main__":
    main()
