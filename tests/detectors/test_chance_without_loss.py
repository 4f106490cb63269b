"""chance-level from accuracy alone, when no train-loss column was recognised: the finding's
explanation compared the final loss with the first loss bin, and there were none (IndexError,
exit 4). Found by bench/fuzz.py: a Chainer PrintReport log whose ``main/loss`` header was
mangled (a 400-digit number glued to it)."""

from __future__ import annotations

from pathlib import Path

from stabletrain.doctor import diagnose

ROWS = [
    (1, 2.46634, 2.30259, 0.0994882, 0.1),
    (2, 2.30347, 2.30259, 0.0998119, 0.1),
    (3, 2.30256, 2.30259, 0.099968, 0.1),
    (4, 2.30256, 2.30259, 0.100032, 0.1),
    (5, 2.30256, 2.30259, 0.099988, 0.1),
    (6, 2.30256, 2.30259, 0.100012, 0.1),
    (7, 2.30256, 2.30259, 0.100028, 0.1),
    (8, 2.30256, 2.30259, 0.099972, 0.1),
    (9, 2.30256, 2.30259, 0.100008, 0.1),
    (10, 2.30256, 2.30259, 0.099992, 0.1),
]


def test_chance_level_from_accuracy_with_no_train_loss(tmp_path: Path) -> None:
    head = "epoch       main/" + "9" * 400 + "loss   validation/main/loss  main/accuracy  "
    head += "validation/main/accuracy  elapsed_time"
    lines = [head] + [
        f"{e:<12}{a:<12}{b:<22}{c:<15}{d:<26}{e * 10.5:.2f}" for e, a, b, c, d in ROWS
    ]
    log = tmp_path / "log.txt"
    log.write_text("\n".join(lines) + "\n", encoding="utf-8")
    report = diagnose(log)
    chance = [f for f in report.findings if f.id == "chance-level"]
    assert chance and "accuracy 10.00%" in chance[0].title
