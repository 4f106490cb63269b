"""The HF callback's only access to accelerate internals (integrations/accelerated_optimizer.py),
on a real ``Accelerator``-prepared optimizer: the skip flag the Trainer reads, and a clear error
instead of a silently advancing schedule when accelerate renames what it relies on."""

from __future__ import annotations

import pytest
import torch

accelerate = pytest.importorskip("accelerate")

from stabletrain.errors import ConfigError  # noqa: E402
from stabletrain.integrations.accelerated_optimizer import mark_skipped, swap_inner  # noqa: E402

pytestmark = pytest.mark.hf


def _prepared() -> tuple[object, torch.optim.Optimizer]:
    model = torch.nn.Linear(4, 2)
    acc = accelerate.Accelerator(cpu=True).prepare(torch.optim.SGD(model.parameters(), lr=0.1))
    return acc, torch.optim.SGD(model.parameters(), lr=0.1)


def test_the_skip_flag_is_what_step_was_skipped_reads() -> None:
    acc, other = _prepared()
    swap_inner(acc, other)
    assert acc.optimizer is other
    mark_skipped(acc, True)
    assert acc.step_was_skipped
    mark_skipped(acc, False)  # no scaler: nobody else resets it
    assert not acc.step_was_skipped


def test_a_renamed_internal_fails_at_the_swap_naming_the_version() -> None:
    acc, other = _prepared()
    del acc._is_overflow  # as if accelerate renamed it
    with pytest.raises(ConfigError, match=f"accelerate {accelerate.__version__}.*_is_overflow"):
        swap_inner(acc, other)
