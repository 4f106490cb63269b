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


@pytest.mark.parametrize(
    ("adapter", "framework", "extra"),
    [("hf", "transformers", "hf"), ("lightning", "lightning", "lightning"),
     ("accelerate", "accelerate", "hf")],
)  # fmt: skip
def test_every_adapter_without_its_framework_raises_the_install_hint(
    adapter: str, framework: str, extra: str
) -> None:
    code = (
        f"import sys; sys.modules[{framework!r}] = None\n"  # as if not installed
        f"try:\n    import stabletrain.integrations.{adapter}\n"
        "except ImportError as e:\n    print('ImportError:', e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert f"ImportError: stabletrain.integrations needs {framework!r}" in out.stdout
    assert f"pip install 'stabletrain[{extra}]'" in out.stdout
