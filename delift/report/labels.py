"""How a report writes config values and settings; the parts' own labels and orders: :mod:`delift.report.parts`."""

from __future__ import annotations

import json
from typing import Any

SPLITS = {"": "test", "existing": "existing task's test (forgetting)"}


def show(value: Any) -> str:
    """A config value as a table shows it (floats without trailing noise, None as null)."""
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (str, int)):
        return str(value)
    return json.dumps(value)


def setting_label(setting: dict[str, Any]) -> str:
    """``budget_fraction=0.25, data.name=alpaca`` ('' when nothing varies)."""
    return ", ".join(f"{k}={show(v)}" for k, v in setting.items())
