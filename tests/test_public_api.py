"""The package's public surface: ``__all__`` sorted and complete, lazy names visible to ``dir``."""

from __future__ import annotations

import subprocess
import sys

import stabletrain


def test_all_is_sorted_and_resolves() -> None:
    assert stabletrain.__all__ == sorted(stabletrain.__all__)
    for name in stabletrain.__all__:
        assert getattr(stabletrain, name) is not None


def test_dir_lists_lazy_names_without_importing_torch() -> None:
    code = (
        "import sys, stabletrain; names = dir(stabletrain); "
        "assert {'Guard', 'GuardConfig', 'RunLog', 'diagnose'} <= set(names), names; "
        "assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
