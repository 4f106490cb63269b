from __future__ import annotations

import json
import math

import torch

from stabletrain.detectors.growth import GradNormGrowthDetector
from stabletrain.detectors.registry import replay
from stabletrain.detectors.robust import spearman
from stabletrain.detectors.trends import LossTrendDetector
from stabletrain.records import ConfigFacts, StepRecord


def test_spearman_hand_computed() -> None:
    assert spearman([1, 2, 3, 4]) == 1.0
    assert spearman([4, 3, 2, 1]) == -1.0
    # ranks [0, 2, 1, 3]: d² = 0+1+1+0 = 2 → 1 - 6·2/(4·15) = 0.8
    assert abs(spearman([1, 3, 2, 4]) - 0.8) < 1e-12


def test_seed003_grad_norm_growth_per_epoch(scenarios) -> None:
    recs, facts = scenarios.seed003()
    [f] = replay(recs, facts, [GradNormGrowthDetector()])
    assert f.id == "grad-norm-growth" and f.severity == "warning"
    assert f.epochs == list(range(7))
    p90 = f.evidence["p90_and_max_per_bin"]
    assert (
        p90["epoch 0"][0] < 2.0 and p90["epoch 4"][1] > 12
    )  # "epoch 0 < 2 ... 3-4 reaching 12-16"
    assert f.fixes[0].changes == {"learning_rate": 1e-5}


