from __future__ import annotations

import torch

from stabletrain.train.config import CNNSection, GPTSection, ModelSection
from stabletrain.train.models import CNN, GPT, build_model, loss_and_correct


def test_cnn_shapes_for_digits_and_cifar() -> None:
    cfg = CNNSection(batch_norm=True, dropout=0.2)
    assert CNN(cfg, 1, 10)(torch.randn(4, 1, 8, 8)).shape == (4, 10)
    assert CNN(cfg, 3, 10)(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    convs = [m for m in CNN(cfg, 1, 10).modules() if isinstance(m, torch.nn.Conv2d)]
    linears = [m for m in CNN(cfg, 1, 10).modules() if isinstance(m, torch.nn.Linear)]
    assert (len(convs), len(linears)) == (3, 2)


def test_bad_init_is_reproducible() -> None:
    x = torch.randn(16, 1, 8, 8)
    good = CNN(CNNSection(), 1, 10)
    bad = CNN(CNNSection(init="normal", init_std=1.0), 1, 10)
    # a std-1 normal init blows the logits up by orders of magnitude (seed 002's exploding start)
    assert bad(x).abs().mean() > 100 * good(x).abs().mean()
    w = CNN(CNNSection(init="normal"), 1, 10).features[0].weight
    assert abs(float(w.detach().std()) - 0.02) < 0.01


def test_gpt_is_causal_and_ties_weights() -> None:
    model = GPT(GPTSection(n_layer=2, n_head=2, n_embd=16, qk_layernorm=True), 20, 12)
    model.eval()
    idx = torch.randint(0, 20, (2, 12))
    changed = idx.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 20
    a, b = model(idx), model(changed)
    assert a.shape == (2, 12, 20)
    assert torch.allclose(a[:, :8], b[:, :8], atol=1e-6) and not torch.allclose(a[:, 8:], b[:, 8:])
    assert model.lm_head.weight is model.tok.weight
    assert sum(isinstance(m, torch.nn.LayerNorm) for m in model.modules()) == 2 * 2 + 2 * 2 + 1


def test_build_model_and_loss() -> None:
    model = build_model(ModelSection(name="gpt"), num_classes=30, seq_len=8)
    logits = model(torch.randint(0, 30, (3, 8)))
    loss, correct = loss_and_correct(logits, torch.randint(0, 30, (3, 8)))
    assert abs(float(loss.detach()) - float(torch.log(torch.tensor(30.0)))) < 0.3  # ≈ uniform
    assert 0 <= int(correct) <= 24
