"""``loss-divergence`` from a sustained rise on a short log (detectors/trends.py): a per-epoch
loss that climbs at (nearly) every epoch since its best is a divergence once it is 5 % over the
best, where a noisy run needs a fifth of it. Real samples: keras#5239 and dino#246 (held-out logs
of the first collection and round 3, development data from session 4)."""

from __future__ import annotations

from pathlib import Path

from stabletrain.detectors.registry import replay
from stabletrain.detectors.trends import LossTrendDetector
from stabletrain.doctor import diagnose
from stabletrain.records import StepRecord

# keras#5239 (CIFAR-10 CNN): the train loss rises for five epochs after epoch 4
KERAS_5239 = """\
Epoch 1/200
50000/50000 [==============================] - 18s - loss: 1.5869 - acc: 0.4241 - val_loss: 1.2808 - val_acc: 0.5496
Epoch 2/200
50000/50000 [==============================] - 17s - loss: 1.2171 - acc: 0.5706 - val_loss: 1.0393 - val_acc: 0.6423
Epoch 3/200
50000/50000 [==============================] - 16s - loss: 1.1202 - acc: 0.6111 - val_loss: 0.9591 - val_acc: 0.6687
Epoch 4/200
50000/50000 [==============================] - 16s - loss: 1.0933 - acc: 0.6293 - val_loss: 0.9481 - val_acc: 0.6777
Epoch 5/200
50000/50000 [==============================] - 16s - loss: 1.1043 - acc: 0.6293 - val_loss: 0.9987 - val_acc: 0.6573
Epoch 6/200
50000/50000 [==============================] - 16s - loss: 1.1402 - acc: 0.6204 - val_loss: 1.0415 - val_acc: 0.6596
Epoch 7/200
50000/50000 [==============================] - 16s - loss: 1.1855 - acc: 0.6111 - val_loss: 1.1173 - val_acc: 0.6163
Epoch 8/200
50000/50000 [==============================] - 16s - loss: 1.2136 - acc: 0.6026 - val_loss: 1.1018 - val_acc: 0.6260
Epoch 9/200
50000/50000 [==============================] - 16s - loss: 1.2371 - acc: 0.5952 - val_loss: 1.1139 - val_acc: 0.6444
"""

# dino#246: the DINO loss climbs from its first epoch through the LR warmup (epoch 0-11)
DINO_246 = [10.379680, 10.469603, 10.634155, 10.584772, 10.629495, 10.688157, 10.751326,
            10.825131, 10.892325, 10.949983, 10.986122, 11.001527]  # fmt: skip


def _epochs(losses: list[float]) -> list[StepRecord]:
    return [StepRecord(step=e, epoch=e, loss=v) for e, v in enumerate(losses)]


def test_real_keras_loss_rising_epoch_after_epoch(tmp_path: Path) -> None:
    log = tmp_path / "console.txt"
    log.write_text(KERAS_5239)
    [f] = [f for f in diagnose(log).findings if f.id == "loss-divergence"]
    assert f.severity == "warning"  # 1.237 is still under the start 1.587
    assert f.evidence["best"] == 1.0933 and f.evidence["rising_bins"] == "5 of 5"


def test_real_dino_loss_rising_from_its_start() -> None:
    [f] = [f for f in replay(_epochs(DINO_246), None, [LossTrendDetector()])]
    assert f.id == "loss-divergence" and f.severity == "error"  # above where it started
    assert f.evidence["rising_bins"] == "10 of 11"
    assert "never went below its start" in f.explanation


def test_near_miss_rises_that_noise_makes() -> None:
    # a run that converged and wanders: up, down, up... 5 % over its best but not sustained
    wander = [2.0, 1.2, 1.0, 1.03, 1.01, 1.05, 1.02, 1.04, 1.05]
    # sustained but immaterial: +2 % over the best in six small steps
    tiny = [2.0, 1.2, 1.0, 1.003, 1.006, 1.01, 1.014, 1.017, 1.02]
    # sustained but too short: three epochs of rise after the best
    short = [2.0, 1.5, 1.2, 1.0, 1.1, 1.2, 1.3]
    # a rise that turned back down at the end (the last bin is not the highest)
    back = [2.0, 1.2, 1.0, 1.05, 1.1, 1.15, 1.2, 1.25, 1.1]
    for losses in (wander, tiny, short, back):
        found = {f.id for f in replay(_epochs(losses), None, [LossTrendDetector()])}
        assert "loss-divergence" not in found, losses
