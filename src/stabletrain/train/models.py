"""The reference trainer's models: the seeds' small CNN and a nanoGPT-sized character GPT.

- :class:`CNN`: 3 conv + 2 FC as in the seed postmortems (000/002), Kaiming init by default,
  optional batch norm and dropout; ``init: normal`` with a large ``init_std`` reproduces the bad
  initialisations that made seed 002's gradients explode.
- :class:`GPT`: a pre-LayerNorm decoder (GPT-2 layout, Radford et al. 2019) with weight-tied head
  and PyTorch's fused ``scaled_dot_product_attention``; ``qk_layernorm`` normalises queries and keys
  per head (Dehghani et al. 2023, "Scaling Vision Transformers to 22B"), a known cure for attention
  logit growth. Sized to train on a CPU in a minute, not to be state of the art.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from stabletrain.train.config import CNNSection, GPTSection, ModelSection


class CNN(nn.Module):
    def __init__(self, cfg: CNNSection, in_channels: int, num_classes: int) -> None:
        super().__init__()
        c1, c2, c3 = cfg.channels
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate([(in_channels, c1), (c1, c2), (c2, c3)]):
            layers.append(nn.Conv2d(cin, cout, 3, padding=1))
            if cfg.batch_norm:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.ReLU())
            if i < 2:
                layers.append(nn.MaxPool2d(2))
        layers.append(nn.AdaptiveAvgPool2d(2))  # 8x8 digits and 32x32 CIFAR share one head
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c3 * 4, cfg.hidden),
            nn.ReLU(),
            nn.Dropout(cfg.dropout),
            nn.Linear(cfg.hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                _init(m, cfg)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _init(m: nn.Conv2d | nn.Linear, cfg: CNNSection) -> None:
    if cfg.init == "kaiming":
        nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
    elif cfg.init == "xavier":
        nn.init.xavier_uniform_(m.weight)
    else:
        nn.init.normal_(m.weight, std=cfg.init_std if cfg.init_std is not None else 0.02)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


class SelfAttention(nn.Module):
    def __init__(self, cfg: GPTSection) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout
        head_dim = cfg.n_embd // cfg.n_head
        self.q_norm: nn.Module = nn.LayerNorm(head_dim) if cfg.qk_layernorm else nn.Identity()
        self.k_norm: nn.Module = nn.LayerNorm(head_dim) if cfg.qk_layernorm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = (
            z.view(b, t, self.n_head, c // self.n_head).transpose(1, 2)
            for z in self.qkv(x).split(c, dim=2)
        )
        q, k = self.q_norm(q), self.k_norm(k)
        drop = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=drop)
        return self.proj(y.transpose(1, 2).reshape(b, t, c))


class Block(nn.Module):
    def __init__(self, cfg: GPTSection) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.n_embd)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd),
            nn.GELU(),
            nn.Linear(4 * cfg.n_embd, cfg.n_embd),
            nn.Dropout(cfg.dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x))
        return x + self.mlp(self.ln2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTSection, vocab_size: int, block_size: int) -> None:
        super().__init__()
        self.tok = nn.Embedding(vocab_size, cfg.n_embd)
        self.pos = nn.Embedding(block_size, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.lm_head = nn.Linear(cfg.n_embd, vocab_size, bias=False)
        self.lm_head.weight = self.tok.weight  # weight tying, as in GPT-2
        self.apply(self._init_weights)
        # residual projections scaled by depth (GPT-2): keeps the residual stream's variance flat
        for name, p in self.named_parameters():
            if name.endswith(("proj.weight", "mlp.2.weight")):
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(m: nn.Module) -> None:
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.tok(idx) + self.pos(pos))
        for block in self.blocks:
            x = block(x)
        return self.lm_head(self.ln_f(x))


def build_model(
    cfg: ModelSection, *, num_classes: int, in_channels: int = 1, seq_len: int = 64
) -> nn.Module:
    if cfg.name == "cnn":
        return CNN(cfg.cnn, in_channels, num_classes)
    return GPT(cfg.gpt, num_classes, seq_len)


def loss_and_correct(logits: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and the number of correct argmax predictions (classes or tokens)."""
    flat = logits.reshape(-1, logits.shape[-1]).float()
    target = y.reshape(-1)
    return F.cross_entropy(flat, target), (flat.argmax(-1) == target).sum()
