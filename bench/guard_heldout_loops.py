"""Held-out loops for the guard's default clip: 22 training loops written the way outsiders write
them, none of them in ``bench/guard_api_probe.py`` (other models, losses, optimizers, schedules
and data), each run once as a plain loop (skip a non-finite loss or gradient, nothing else, no
clip) and once under ``stabletrain.Guard`` with the default ``GuardConfig``.

Written and committed (2026-12-08, session 6) BEFORE any guard ran on them, with the expected
result below; this set is HELD OUT: nothing in the guard is tuned on it. It is run on the
session-start code (first sight), on the tree of its commit (first sight), and once more on the
final, frozen tree; the figures go to docs/benchmarks-clip.md untouched.

Metric: the final loss on a held-out validation split (lower is better; a non-finite value or a
crash counts as worse than anything). Verdict per loop, against the plain loop's value ``p``:

- healthy loops (H, 19): expected **within 2% of the plain loop**, i.e. guard <= p + 0.02 |p| + 0.002
  (``ok``); also printed: within 1% and within 10%. The guard should do no harm on these: most
  have grad norms well above 1 (summed losses, large-scale targets, unnormalised pixels,
  contrastive temperatures), which is what a fixed clip at 1.0 throttles.
- faulty loops (F, 3): expected **no worse than the plain loop** (guard <= p + 0.02 |p| + 0.002), and
  ideally better: the clip (or the rest of the guard) is what saves these.

    H vit_digits        small ViT (2x2 patches, 2 blocks) on sklearn digits, AdamW 3e-3, CE
    H gru_seq2seq       GRU encoder-decoder reversing digit strings, Adam 1e-2, teacher forcing
    H charlm_tied       char-LM, embedding tied to the output layer, GRU, on stdlib source text,
                        Adam 3e-3
    H unet_denoise      UNet-ish conv net (skip connection) denoising digit images, Adam 1e-3,
                        MSE
    H tabular_bigscale  MLP on generated tabular data with targets ~ 1e3 (prices), Adam 1e-3, MSE
    H diabetes_raw      MLP on sklearn diabetes with raw targets (25-346), Adam 1e-2, MSE
    H contrastive       InfoNCE (temperature 0.1) on two noisy views of digits, Adam 1e-3
    H sum_loss_sgd      digits MLP, CE summed over the batch (not averaged), SGD 1e-3
    H rmsprop_cnn       small CNN on digit images, RMSprop 1e-3, a NaN row at step 40
    H adagrad_logreg    softmax regression on raw digit pixels (0-16), Adagrad 0.05
    H nadam_mlp         digits MLP, NAdam 2e-3
    H lamb_like         a hand-written LAMB (Adam direction x trust ratio) on generated
                        regression
    H onecycle_cnn      digits CNN, SGD momentum 0.9, OneCycleLR max_lr 0.1
    H cyclic_tabular    tabular regression (targets std ~30), SGD momentum, CyclicLR
                        triangular2
    H large_batch       digits MLP, batch 1024, SGD lr 0.5 momentum 0.9, 10-step LinearLR warm-up
    H poisson_counts    Poisson regression on generated counts (rates up to ~50), Adam 1e-2
    H bce_autoencoder   sigmoid autoencoder of digit images, BCE summed over pixels, Adam 1e-3
    H resmlp_friedman   residual MLP with LayerNorm on sklearn make_friedman1 (y ~ 15),
                        AdamW 3e-3, cosine schedule, a NaN row at step 100
    H lstm_forecast     LSTM next-value forecast of a noisy sine x 20, SGD momentum 0.9 lr 0.01
    F sgd_lr_too_high   digits MLP, SGD momentum 0.9 at lr 1.5 (a mistyped LR) -- plain blows up
    F unnormalised_batch  tabular regression, Adam 1e-3, batches 120-122 from a file not
                        normalised (inputs x 1e4)
    F gru_lr_too_high   GRU seq2seq at Adam lr 0.3 (30x its healthy LR)

    .venv/bin/python bench/guard_heldout_loops.py                 # all loops, a few minutes
    .venv/bin/python bench/guard_heldout_loops.py vit_digits      # some
    PYTHONPATH=/work/base/src .venv/bin/python bench/guard_heldout_loops.py   # another tree
    .venv/bin/python bench/guard_heldout_loops.py --json out.json clip_raise_window=50
        # GuardConfig fields as FIELD=VALUE
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
import tempfile
import traceback
import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from sklearn.datasets import load_diabetes, load_digits, make_friedman1

import stabletrain

# -- data (fixed, generated once) -------------------------------------------------------------


def _digits():
    d = load_digits()
    x = torch.tensor(d.data, dtype=torch.float32)
    y = torch.tensor(d.target, dtype=torch.long)
    g = torch.Generator().manual_seed(0)
    perm = torch.randperm(len(x), generator=g)
    return x[perm[:1400]], y[perm[:1400]], x[perm[1400:]], y[perm[1400:]]


DX, DY, DXV, DYV = _digits()  # raw pixels 0..16


def _tabular(n, d, scale, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    w = torch.randn(d, 1, generator=g)
    y = x @ w + 0.5 * torch.tanh(x[:, :1] * x[:, 1:2]) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y * scale


def _text():
    import argparse as _a
    import json as _j
    import logging as _l

    parts = []
    for m in (_a, _j.decoder, _l):
        with open(m.__file__, encoding="utf-8") as f:
            parts.append(f.read())
    src = "".join(parts)
    src = "".join(c if 32 <= ord(c) < 127 or c == "\n" else " " for c in src)[:60000]
    vocab = sorted(set(src))
    ids = torch.tensor([vocab.index(c) for c in src], dtype=torch.long)
    return ids, len(vocab)


TEXT, VOCAB = _text()
TEXT_TRAIN, TEXT_VAL = TEXT[:50000], TEXT[50000:]


# -- models -----------------------------------------------------------------------------------


class ViT(nn.Module):
    def __init__(self, dim=32, depth=2, heads=4):
        super().__init__()
        self.patch = nn.Linear(4, dim)  # 2x2 patches of an 8x8 image: 16 tokens
        self.pos = nn.Parameter(torch.zeros(1, 16, dim))
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=0.0, batch_first=True,
                                           norm_first=True)  # fmt: skip
        self.enc = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 10))

    def forward(self, x):
        b = x.shape[0]
        p = x.view(b, 4, 2, 4, 2).permute(0, 1, 3, 2, 4).reshape(b, 16, 4) / 16.0
        h = torch.cat([self.cls.expand(b, -1, -1), self.patch(p) + self.pos], 1)
        return self.head(self.enc(h)[:, 0])


class Seq2Seq(nn.Module):
    def __init__(self, vocab=12, dim=48):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.enc = nn.GRU(dim, dim, batch_first=True)
        self.dec = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab)

    def forward(self, src, tgt_in):
        _, h = self.enc(self.emb(src))
        o, _ = self.dec(self.emb(tgt_in), h)
        return self.out(o)


class TiedCharLM(nn.Module):
    def __init__(self, vocab, dim=64):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.rnn = nn.GRU(dim, dim, batch_first=True)
        self.out = nn.Linear(dim, vocab)
        self.out.weight = self.emb.weight  # tied

    def forward(self, x):
        return self.out(self.rnn(self.emb(x))[0])


class UNetish(nn.Module):
    def __init__(self, c=16):
        super().__init__()
        self.d1 = nn.Sequential(nn.Conv2d(1, c, 3, padding=1), nn.ReLU())
        self.d2 = nn.Sequential(nn.Conv2d(c, 2 * c, 3, stride=2, padding=1), nn.ReLU())
        self.u1 = nn.ConvTranspose2d(2 * c, c, 2, stride=2)
        self.o = nn.Conv2d(2 * c, 1, 3, padding=1)

    def forward(self, x):
        a = self.d1(x)
        b = self.u1(self.d2(a))
        return self.o(torch.cat([a, b], 1))


class SmallCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.c = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3,
                               padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten())  # fmt: skip
        self.f = nn.Linear(128, 10)

    def forward(self, x):
        return self.f(self.c(x))


class ResMLP(nn.Module):
    def __init__(self, d_in=10, dim=64, depth=4):
        super().__init__()
        self.inp = nn.Linear(d_in, dim)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, dim), nn.GELU(), nn.Linear(dim, dim))
            for _ in range(depth)
        )
        self.out = nn.Linear(dim, 1)

    def forward(self, x):
        h = self.inp(x)
        for b in self.blocks:
            h = h + b(h)
        return self.out(h)


class Forecaster(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(1, 32, batch_first=True)
        self.o = nn.Linear(32, 1)

    def forward(self, x):
        return self.o(self.lstm(x.unsqueeze(-1))[0][:, -1])


def mlp(d_in, d_out, hidden=64):
    return nn.Sequential(nn.Linear(d_in, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                         nn.Linear(hidden, d_out))  # fmt: skip


class Lamb(torch.optim.Optimizer):
    """LAMB as people paste it: Adam's direction scaled per tensor by ||w|| / ||update||."""

    def __init__(self, params, lr=1e-2, betas=(0.9, 0.999), eps=1e-6, weight_decay=0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            b1, b2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["t"], st["m"], st["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
                st["t"] += 1
                st["m"].mul_(b1).add_(p.grad, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(p.grad, p.grad, value=1 - b2)
                m = st["m"] / (1 - b1 ** st["t"])
                v = st["v"] / (1 - b2 ** st["t"])
                upd = m / (v.sqrt() + group["eps"]) + group["weight_decay"] * p
                wn, un = p.norm(), upd.norm()
                trust = (wn / un) if wn > 0 and un > 0 else torch.tensor(1.0)
                p.add_(upd, alpha=-group["lr"] * float(trust))


# -- tasks: (model, a batch sampler, the loss of a batch, the validation loss) -----------------


def _digits_task(model_fn, image=False, scale=16.0, reduction="mean"):
    def shape(x):
        x = x / scale
        return x.view(-1, 1, 8, 8) if image else x

    def batch(i, g, bs):
        idx = torch.randint(0, len(DX), (bs,), generator=g)
        return shape(DX[idx]), DY[idx]

    def loss(model, b):
        return F.cross_entropy(model(b[0]), b[1], reduction=reduction)

    def val(model):
        return F.cross_entropy(model(shape(DXV)), DYV).item()

    return model_fn, batch, loss, val


def _regression_task(model_fn, x, y, loss_fn=F.mse_loss, n_train=None):
    n_train = n_train or int(0.8 * len(x))
    xt, yt, xv, yv = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    def batch(i, g, bs):
        idx = torch.randint(0, len(xt), (bs,), generator=g)
        return xt[idx], yt[idx]

    def loss(model, b):
        return loss_fn(model(b[0]), b[1])

    def val(model):
        return loss_fn(model(xv), yv).item()

    return model_fn, batch, loss, val


def _seq2seq_task():
    def make(n, g):
        src = torch.randint(2, 12, (n, 8), generator=g)
        tgt = src.flip(1)
        tgt_in = torch.cat([torch.ones(n, 1, dtype=torch.long), tgt[:, :-1]], 1)  # 1 = <go>
        return src, tgt_in, tgt

    val_set = make(512, torch.Generator().manual_seed(99))

    def batch(i, g, bs):
        return make(bs, g)

    def loss(model, b):
        return F.cross_entropy(model(b[0], b[1]).reshape(-1, 12), b[2].reshape(-1))

    def val(model):
        return loss(model, val_set).item()

    return Seq2Seq, batch, loss, val


def _charlm_task():
    ctx = 64
    starts_val = torch.arange(0, len(TEXT_VAL) - ctx - 1, ctx)
    xv = torch.stack([TEXT_VAL[s : s + ctx] for s in starts_val])
    yv = torch.stack([TEXT_VAL[s + 1 : s + ctx + 1] for s in starts_val])

    def batch(i, g, bs):
        s = torch.randint(0, len(TEXT_TRAIN) - ctx - 1, (bs,), generator=g)
        x = torch.stack([TEXT_TRAIN[j : j + ctx] for j in s])
        y = torch.stack([TEXT_TRAIN[j + 1 : j + ctx + 1] for j in s])
        return x, y

    def loss(model, b):
        return F.cross_entropy(model(b[0]).reshape(-1, VOCAB), b[1].reshape(-1))

    def val(model):
        return F.cross_entropy(model(xv).reshape(-1, VOCAB), yv.reshape(-1)).item()

    return (lambda: TiedCharLM(VOCAB)), batch, loss, val


def _denoise_task(model_fn, loss_kind="mse"):
    xt, xv = DX.view(-1, 1, 8, 8) / 16.0, DXV.view(-1, 1, 8, 8) / 16.0
    gv = torch.Generator().manual_seed(7)
    noisy_v = xv + 0.3 * torch.randn(xv.shape, generator=gv)

    def batch(i, g, bs):
        idx = torch.randint(0, len(xt), (bs,), generator=g)
        clean = xt[idx]
        return clean + 0.3 * torch.randn(clean.shape, generator=g), clean

    def loss(model, b):
        out = model(b[0])
        if loss_kind == "bce_sum":
            return F.binary_cross_entropy_with_logits(out, b[1], reduction="sum") / len(b[1])
        return F.mse_loss(out, b[1])

    def val(model):
        return loss(model, (noisy_v, xv)).item()

    return model_fn, batch, loss, val


def _contrastive_task():
    def views(x, g):
        return x + 0.2 * torch.randn(x.shape, generator=g), x + 0.2 * torch.randn(x.shape,
                                                                               generator=g)  # fmt: skip

    def info_nce(model, a, b, t=0.1):
        za, zb = F.normalize(model(a), dim=1), F.normalize(model(b), dim=1)
        logits = za @ zb.T / t
        return F.cross_entropy(logits, torch.arange(len(a)))

    gv = torch.Generator().manual_seed(5)
    va, vb = views(DXV / 16.0, gv)

    def batch(i, g, bs):
        idx = torch.randint(0, len(DX), (bs,), generator=g)
        return views(DX[idx] / 16.0, g)

    def loss(model, b):
        return info_nce(model, b[0], b[1])

    def val(model):
        return info_nce(model, va, vb).item()

    return (lambda: mlp(64, 32, 128)), batch, loss, val


def _forecast_task():
    t = torch.arange(3000, dtype=torch.float32)
    g = torch.Generator().manual_seed(3)
    s = 20.0 * torch.sin(t / 15.0) + 2.0 * torch.randn(3000, generator=g)
    win = 24
    xs = torch.stack([s[i : i + win] for i in range(len(s) - win - 1)])
    ys = torch.stack([s[i + win : i + win + 1] for i in range(len(s) - win - 1)])
    return _regression_task(Forecaster, xs, ys)


def _poisson_task():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(4000, 8, generator=g)
    rate = torch.exp(0.5 * x[:, :4].sum(1, keepdim=True) / 2 + 2.0).clamp(max=60)
    y = torch.poisson(rate, generator=g)
    return _regression_task(lambda: mlp(8, 1, 32), x, y, loss_fn=F.poisson_nll_loss)


TASKS = {
    "vit_digits": lambda: _digits_task(ViT, image=True, scale=1.0),
    "gru_seq2seq": _seq2seq_task,
    "charlm_tied": _charlm_task,
    "unet_denoise": lambda: _denoise_task(UNetish),
    "tabular_bigscale": lambda: _regression_task(lambda: mlp(12, 1), *_tabular(4000, 12, 1e3, 1)),
    "diabetes_raw": lambda: _regression_task(
        lambda: mlp(10, 1),
        torch.tensor(load_diabetes().data, dtype=torch.float32) * 20.0,  # ~unit-variance features
        torch.tensor(load_diabetes().target, dtype=torch.float32).view(-1, 1),
    ),
    "contrastive": _contrastive_task,
    "digits_mlp": lambda: _digits_task(lambda: mlp(64, 10)),
    "digits_cnn": lambda: _digits_task(SmallCNN, image=True),
    "digits_raw_linear": lambda: _digits_task(lambda: nn.Linear(64, 10), scale=1.0),
    "digits_mlp_sum": lambda: _digits_task(lambda: mlp(64, 10), reduction="sum"),
    "tabular_30": lambda: _regression_task(lambda: mlp(12, 1), *_tabular(4000, 12, 30.0, 2)),
    "tabular_unit": lambda: _regression_task(lambda: mlp(12, 1), *_tabular(4000, 12, 1.0, 3)),
    "poisson_counts": _poisson_task,
    "bce_autoencoder": lambda: _denoise_task(
        lambda: nn.Sequential(
            nn.Flatten(),
            nn.Linear(64, 16),
            nn.ReLU(),
            nn.Linear(16, 64),
            nn.Unflatten(1, (1, 8, 8)),
        ),
        loss_kind="bce_sum",
    ),
    "friedman": lambda: _regression_task(
        ResMLP,
        *(
            torch.tensor(a, dtype=torch.float32).view(len(a), -1)
            for a in make_friedman1(n_samples=4000, noise=1.0, random_state=0)
        ),
    ),
    "forecast": _forecast_task,
}


def _sgd(lr, **kw):
    return lambda p: torch.optim.SGD(p, lr=lr, **kw)


def _adam(lr, cls=torch.optim.Adam, **kw):
    return lambda p: cls(p, lr=lr, **kw)


# name: (task, optimizer factory, steps, batch, extra)
LOOPS = {
    "vit_digits": ("vit_digits", _adam(3e-3, torch.optim.AdamW), 250, 64, {}),
    "gru_seq2seq": ("gru_seq2seq", _adam(1e-2), 250, 64, {}),
    "charlm_tied": ("charlm_tied", _adam(3e-3), 200, 32, {}),
    "unet_denoise": ("unet_denoise", _adam(1e-3), 250, 64, {}),
    "tabular_bigscale": ("tabular_bigscale", _adam(1e-3), 300, 64, {}),
    "diabetes_raw": ("diabetes_raw", _adam(1e-2), 300, 32, {}),
    "contrastive": ("contrastive", _adam(1e-3), 250, 128, {}),
    "sum_loss_sgd": ("digits_mlp_sum", _sgd(1e-3), 250, 64, {}),
    "rmsprop_cnn": ("digits_cnn", _adam(1e-3, torch.optim.RMSprop), 250, 64, {"nan_at": (40,)}),
    "adagrad_logreg": ("digits_raw_linear", _adam(5e-2, torch.optim.Adagrad), 250, 64, {}),
    "nadam_mlp": ("digits_mlp", _adam(2e-3, torch.optim.NAdam), 250, 64, {}),
    "lamb_like": ("tabular_unit", lambda p: Lamb(p, lr=1e-2), 300, 64, {}),
    "onecycle_cnn": (
        "digits_cnn",
        _sgd(0.1, momentum=0.9),
        250,
        64,
        {"sched": lambda o, n: torch.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=n)},
    ),
    "cyclic_tabular": (
        "tabular_30",
        _sgd(1e-4, momentum=0.9),
        300,
        64,
        {
            "sched": lambda o, n: torch.optim.lr_scheduler.CyclicLR(
                o, 1e-5, 1e-4, step_size_up=25, mode="triangular2"
            )
        },
    ),
    "large_batch": (
        "digits_mlp",
        _sgd(0.5, momentum=0.9),
        150,
        1024,
        {"sched": lambda o, n: torch.optim.lr_scheduler.LinearLR(o, 0.1, 1.0, 10)},
    ),
    "poisson_counts": ("poisson_counts", _adam(1e-2), 300, 64, {}),
    "bce_autoencoder": ("bce_autoencoder", _adam(1e-3), 300, 64, {}),
    "resmlp_friedman": (
        "friedman",
        _adam(3e-3, torch.optim.AdamW),
        300,
        64,
        {"sched": lambda o, n: torch.optim.lr_scheduler.CosineAnnealingLR(o, n), "nan_at": (100,)},
    ),
    "lstm_forecast": ("forecast", _sgd(1e-2, momentum=0.9), 300, 32, {}),
    # faulty: the plain loop is expected to suffer; the guard must not be worse
    "sgd_lr_too_high": ("digits_mlp", _sgd(1.5, momentum=0.9), 250, 64, {"faulty": True}),
    "unnormalised_batch": (
        "tabular_unit",
        _adam(1e-3),
        300,
        64,
        {"faulty": True, "scale_at": (120, 121, 122)},
    ),
    "gru_lr_too_high": ("gru_seq2seq", _adam(0.3), 250, 64, {"faulty": True}),
}


def run(name, plain, overrides):
    task, make_opt, steps, bs, extra = LOOPS[name]
    model_fn, batch, loss_of, val = TASKS[task]()
    torch.manual_seed(0)
    model = model_fn()
    opt = make_opt(model.parameters())
    sched = extra["sched"](opt, steps) if "sched" in extra else None
    g = torch.Generator().manual_seed(1)
    try:
        guard = None
        if not plain:
            guard = stabletrain.Guard(model, opt, scheduler=sched, run_dir=tempfile.mkdtemp(),
                                      config=stabletrain.GuardConfig(**overrides))  # fmt: skip
        for i in range(steps):
            b = batch(i, g, bs)
            if i in extra.get("nan_at", ()):
                b = (b[0].clone(), *b[1:])
                b[0].view(len(b[0]), -1)[0, 0] = float("nan")
            if i in extra.get("scale_at", ()):
                b = (b[0] * 1e4, *b[1:])
            loss = loss_of(model, b)
            if guard is not None:
                guard.step(loss)
                continue
            if math.isfinite(loss.item()):
                loss.backward()
                if all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters()):
                    opt.step()
                    if sched is not None:
                        sched.step()
            opt.zero_grad()
        if guard is not None:
            guard.close()
        model.eval()
        with torch.no_grad():
            v = val(model)
        return "ok" if math.isfinite(v) else "non-finite", v
    except Exception as e:
        tb = traceback.extract_tb(e.__traceback__)[-1]
        where = f"{tb.filename.split('/')[-1]}:{tb.lineno}"
        return f"CRASH {type(e).__name__}: {str(e)[:120]} @ {where}", math.inf


def verdict(guard_v, plain_v):
    if not math.isfinite(guard_v):
        return False, False, False
    if not math.isfinite(plain_v):
        return True, True, True
    # relative to |p|: a loss may be negative (Poisson NLL without its log(y!) constant)
    return tuple(guard_v <= plain_v + r * abs(plain_v) + 0.002 for r in (0.01, 0.02, 0.10))  # type: ignore[return-value]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("loops", nargs="*", help="loop names and GuardConfig FIELD=VALUE overrides")
    ap.add_argument("--json", help="write the per-loop results here")
    a = ap.parse_args(argv)
    overrides = {
        k: yaml.safe_load(v) for k, _, v in (x.partition("=") for x in a.loops if "=" in x)
    }
    only = [x for x in a.loops if "=" not in x] or list(LOOPS)
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    rows, bad = [], []
    counts = {"within_1pct": 0, "within_2pct": 0, "within_10pct": 0}
    for name in only:
        st, gv = run(name, False, overrides)
        _, pv = run(name, True, overrides)
        w1, w2, w10 = verdict(gv, pv)
        kind = "F" if LOOPS[name][4].get("faulty") else "H"
        counts["within_1pct"] += w1
        counts["within_2pct"] += w2
        counts["within_10pct"] += w10
        if not w2:
            bad.append(name)
        rel = gv / pv if math.isfinite(gv) and math.isfinite(pv) and pv != 0 else math.nan
        print(f"{kind} {name:20s} {st:10s} guard {gv:10.4f}  plain {pv:10.4f}  ratio {rel:6.3f}"
              f"{'' if w2 else '  <-- WORSE (>2%)'}", flush=True)  # fmt: skip
        rows.append({"loop": name, "kind": kind, "status": st, "guard": gv, "plain": pv,
                     "within_1pct": w1, "within_2pct": w2, "within_10pct": w10})  # fmt: skip
    n = len(only)
    print(f"{n} loops: within 1% {counts['within_1pct']}/{n}, within 2% (expected) "
          f"{counts['within_2pct']}/{n}, within 10% {counts['within_10pct']}/{n}; "
          f"worse than expected {len(bad)} {bad}")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"overrides": overrides, "rows": rows, "counts": counts, "worse": bad}, f,
                      indent=1, default=str)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
