"""The guard's public API under the loops outsiders write: 37 variants of optimizer (all of
torch.optim's, fused/foreach/amsgrad/tensor LR, param groups, frozen layers, SparseAdam), scheduler
(OneCycle, warm restarts, SequentialLR, LambdaLR, CyclicLR, a plateau scheduler), precision (bf16
autocast and weights, float64, a CPU GradScaler), torch.compile, an LSTM, gradient accumulation.

Each variant trains a small net on a synthetic regression (16 inputs, targets of std ~4, so grad
norms sit well above 1) for 60 steps with one NaN row at step 20 (``nan_first``/``nan_many``: at
step 0 / every third step; ``no_nan``: none), once under ``stabletrain.Guard`` (default config)
and once in a plain loop that skips a non-finite loss or gradient and does nothing else (no
clip). Prints per variant: ok / NaN-weights / CRASH (exception and where), the final MSE of each,
and ``WORSE`` when the guard ends more than 10% (+0.01) above the plain loop; then the totals.

    .venv/bin/python bench/guard_api_probe.py               # all variants, ~1 min
    .venv/bin/python bench/guard_api_probe.py sgd adam      # some
    PYTHONPATH=/work/base/src .venv/bin/python bench/guard_api_probe.py   # another tree
    .venv/bin/python bench/guard_api_probe.py --steps 300 clip_raise_window=20
        # every variant 5x longer (NaN steps unchanged); GuardConfig fields as FIELD=VALUE
"""

import logging
import math
import sys
import tempfile
import traceback
import warnings

import torch
import torch.nn as nn
import yaml

import stabletrain

torch.manual_seed(0)
X = torch.randn(512, 16)
W = torch.randn(16, 1)
Y = X @ W + 0.1 * torch.randn(512, 1)


def mlp(**kw):
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 1))


def run(
    name,
    make_opt,
    plain=False,
    make_sched=None,
    model_fn=mlp,
    steps=None,
    nan_at=(20,),
    dtype=None,
    autocast=None,
    scaler=None,
    accum=1,
    sched_metric=False,
    freeze=False,
    loss_fn=None,
):
    # --steps N scales every variant's length (accum4's 80 micro-batches to 80 * N / 60)
    steps = round((steps or 60) * STEPS / 60)
    torch.manual_seed(0)
    model = model_fn()
    if freeze:
        for p in model[0].parameters():
            p.requires_grad_(False)
    if dtype is not None:
        model = model.to(dtype)
    opt = make_opt(
        [p for p in model.parameters() if p.requires_grad] if freeze else model.parameters()
    )
    sched = make_sched(opt) if make_sched else None
    kw = {}
    if scaler is not None:
        kw["scaler"] = scaler
    try:
        # a plateau scheduler steps on a metric: the caller steps it (Guard refuses it, ConfigError)
        guard = (
            None
            if plain
            else stabletrain.Guard(
                model,
                opt,
                scheduler=None if sched_metric else sched,
                run_dir=tempfile.mkdtemp(),
                config=stabletrain.GuardConfig(**OVERRIDES),
                **kw,
            )
        )
        losses = []
        for i in range(steps):
            idx = torch.randint(0, 512, (32,))
            x, y = X[idx].clone(), Y[idx]
            if i in nan_at:
                x[0, 0] = float("nan")
            if dtype is not None:
                x, y = x.to(dtype), y.to(dtype)
            if autocast:
                with torch.autocast("cpu", dtype=autocast):
                    out = model(x)
            else:
                out = model(x)
            loss = (loss_fn or nn.functional.mse_loss)(out.float(), y.float())
            if plain:
                if math.isfinite(loss.item()):
                    (loss / accum).backward()
                if (i + 1) % accum == 0:
                    if all(
                        p.grad is None
                        or torch.isfinite(p.grad.to_dense() if p.grad.is_sparse else p.grad).all()
                        for p in model.parameters()
                    ):
                        opt.step()
                        if sched is not None and not sched_metric:
                            sched.step()
                    opt.zero_grad()
            elif accum > 1:
                guard.backward(loss / accum)
                if (i + 1) % accum == 0:
                    guard.optimizer_step()
            else:
                guard.step(loss)
            if sched_metric and sched is not None and i % 10 == 9:
                sched.step(loss.item() if math.isfinite(loss.item()) else 1e9)
            losses.append(loss.item())
        if guard is not None:
            guard.close()
        finite = all(torch.isfinite(p).all() for p in model.parameters())
        with torch.no_grad():
            final = nn.functional.mse_loss(model(X.to(dtype) if dtype else X).float(), Y).item()
        return "ok" if finite and math.isfinite(final) else "NaN-weights", final
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)[-1]
        return (
            f"CRASH {type(e).__name__}: {str(e)[:150]} @ {tb.filename.split('/')[-1]}:{tb.lineno}",
            None,
        )


