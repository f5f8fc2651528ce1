"""The one record every dataset is mapped to, and its content fingerprint."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable


@dataclass(frozen=True)
class Example:
    """One instruction example. ``output`` is the reference response."""

    id: str
    instruction: str
    input: str
    output: str
    source: str
    metadata: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fingerprint(examples: Iterable[Example]) -> str:
    """sha256 over the ids and texts of ``examples`` in order (metadata excluded)."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(json.dumps([ex.id, ex.instruction, ex.input, ex.output]).encode())
        digest.update(b"\n")
    return digest.hexdigest()