def test_growth_near_miss_doubling_is_not_growth() -> None:
    recs = [
        StepRecord(step=i, epoch=i // 50, grad_norm=1.0 + i / 250) for i in range(300)
    ]  # 1 → 2.2
    assert replay(recs, None, [GradNormGrowthDetector()]) == []


def test_growth_near_miss_decreasing_norm() -> None:
    recs = [StepRecord(step=i, epoch=i // 50, grad_norm=10.0 / (1 + i / 30)) for i in range(300)]
    assert replay(recs, None, [GradNormGrowthDetector()]) == []


def test_seed001_loss_ends_far_above_best(scenarios) -> None:
    recs, facts = scenarios.seed001()
    found = {f.id: f for f in replay(recs, facts, [LossTrendDetector()])}
    f = found["loss-divergence"]
    assert f.evidence["best_at"] == "epoch 10" and f.evidence["best"] == 0.05
    assert f.epochs[0] == 13 and f.epochs[-1] == 26
    changes = {k: v for fix in f.fixes for k, v in fix.changes.items()}
    assert changes == {"training.learning_rate": 3e-4, "training.gradient_clip_value": 0.5}
    assert "chance-level" not in found


def test_divergence_near_miss_noisy_plateau() -> None:
    recs = [
        StepRecord(step=i, epoch=i, loss=1.0 / (1 + i) + 0.3 + 0.01 * (i % 3)) for i in range(20)
    ]
    assert replay(recs, None, [LossTrendDetector()]) == []


def test_seed002_chance_level_with_config_fixes(scenarios) -> None:
    recs, facts = scenarios.seed002()
    found = {f.id: f for f in replay(recs, facts, [LossTrendDetector()])}
    f = found["chance-level"]
    assert f.severity == "error" and f.evidence["num_classes"] == 10
    assert abs(f.evidence["final_accuracy"] - 0.1007) < 1e-9
    assert f.epochs == [23, 24, 25]
    changes = {k: v for fix in f.fixes for k, v in fix.changes.items()}
    assert changes["gradient_clipping"] == 1.0 and changes["fp16.enabled"] is False
    assert found["loss-divergence"].severity == "error"  # 17+ is above the start of 2.3


def test_chance_inferred_from_initial_loss_without_config() -> None:
    # 10 classes, loss never leaves ln(10) = 2.303, no accuracy logged
    recs = [StepRecord(step=i, epoch=i // 10, loss=2.30 + 0.01 * (i % 4)) for i in range(60)]
    [f] = [f for f in replay(recs, None, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes"] == 10 and f.evidence["num_classes_from"] != "config"
    assert f.severity == "warning" and "inferred" in f.explanation  # it says what it assumed


def test_chance_near_miss_learning_run() -> None:
    recs = [
        StepRecord(
            step=i, epoch=i // 10, loss=2.3 * math.exp(-i / 40), accuracy=min(0.9, 0.1 + i / 60)
        )
        for i in range(60)
    ]
    facts = ConfigFacts()
    facts.set("num_classes", 10)
    assert replay(recs, facts, [LossTrendDetector()]) == []


def _train(lr: float) -> list[StepRecord]:
    """A real tiny MLP on a 4-class gaussian-blob problem, plain SGD at ``lr``."""
    g = torch.Generator().manual_seed(0)
    centers = torch.randn(4, 8, generator=g)
    y = torch.randint(0, 4, (512,), generator=g)
    x = centers[y] + torch.randn(512, 8, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4))
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    recs = []
    for step in range(120):
        idx = torch.arange(step * 32, step * 32 + 32) % 512
        out = model(x[idx])
        loss = torch.nn.functional.cross_entropy(out, y[idx])
        opt.zero_grad()
        loss.backward()
        gn = float(torch.nn.utils.get_total_norm([p.grad for p in model.parameters()]))
        opt.step()
        acc = float((out.argmax(1) == y[idx]).float().mean())
        recs.append(
            StepRecord(
                step=step, epoch=step // 16, loss=loss.item(), grad_norm=gn, lr=lr, accuracy=acc
            )
        )
    return recs


def test_real_run_lr_too_high_is_at_chance_and_sane_lr_is_not() -> None:
    facts = ConfigFacts()
    facts.set("num_classes", 4)
    [bad] = replay(_train(30.0), facts, [LossTrendDetector()])  # loss → 3e29 → NaN
    assert bad.id == "chance-level" and bad.evidence["final_accuracy"] <= 0.3125
    assert replay(_train(0.1), facts, [LossTrendDetector(), GradNormGrowthDetector()]) == []


def test_state_dict_round_trip(scenarios) -> None:
    recs, facts = scenarios.seed003()
    for cls in (GradNormGrowthDetector, LossTrendDetector):
        a, b = cls(), cls()
        for r in recs[:200]:
            a.update(r)
        b.load_state_dict(json.loads(json.dumps(a.state_dict())))
        for r in recs[200:]:
            a.update(r)
            b.update(r)
        assert [f.to_json() for f in a.finish(facts)] == [f.to_json() for f in b.finish(facts)]


def test_chance_near_miss_loss_near_ln2_is_not_inferred() -> None:
    # a BCE/MSE loss that happens to start near ln 2 must not be read as "2 classes at chance"
    recs = [StepRecord(step=i, epoch=i // 10, loss=0.70 - 0.0005 * i) for i in range(60)]
    assert all(f.id != "chance-level" for f in replay(recs, None, [LossTrendDetector()]))


def test_seed004_loss_stuck_at_12_is_chance_for_a_large_vocab(scenarios) -> None:
    # "training loss stuck at ~12.06, 0% validation accuracy"
    clean, _raw, facts = scenarios.seed004()
    evals = [StepRecord(step=r.step, kind="eval", epoch=r.epoch, eval_accuracy=0.0) for r in clean]
    [f] = replay(sorted(clean + evals, key=lambda r: r.step), facts, [LossTrendDetector()])
    assert f.id == "chance-level" and f.evidence["num_classes"] > 100_000
    assert f.severity == "error"
    # the loss alone cannot tell ln(172 800) from the log of its neighbours: no guess of C
    assert replay(clean, facts, [LossTrendDetector()]) == []


def test_chance_near_miss_flat_excerpt_of_a_converged_run() -> None:
    # a converged fine-tune logged from step 5000 on: flat at 1.93 ± 1 %. e^1.93 ≈ 6.9 is "7
    # classes" within 3 %, but on the loss alone that is a coincidence, not a uniform guess
    recs = [StepRecord(step=5000 + i, loss=1.93 * (1 + 0.01 * math.sin(i))) for i in range(300)]
    assert replay(recs, None, [LossTrendDetector()]) == []


def test_chance_near_miss_inferred_classes_but_loss_far_above_start() -> None:
    # starts at ln(4), then blows up to ~7: that is divergence, not "stuck at chance"
    recs = [
        StepRecord(step=i, epoch=i // 10, loss=1.386 if i < 10 else 7.0 + 0.01 * i)
        for i in range(60)
    ]
    ids = [f.id for f in replay(recs, None, [LossTrendDetector()])]
    assert ids == ["loss-divergence"]


def test_chance_inferred_from_first_loss_of_an_early_explosion() -> None:
    # per-epoch log exploding from ln(10) at once, accuracy 10 %: the median of the first 5 (17.0)
    # hides ln 10
    losses = [2.303, 4.8, 17.0, 17.6, 17.2, 17.5, 17.4, 17.6]
    recs = [StepRecord(step=i, epoch=i, loss=v, accuracy=0.1) for i, v in enumerate(losses)]
    found = {f.id: f for f in replay(recs, None, [LossTrendDetector()])}
    assert "chance-level" in found


def test_chance_near_miss_first_loss_not_ln_c() -> None:
    losses = [3.0, 4.8, 17.0, 17.6, 17.2, 17.5, 17.4, 17.6]  # 3.0: e^3 ≈ 20.1, not an integer C
    recs = [StepRecord(step=i, epoch=i, loss=v, accuracy=0.1) for i, v in enumerate(losses)]
    assert "chance-level" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}


def test_grad_growth_near_miss_sparse_excerpt_blocks() -> None:
    # bigscience-tr8b-like excerpt: one or two lines per block, one repeated huge norm at the end
    norms = {6502: 3259.0, 8600: 3011.0, 12000: 61093.0, 14000: 2570.0, 16800: 181553.0}
    recs = [StepRecord(step=s, grad_norm=g) for s, g in norms.items()]
    recs += [StepRecord(step=17060 + i, grad_norm=464441.887) for i in range(6)]
    assert replay(recs, None, [GradNormGrowthDetector()]) == []


def test_grad_growth_sustained_over_full_blocks() -> None:
    recs = [StepRecord(step=s, epoch=s // 10, grad_norm=1.05**s) for s in range(60)]
    [f] = replay(recs, None, [GradNormGrowthDetector()])
    assert f.id == "grad-norm-growth"


def _lm(losses: list[float]) -> list[StepRecord]:
    return [StepRecord(step=i, loss=v) for i, v in enumerate(losses)]


def test_chance_level_from_the_configs_vocab_size() -> None:
    # a GPT-2-vocabulary LM whose loss starts at 11.5 (no ln(C) to infer from) and sticks at
    # ~10.9 ≈ ln(50257) = 10.82: a uniform guess over the vocabulary
    facts = ConfigFacts()
    facts.set("vocab_size", 50257, key="vocab_size")
    recs = _lm([11.5] + [10.9 + 0.02 * (i % 3) for i in range(199)])
    assert "chance-level" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}
    [f] = [f for f in replay(recs, facts, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes"] == 50257 and f.evidence["num_classes_from"] == "config"
    # the same model learning (10.9 → 4) is not at chance
    learning = _lm([11.5] + [4.0 + 6.9 * math.exp(-i / 40) for i in range(199)])
    assert "chance-level" not in {f.id for f in replay(learning, facts, [LossTrendDetector()])}


def test_num_labels_wins_over_vocab_size() -> None:
    # a BERT classifier's config has both: its head has 2 labels, its embedding 30522 tokens
    facts = ConfigFacts()
    facts.set("vocab_size", 30522, key="vocab_size")
    facts.set("num_classes", 2, key="num_labels")
    recs = [StepRecord(step=i, epoch=i // 20, loss=0.69, accuracy=0.5) for i in range(100)]
    [f] = [f for f in replay(recs, facts, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes"] == 2


def test_divergence_near_miss_loss_oscillating_at_its_noise() -> None:
    # per-epoch means bouncing ±15 % around 0.9 with no trend: the last two sit above the
    # luckiest epoch by more than a fifth, but well within the curve's own noise
    means = [1.0, 0.85, 1.1, 0.8, 1.05, 0.82, 1.08, 0.78, 1.0, 0.85, 1.02, 1.0]
    recs = [StepRecord(step=e, epoch=e, loss=v) for e, v in enumerate(means)]
    assert "loss-divergence" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}


def test_chance_near_miss_converged_excerpt_deep_into_a_run() -> None:
    # fairseq's epochs 25-27 of a WMT run: loss 3.097 → 3.092, within 0.006 nats of ln(22) —
    # but a log starting at update 53749 holds no initial loss to infer a class count from
    recs = [StepRecord(step=s, epoch=e, loss=v)
            for s, e, v in ((53749, 25, 3.097), (55899, 26, 3.095), (58049, 27, 3.092))]  # fmt: skip
    recs += [StepRecord(step=s, kind="eval", epoch=e, eval_loss=3.11)
             for s, e in ((53749, 25), (55899, 26), (58049, 27))]  # fmt: skip
    recs = [StepRecord(step=50000 + i, loss=3.0912) for i in range(20)] + recs  # ln 22 = 3.0910
    assert "chance-level" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}


def test_grad_growth_in_a_short_excerpt_judged_on_its_norms() -> None:
    # ten pasted steps, the norm growing 1.5x per step: too few for bins, a trend all the same
    recs = [StepRecord(step=s, loss=11.3, grad_norm=3.8e12 * 1.5**s) for s in range(10)]
    [f] = replay(recs, None, [GradNormGrowthDetector()])
    assert f.id == "grad-norm-growth" and f.evidence["ratio"] > 10
    # ten noisy steps around a flat norm are not growth
    flat = [StepRecord(step=s, grad_norm=1.0 + 0.3 * ((s * 7) % 5) / 5) for s in range(10)]
    assert replay(flat, None, [GradNormGrowthDetector()]) == []


def _epochs(losses: list[float], accs: list[float]) -> list[StepRecord]:
    out = []
    for i, (loss, acc) in enumerate(zip(losses, accs, strict=True)):
        out.append(StepRecord(step=i + 1, epoch=i, loss=loss, accuracy=acc))
        out.append(StepRecord(step=i + 1, epoch=i, kind="eval", eval_accuracy=acc))
    return out


def test_a_model_that_never_beat_chance_has_no_divergence() -> None:
    """distance-encoding#6 (round 3 DEV): train/val accuracy 0.5000 on every epoch of a binary
    task while the loss wandered 1.36 -> 0.73 -> 1.39. At chance from its first record the
    model learned nothing to diverge from: chance-level only. The same loss after an accuracy of
    0.90 that fell back to 0.50 is a divergence that broke a learned model: kept."""
    losses = [1.3633, 1.3360, 1.0868, 0.7682, 0.7315, 1.0313, 1.3165, 1.3862]
    flat = replay(_epochs(losses, [0.5] * 8), ConfigFacts(), [LossTrendDetector()])
    assert [f.id for f in flat] == ["chance-level"]
    fell = [0.9, 0.9, 0.9, 0.9, 0.5, 0.5, 0.5, 0.5]
    both = replay(_epochs(losses, fell), ConfigFacts(), [LossTrendDetector()])
    assert "loss-divergence" in [f.id for f in both]
