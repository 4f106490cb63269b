"""The four model families of the fault matrix: data, model, batches and evaluation for each.

- ``cnn``: the reference trainer's 3-conv CNN with BatchNorm (8/16/32 channels) on scikit-learn's
  ``load_digits`` (1437 train / 360 val, standardised), AdamW 3e-3, batch 32.
- ``mlp``: an 8-layer, 64-wide ReLU MLP with no normalisation (Kaiming init) on the same digits,
  AdamW 1e-3, batch 32.
- ``gpt``: the reference trainer's pre-LN GPT (2 layers, 2 heads, 48 wide) as a character LM on
  the Python standard library's own ``.py`` sources, blocks of 32 characters, AdamW 3e-3 with a
  20-step linear warm-up, batch 16.
- ``lstm``: a one-layer LSTM character LM (embedding 32, hidden 96) on the same text, Adam 1e-2,
  batch 16.
- ``rnn`` (round 2): a one-layer vanilla (tanh) RNN character LM (embedding 32, hidden 96) on the
  same text, Adam 3e-3, batch 16: no gates, so its gradients can explode through time.

Round 3 variants of the ``gpt`` family (``build_model``'s keywords): ``post_ln`` -- the same
GPT with post-LN blocks (``x = LN(x + f(x))``, as in the original transformer, no final LN),
which needs a warm-up far more than pre-LN (Xiong et al. 2020); ``emb_std`` -- the token
embedding (tied to the output head) initialised at this std instead of GPT-2's 0.02 (``1.0`` is
``nn.Embedding``'s own default: a forgotten init).

Round 4 variants (``build_model``'s ``attn_scale``): the GPT's attention with a hand-written
scale (``1.0``: the ``1/sqrt(d_head)`` forgotten, logits ~4.9x too large at head width 24).

Round 5 variants (``build_model``'s keywords): ``dropout`` -- the recurrent LMs with dropout
of this probability on the recurrent output (``0.9``: a TensorFlow ``keep_prob`` of 0.9 passed
as PyTorch's drop probability); ``softmax_out`` -- a ``Softmax`` as the model's last layer, its output fed to the
cross-entropy (the softmax applied twice); ``logit_temp`` -- a learnable temperature on the
logits, ``exp(s)`` with ``s`` initialised at ``log(1 / logit_temp)`` and never clamped (CLIP's
logit scale without its clamp at 100).

The metric is val accuracy: of the 10 digit classes, or of the next character on 128 held-out
blocks. A run is at *chance* when its metric is no better than ignoring the input: 0.15 on digits,
the most frequent character's share (+0.02) on text. Batches are drawn once per seed, before the
run, so every method sees the very same data in the same order, and a fault is a property of a
batch (a NaN batch stays a NaN batch, whoever reads it).
"""

from __future__ import annotations

import functools
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rescue import mlp
from stabletrain.train.config import CNNSection, DataSection, GPTSection
from stabletrain.train.data import Dataset, load_dataset
from stabletrain.train.models import CNN, GPT, Block, SelfAttention, loss_and_correct

FamilyName = Literal["cnn", "mlp", "gpt", "lstm", "rnn"]
FAMILIES: tuple[FamilyName, ...] = ("cnn", "mlp", "gpt", "lstm", "rnn")
SEQ = 32
VAL_BLOCKS = 128


@dataclass(frozen=True)
class Family:
    name: FamilyName
    task: Literal["classify", "lm"]
    lr: float
    batch: int
    warmup: int = 0


SPECS: dict[FamilyName, Family] = {
    "cnn": Family("cnn", "classify", 3e-3, 32),
    "mlp": Family("mlp", "classify", 1e-3, 32),
    "gpt": Family("gpt", "lm", 3e-3, 16, warmup=20),
    "lstm": Family("lstm", "lm", 1e-2, 16),
    "rnn": Family("rnn", "lm", 3e-3, 16),
}


class CharLSTM(nn.Module):
    """A character LM over one recurrent layer: an LSTM, or a vanilla tanh RNN (``cell="rnn"``);
    ``dropout`` on the recurrent output."""

    def __init__(
        self, vocab: int, emb: int = 32, hidden: int = 96, cell: str = "lstm", dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.emb = nn.Embedding(vocab, emb)
        self.rnn: nn.Module = (
            nn.LSTM(emb, hidden, batch_first=True)
            if cell == "lstm"
            else nn.RNN(emb, hidden, nonlinearity="tanh", batch_first=True)
        )
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(self.rnn(self.emb(idx))[0]))


class SoftmaxOut(nn.Module):
    """The model with a ``Softmax`` as its last layer: probabilities where logits are meant."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.inner(x), dim=-1)


class LogitTemperature(nn.Module):
    """The model's logits times a learnable ``exp(s)``, ``s`` initialised at ``log(1 / temp)``,
    never clamped."""

    def __init__(self, inner: nn.Module, temp: float) -> None:
        super().__init__()
        self.inner = inner
        self.log_scale = nn.Parameter(torch.tensor(math.log(1.0 / temp)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x) * self.log_scale.exp()


class ScaledAttention(SelfAttention):
    """The family's attention with an explicit softmax scale (``attn_scale``; 1.0 forgets
    ``1/sqrt(d_head)``, as a hand-written attention often does)."""

    scale = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
            for z in self.qkv(x).split(c, dim=2)
        )
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=self.scale)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class PostLNBlock(Block):
    """The pre-LN block's layers in post-LN order: normalise after each residual sum."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.mlp(x))