V = {
    "sgd": dict(make_opt=lambda p: torch.optim.SGD(p, lr=0.05)),
    "sgd_nesterov": dict(
        make_opt=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True)
    ),
    "adam": dict(make_opt=lambda p: torch.optim.Adam(p, lr=1e-2)),
    "adamw_fused": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2, fused=True)),
    "adamw_foreach_false": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False)),
    "adamw_amsgrad": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2, amsgrad=True)),
    "adamw_tensor_lr": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=torch.tensor(1e-2))),
    "rmsprop": dict(make_opt=lambda p: torch.optim.RMSprop(p, lr=1e-3)),
    "adagrad": dict(make_opt=lambda p: torch.optim.Adagrad(p, lr=1e-2)),
    "adadelta": dict(make_opt=lambda p: torch.optim.Adadelta(p)),
    "radam": dict(make_opt=lambda p: torch.optim.RAdam(p, lr=1e-2)),
    "nadam": dict(make_opt=lambda p: torch.optim.NAdam(p, lr=1e-2)),
    "adamax": dict(make_opt=lambda p: torch.optim.Adamax(p, lr=1e-2)),
    "adafactor": dict(make_opt=lambda p: torch.optim.Adafactor(p, lr=1e-2)),
    "asgd": dict(make_opt=lambda p: torch.optim.ASGD(p, lr=1e-2)),
    "rprop": dict(make_opt=lambda p: torch.optim.Rprop(p, lr=1e-3)),
    "param_groups": dict(
        make_opt=lambda p: (
            lambda ps: torch.optim.AdamW(
                [
                    {"params": ps[:2], "lr": 1e-2},
                    {"params": ps[2:], "lr": 1e-3, "weight_decay": 0.0},
                ]
            )
        )(list(p))
    ),
    "frozen_first_layer": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), freeze=True),
    "onecycle": dict(
        make_opt=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        make_sched=lambda o: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=STEPS),
    ),
    "cosine_restarts": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2),
        make_sched=lambda o: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=20),
    ),
    "sequential_lr": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2),
        make_sched=lambda o: torch.optim.lr_scheduler.SequentialLR(
            o,
            [
                torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 10),
                torch.optim.lr_scheduler.CosineAnnealingLR(o, 50),
            ],
            milestones=[10],
        ),
    ),
    "lambda_lr": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2),
        make_sched=lambda o: torch.optim.lr_scheduler.LambdaLR(o, lambda s: min(1.0, (s + 1) / 10)),
    ),
    "plateau_external": dict(
        make_opt=lambda p: torch.optim.SGD(p, lr=0.05),
        make_sched=lambda o: torch.optim.lr_scheduler.ReduceLROnPlateau(o, patience=1),
        sched_metric=True,
    ),
    "cyclic": dict(
        make_opt=lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
        make_sched=lambda o: torch.optim.lr_scheduler.CyclicLR(o, 0.001, 0.05, step_size_up=10),
    ),
    "accum4": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), accum=4, steps=80),
    "bf16_autocast": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), autocast=torch.bfloat16
    ),
    "bf16_params": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), dtype=torch.bfloat16),
    "fp64_params": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), dtype=torch.float64),
    "cpu_gradscaler_bf16": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2),
        autocast=torch.bfloat16,
        scaler=torch.amp.GradScaler("cpu"),
    ),
    "compiled_model": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2),
        model_fn=lambda: torch.compile(mlp(), backend="eager"),
    ),
    "lstm": dict(
        make_opt=lambda p: torch.optim.Adam(p, lr=1e-2),
        model_fn=lambda: type(
            "L",
            (nn.Module,),
            {
                "__init__": lambda s: (
                    nn.Module.__init__(s),
                    setattr(s, "l", nn.LSTM(16, 8, batch_first=True)),
                    setattr(s, "o", nn.Linear(8, 1)),
                )[0],
                "forward": lambda s, x: s.o(s.l(x.unsqueeze(1))[0][:, -1]),
            },
        )(),
    ),
    "sparse_embedding": dict(
        make_opt=lambda p: torch.optim.SparseAdam(list(p), lr=1e-2),
        model_fn=lambda: type(
            "E",
            (nn.Module,),
            {
                "__init__": lambda s: (
                    nn.Module.__init__(s),
                    setattr(s, "e", nn.EmbeddingBag(100, 1, sparse=True, mode="sum")),
                )[0],
                "forward": lambda s, x: s.e((x.abs() * 10).long().clamp(0, 99)),
            },
        )(),
    ),
    "huber_loss": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), loss_fn=nn.functional.huber_loss
    ),
    "no_nan": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), nan_at=()),
    "nan_first": dict(make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), nan_at=(0,)),
    "nan_many": dict(
        make_opt=lambda p: torch.optim.AdamW(p, lr=1e-2), nan_at=tuple(range(10, 60, 3))
    ),
}
args = sys.argv[1:]
STEPS = 60
if "--steps" in args:
    i = args.index("--steps")
    STEPS = int(args[i + 1])
    del args[i : i + 2]
OVERRIDES = {k: yaml.safe_load(v) for k, _, v in (a.partition("=") for a in args if "=" in a)}
only = [a for a in args if "=" not in a] or list(V)
warnings.simplefilter("ignore")
logging.disable(logging.WARNING)
crashed, nan, worse = [], [], []
for k in only:
    st, final = run(k, **V[k])
    _, ref = run(k, plain=True, **V[k])
    flag = (
        "  <-- WORSE" if final is not None and ref is not None and final > 1.1 * ref + 0.01 else ""
    )
    print(
        f"{k:24s} {st} {'' if final is None else f'final mse {final:.4f}'} plain {ref:.4f}{flag}",
        flush=True,
    )
    if st.startswith("CRASH"):
        crashed.append(k)
    elif st != "ok":
        nan.append(k)
    if flag:
        worse.append(k)
print(
    f"{len(only)} variants: crashed {len(crashed)} {crashed}, NaN weights {len(nan)} {nan}, "
    f"worse than the plain loop {len(worse)} {worse}"
)
