"""Configs embedded in the package, so ``stabletrain demo`` works from an installed wheel.

Each mirrors a file in ``configs/`` (a test checks they validate to the same config): the YAML
files are what users copy and edit; these are what the demo runs.
"""

from __future__ import annotations

from typing import Any

#: configs/digits-cnn.yaml — the stable reference run.
DIGITS_CNN: dict[str, Any] = {
    "run": {"name": "digits-cnn", "seed": 0},
    "data": {"name": "digits", "batch_size": 64, "val_fraction": 0.2},
    "model": {"name": "cnn", "cnn": {"channels": [16, 32, 64], "hidden": 128, "dropout": 0.1}},
    "optim": {"name": "adamw", "lr": 3.0e-3, "betas": [0.9, 0.999], "weight_decay": 0.01},
    "schedule": {"name": "cosine", "warmup_ratio": 0.05, "min_lr": 1.0e-4},
    "train": {"epochs": 8, "precision": "fp32", "max_grad_norm": 1.0},
    "guard": {"preset": "default"},
}

#: configs/unstable-digits.yaml — the same CNN fed NaN and 1e6-scaled batches at a high LR:
#: without the guard (preset off = plain clip + step) the weights turn NaN; with it the bad steps
#: are skipped and the run ends above 90%.
UNSTABLE_DIGITS: dict[str, Any] = {
    "run": {"name": "unstable-digits", "seed": 0},
    "data": {
        "name": "digits",
        "batch_size": 64,
        "corrupt": {"nan_batches": [30, 75], "scale_batches": [50, 100], "scale": 1.0e6},
    },
    "model": {"name": "cnn"},
    "optim": {"name": "adam", "lr": 5.0e-3},
    "schedule": {"name": "constant"},
    "train": {"epochs": 6, "max_grad_norm": 1.0},
    "guard": {"preset": "default"},
}
