"""Writing a run's result files atomically: metrics.json, subset.json, predictions.jsonl."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Iterable

from delift.fsutil import atomic_write


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Strict JSON (NaN and inf become null), indented."""
    return write_atomic(path, json.dumps(json_safe(data), indent=2, sort_keys=False, default=str,
                                         allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One strict-JSON object per line (NaN and inf become null)."""
    return write_atomic(path, "".join(json.dumps(json_safe(row), ensure_ascii=False, default=str, allow_nan=False)
                                      + "\n" for row in rows))


def metric_key(evaluation: str, split: str, metric: str) -> str:
    """The metrics.json key of one score: ``<evaluation>[/<split>]/<metric>``."""
    return f"{evaluation}/{split}/{metric}" if split else f"{evaluation}/{metric}"