def post_ln_gpt(cfg: GPTSection, vocab: int, block_size: int) -> GPT:
    """The family's GPT with post-LN blocks and no final LN, initialised as the pre-LN one."""
    model = GPT(cfg, vocab, block_size)
    blocks = [PostLNBlock(cfg) for _ in range(cfg.n_layer)]
    for old, new in zip(model.blocks, blocks, strict=True):
        new.load_state_dict(old.state_dict())  # the same initial weights as pre-LN
    model.blocks = nn.ModuleList(blocks)
    model.ln_f = nn.Identity()  # type: ignore[assignment]
    return model


@functools.cache
def dataset(task: Literal["classify", "lm"]) -> Dataset:
    if task == "classify":
        return load_dataset(DataSection(name="digits"), seed=0)
    ds = load_dataset(DataSection(name="charcorpus", seq_len=SEQ), seed=0)
    ds.x_val, ds.y_val = ds.x_val[:VAL_BLOCKS], ds.y_val[:VAL_BLOCKS]
    return ds


@functools.cache
def chance(task: Literal["classify", "lm"]) -> float:
    """The metric of a model that ignores its input."""
    if task == "classify":
        return 0.15
    y = dataset("lm").y_val
    return float(torch.bincount(y.flatten()).max()) / y.numel() + 0.02


def build_model(
    fam: Family,
    init_std: float | None = None,
    depth: int | None = None,
    *,
    post_ln: bool = False,
    emb_std: float | None = None,
    attn_scale: float | None = None,
    dropout: float = 0.0,
    softmax_out: bool = False,
    logit_temp: float | None = None,
) -> nn.Module:
    """The family's model, initialised from the current torch seed (``depth``: the mlp's layers,
    8 by default; ``post_ln`` and ``emb_std``: the gpt variants of round 3; ``attn_scale``:
    round 4's hand-written attention scale; the rest: round 5's variants, see above)."""
    model = _build(fam, init_std, depth, post_ln=post_ln, emb_std=emb_std, attn_scale=attn_scale,
                   dropout=dropout)  # fmt: skip
    if softmax_out:
        model = SoftmaxOut(model)
    if logit_temp is not None:
        model = LogitTemperature(model, logit_temp)
    return model


def _build(
    fam: Family,
    init_std: float | None,
    depth: int | None,
    *,
    post_ln: bool,
    emb_std: float | None,
    attn_scale: float | None,
    dropout: float,
) -> nn.Module:
    if fam.name == "cnn":
        return CNN(CNNSection(channels=[8, 16, 32], hidden=64, batch_norm=True), 1, 10)
    if fam.name == "mlp":
        return mlp(init_std, depth=depth or 8, width=64)
    vocab = dataset("lm").num_classes
    if fam.name == "gpt":
        cfg = GPTSection(n_layer=2, n_head=2, n_embd=48)
        gpt = post_ln_gpt(cfg, vocab, SEQ) if post_ln else GPT(cfg, vocab, SEQ)
        if emb_std is not None:
            nn.init.normal_(gpt.tok.weight, std=emb_std)  # tied: the output head too
        if attn_scale is not None:
            for block in gpt.blocks:
                block.attn.__class__ = ScaledAttention
                block.attn.scale = attn_scale  # type: ignore[union-attr]
        return gpt
    return CharLSTM(vocab, cell=fam.name, dropout=dropout)


def draw_batches(
    fam: Family,
    seed: int,
    count: int,
    batch: int,
    subset: int | None = None,
    *,
    by_label: bool = False,
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``count`` batches of ``batch`` examples: epochs of a seeded permutation of the training set
    (its first ``subset`` examples when given). ``by_label``: every epoch in the same order,
    sorted by label (a loader without ``shuffle=True`` over a dataset stored class by class;
    the seed orders the examples within a class)."""
    ds = dataset(fam.task)
    n = len(ds.x_train) if subset is None else subset
    g = torch.Generator().manual_seed(1000 + seed)
    out: list[tuple[torch.Tensor, torch.Tensor]] = []
    perm = torch.randperm(n, generator=g)
    if by_label:
        perm = perm[torch.sort(ds.y_train[perm], stable=True).indices]
    at = 0
    while len(out) < count:
        if at + batch > n:
            at = 0
            if not by_label:
                perm = torch.randperm(n, generator=g)
        idx = perm[at : at + batch]
        at += batch
        out.append((ds.x_train[idx].clone(), ds.y_train[idx].clone()))
    return out


def evaluate(
    model: nn.Module, fam: Family, *, x_scale: float = 1.0, nan_row: bool = False
) -> tuple[float, float]:
    """(val loss, val accuracy) in eval mode; the model is put back in train mode. ``x_scale``
    multiplies the (float) val inputs, as the training inputs were; ``nan_row``: the first val
    example is NaN (a corrupt file in the val set)."""
    ds = dataset(fam.task)
    model.eval()
    try:
        with torch.no_grad():
            dtype = next(model.parameters()).dtype
            x = ds.x_val.to(dtype) * x_scale if ds.x_val.is_floating_point() else ds.x_val
            if nan_row:
                x = x.clone()
                x[0] = math.nan
            loss, correct = loss_and_correct(model(x), ds.y_val)
    finally:
        model.train()
    return float(loss), float(correct) / ds.y_val.numel()
