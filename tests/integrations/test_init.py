"""``stabletrain.integrations`` is light to import and names the extra to install."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stabletrain.integrations import require


def test_import_pulls_in_no_framework() -> None:
    code = (
        "import sys, stabletrain.integrations; "
        "print([m for m in ('transformers', 'lightning', 'accelerate') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_missing_framework_gives_install_hint() -> None:
    with pytest.raises(ImportError, match=r"pip install 'stabletrain\[lightning\]'"):
        require("stabletrain_no_such_framework", "lightning")
