"""JSON rendering of a Report, for CI gates and other tools (strict JSON, no NaN literals).

The top-level ``change_set`` is the one set of config changes to apply (``report.changeset``):
``{"cause", "changes": {key: value}, "reasons", "alternatives", "dropped", "actions",
"base_lr", "base_lr_source"}``; each finding's own ``fix`` list stays as evidence.
"""

from __future__ import annotations

import json

from stabletrain.report.model import Report


def render(report: Report, *, indent: int | None = 2) -> str:
    """The report as a strict-JSON string (non-finite numbers are encoded as strings)."""
    return json.dumps(report.to_json(), indent=indent, allow_nan=False) + "\n"
