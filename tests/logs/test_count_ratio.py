"""An accuracy printed as a count of a total (``Accuracy: 1000/10000 (10.00%)``, pytorch/examples'
``test()``) is the fraction they make (logs/readers/text.py), not the numerator."""

from __future__ import annotations

from pathlib import Path

import pytest

from stabletrain.logs.read import read_run

# nin-cifar#1 (r3 held-out, touched from session 4): a network stuck at 10 % on CIFAR-10
NIN_CIFAR_1 = """\
Train Epoch: 1 [0/50000 (0%)]\tLoss: 2.303388\tLR: 0.1
Train Epoch: 1 [38400/50000 (77%)]\tLoss: 2.302584\tLR: 0.1

Test set: Average loss: 2.9473, Accuracy: 1000/10000 (10.00%)

Train Epoch: 2 [0/50000 (0%)]\tLoss: 2.302585\tLR: 0.1
Train Epoch: 2 [38400/50000 (77%)]\tLoss: 2.302585\tLR: 0.1

Test set: Average loss: 2.9473, Accuracy: 1000/10000 (10.00%)

Train Epoch: 3 [0/50000 (0%)]\tLoss: 2.302585\tLR: 0.1
Train Epoch: 3 [38400/50000 (77%)]\tLoss: 2.302585\tLR: 0.1

Test set: Average loss: 2.9473, Accuracy: 1000/10000 (10.00%)
"""

# pytorch/examples mnist README-style output of a run that learned
MNIST = """\
Train Epoch: 1 [0/60000 (0%)]\tLoss: 2.299823
Train Epoch: 1 [59520/60000 (99%)]\tLoss: 0.089563

Test set: Average loss: 0.0461, Accuracy: 9848/10000 (98%)

Train Epoch: 2 [0/60000 (0%)]\tLoss: 0.043118
Train Epoch: 2 [59520/60000 (99%)]\tLoss: 0.010423

Test set: Average loss: 0.0325, Accuracy: 9893/10000 (99%)
"""


@pytest.mark.parametrize(("text", "want"), [(NIN_CIFAR_1, [0.1] * 3), (MNIST, [0.9848, 0.9893])])
def test_count_of_total_is_a_fraction(tmp_path: Path, text: str, want: list[float]) -> None:
    log = tmp_path / "log.txt"
    log.write_text(text)
    run = read_run(log)
    got = [r.eval_accuracy for r in run.records if r.eval_accuracy is not None]
    assert got == pytest.approx(want)
    assert "count of a total" in run.roles["Accuracy"]


def test_chance_level_from_the_count(tmp_path: Path) -> None:
    from stabletrain.doctor import diagnose

    log = tmp_path / "log.txt"
    log.write_text(NIN_CIFAR_1)
    [f] = [f for f in diagnose(log).findings if f.id == "chance-level"]
    assert f.evidence["num_classes"] == 10
