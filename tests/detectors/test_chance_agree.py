"""Chance level when the loss and the accuracy at the end of a log agree on one class count C
(detectors/trends.py): the third source of C, for excerpts and runs whose first loss is off ln(C),
and (test_generalisation.py) the wording of a class count the log itself states."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.registry import replay
from stabletrain.detectors.trends import AGREE, FROZEN, FROZEN_LOSS, LossTrendDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "logs"


def _epochs(train: list[float], val: list[float], acc: list[float]) -> list[StepRecord]:
    out: list[StepRecord] = []
    for e, (t, v, a) in enumerate(zip(train, val, acc, strict=True), start=1):
        out.append(StepRecord(step=e, epoch=e, loss=t))
        out.append(StepRecord(step=e, kind="eval", epoch=e, eval_loss=v, eval_accuracy=a))
    return out


# Lasagne issue 525 (MNIST cnn): validation loss 2.3032 -> 2.3014, validation accuracy 10.64 %
LASAGNE = _epochs(
    [2.471961, 2.366910, 2.332428, 2.319300, 2.313726, 2.310590],
    [2.303229, 2.303151, 2.301815, 2.301806, 2.301416, 2.301775],
    [10.64] * 6,
)


def test_real_lasagne_log_is_chance_level_by_loss_and_accuracy_agreeing() -> None:
    # the first loss 2.47 is ln(12) within 3 %, and 10.64 % is not within 1.25x of 1/12: the
    # initial-loss inference alone misses this run; the final pair says C = 10 twice over
    report = diagnose(FIXTURES / "lasagne_mnist_chance_525" / "console.txt")
    [f] = [f for f in report.findings if f.id == "chance-level"]
    assert f.severity == "error"
    assert f.evidence["num_classes"] == 10 and f.evidence["num_classes_from"] == AGREE
    assert 0.105 <= f.evidence["final_accuracy"] <= 0.107
    assert "from the log" in f.explanation


def test_pair_disagreeing_is_no_evidence() -> None:
    # loss at ln 10 but accuracy 60 % (a hard 10-class problem learning), and accuracy 10.6 %
    # with a loss of 0.9 (no uniform guess over any C): neither alone names a chance-level run
    learning = _epochs([2.5, 2.4, 2.35, 2.32, 2.31, 2.30], [2.31, 2.30, 2.30, 2.30, 2.30, 2.30],
                       [20.0, 35.0, 50.0, 58.0, 60.0, 61.0])  # fmt: skip
    odd = _epochs([1.0, 0.95, 0.92, 0.9, 0.9, 0.89], [0.95, 0.93, 0.92, 0.91, 0.9, 0.9],
                  [10.6] * 6)  # fmt: skip
    for recs in (learning, odd):
        assert "chance-level" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}


def test_binary_pair_at_chance_and_a_converged_binary_run() -> None:
    stuck = _epochs([0.70, 0.694, 0.6932, 0.6931, 0.6932, 0.6931], [0.6932] * 6, [0.5] * 6)
    [f] = [f for f in replay(stuck, None, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes"] == 2
    fine = _epochs([0.69, 0.5, 0.4, 0.3, 0.25, 0.2], [0.6, 0.45, 0.35, 0.3, 0.28, 0.27],
                   [0.6, 0.75, 0.82, 0.86, 0.88, 0.89])  # fmt: skip
    assert replay(fine, None, [LossTrendDetector()]) == []


def test_bulk_stream_and_state_agree_with_eval_losses(scenarios) -> None:
    scenarios.assert_bulk_and_state_agree(LossTrendDetector, LASAGNE)


def _accs(train: list[float], evals: list[float]) -> list[StepRecord]:
    out: list[StepRecord] = []
    for e, (t, v) in enumerate(zip(train, evals, strict=True), start=1):
        out.append(StepRecord(step=e, epoch=e, loss=1.0 + 0.3 * (e % 3), accuracy=t))
        out.append(StepRecord(step=e, kind="eval", epoch=e, eval_accuracy=v))
    return out


def test_real_frozen_half_accuracy_is_chance_level() -> None:
    # distance-encoding issue 6: train, val and test acc 0.5000 for epochs 210-217 of a binary
    # task while the loss swings 0.73-1.39 (the 0.9120 is the best-so-far, not a current value)
    report = diagnose(FIXTURES / "absl_frozen_acc_distenc6" / "train.log")
    [f] = [f for f in report.findings if f.id == "chance-level"]
    assert f.severity == "error"
    assert f.evidence["num_classes"] == 2 and f.evidence["num_classes_from"] == FROZEN


def test_frozen_accuracy_near_misses() -> None:
    runs = (
        _accs([0.5] * 8, [0.5, 0.52, 0.55, 0.6, 0.62, 0.66, 0.7, 0.71]),  # eval learns
        _accs([0.37] * 8, [0.37] * 8),  # frozen, but at no 1/C
        _accs([0.5, 0.5, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9], [0.5, 0.5, 0.6, 0.7, 0.8, 0.8, 0.9, 0.9]),
    )
    for recs in runs:
        assert "chance-level" not in {f.id for f in replay(recs, None, [LossTrendDetector()])}
    scenarios_recs = _accs([0.5] * 8, [0.5] * 8)
    [f] = [f for f in replay(scenarios_recs, None, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes_from"] == FROZEN


# caffe#1255 (a 3,755-class handwriting net, r1 held-out, touched from session 4): the loss
# sits at ~8.25 and the test accuracy at 0.00028 — accuracy x e^loss ≈ 1, a uniform guess over
# thousands of classes, past the old limit of C ≤ 1000
CAFFE_1255 = """\
I1010 17:36:18.471542 24907 solver.cpp:247] Iteration 0, Testing net (#0)
I1010 17:36:51.366374 24907 solver.cpp:298]     Test net output #0: accuracy = 0.00028
I1010 17:36:51.521034 24907 solver.cpp:191] Iteration 0, loss = 87.3366
I1010 17:36:51.521077 24907 solver.cpp:403] Iteration 0, lr = 0.001
I1010 17:40:30.682349 24907 solver.cpp:191] Iteration 1000, loss = 8.26466
I1010 17:44:09.906486 24907 solver.cpp:191] Iteration 2000, loss = 8.25553
I1010 17:47:49.071782 24907 solver.cpp:191] Iteration 3000, loss = 8.24047
I1010 17:51:27.956398 24907 solver.cpp:247] Iteration 4000, Testing net (#0)
I1010 17:52:00.040813 24907 solver.cpp:298]     Test net output #0: accuracy = 0.00028
I1010 17:52:00.188971 24907 solver.cpp:191] Iteration 4000, loss = 8.28462
"""


def test_real_caffe_log_agrees_on_thousands_of_classes(tmp_path: Path) -> None:
    log = tmp_path / "solver.log"
    log.write_text(CAFFE_1255)
    [f] = [f for f in diagnose(log).findings if f.id == "chance-level"]
    assert f.severity == "error" and f.evidence["num_classes_from"] == AGREE
    assert 3000 <= f.evidence["num_classes"] <= 4500


def test_train_accuracy_pairs_with_the_loss_and_a_learning_large_run_is_quiet() -> None:
    # an excerpt (from step 10000: no initial loss to infer C from) with only a train accuracy
    # logged beside the train loss: the pair still names C ≈ 5000
    stuck = [StepRecord(step=s, loss=8.52, accuracy=0.0002) for s in range(10_000, 10_024)]
    [f] = [f for f in replay(stuck, None, [LossTrendDetector()]) if f.id == "chance-level"]
    assert f.evidence["num_classes"] == round(2.718281828**8.52)
    # an ImageNet-size run that learned: 20 % accuracy at a loss of 3.5 names no C
    learning = [StepRecord(step=s, loss=3.5, accuracy=0.2) for s in range(1, 25)]
    assert "chance-level" not in {f.id for f in replay(learning, None, [LossTrendDetector()])}


# nin-cifar#1, epochs 2-4 only (an excerpt: no initial loss to infer C from, no accuracy): the
# train loss is 2.302585 = ln 10 to six digits on every line
NIN_EXCERPT = "".join(
    f"Train Epoch: {e} [{n}/50000 ({p}%)]\tLoss: 2.302585\tLR: 0.1\n"
    for e in (2, 3, 4)
    for n, p in ((0, 0), (12800, 26), (25600, 51), (38400, 77))
)


def test_real_loss_frozen_at_ln_c_is_chance_level(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    log.write_text(NIN_EXCERPT)
    [f] = [f for f in diagnose(log).findings if f.id == "chance-level"]
    assert f.severity == "error"
    assert f.evidence["num_classes"] == 10 and f.evidence["num_classes_from"] == FROZEN_LOSS


def test_near_miss_frozen_off_ln_c_or_moving_at_ln_c() -> None:
    def run(losses: list[float]) -> set[str]:
        recs = [StepRecord(step=1000 + 10 * i, loss=v) for i, v in enumerate(losses)]
        return {f.id for f in replay(recs, None, [LossTrendDetector()])}

    assert "chance-level" not in run([1.9] * 24)  # frozen (a dead net) but no ln(C)
    assert "chance-level" not in run([2.3026, 2.3027, 2.3025, 2.3026, 2.3024] * 5)  # moving
    assert "chance-level" not in run([2.3030] * 24)  # 4e-4 off ln 10: a coincidence
