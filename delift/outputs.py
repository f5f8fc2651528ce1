"""Writing a run's result files atomically: metrics.json, subset.json, predictions.jsonl."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

from delift.fsutil import atomic_write


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def write_json(path: Path, data: Any) -> Path:
    return write_atomic(path, json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    return write_atomic(path, "".join(json.dumps(row, ensure_ascii=False, default=str) + "\n" for row in rows))


def metric_key(evaluation: str, split: str, metric: str) -> str:
    """The metrics.json key of one score: ``<evaluation>[/<split>]/<metric>``."""
    return f"{evaluation}/{split}/{metric}" if split else f"{evaluation}/{metric}"
