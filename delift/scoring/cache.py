"""Per-example scores on disk: ``<root>/<family>/<batch>.npz``, keyed by content, written atomically.

A *family* is everything besides the example that fixes a score (model identity, adapter, kind of
score, shared prefix tokens, target token ids, code version); an *item key* is the sha256 of one
example's context and scored tokens. Each call stores the items it computed as one file of the
family; a lookup reads every file of the family, so a sweep over budgets or seeds (different pools
from one dataset) scores each example once. A file that cannot be read is a miss (and is reported).
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from delift.fsutil import atomic_write
from delift.scoring.layout import ScoringItem

log = logging.getLogger(__name__)

SCORING_CODE_VERSION = 1


def content_key(payload: Any) -> str:
    """sha256 of the canonical JSON of ``payload``."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def item_key(item: ScoringItem) -> str:
    return content_key([list(item.context), list(item.scored)])


class ScoreCache:
    """Values (1-d float64 arrays, any length) per item key, grouped in family folders under ``root``."""

    def __init__(self, root: str | Path | None):
        self.root = None if root is None else Path(root).expanduser()

    def _folder(self, family: dict[str, Any]) -> Path:
        return self.root / content_key({**family, "code_version": SCORING_CODE_VERSION})

    def lookup(self, family: dict[str, Any], keys: Sequence[str]) -> dict[str, np.ndarray]:
        """The cached values of those ``keys`` that any file of the family holds."""
        if self.root is None or not keys:
            return {}
        wanted, found = set(keys), {}
        folder = self._folder(family)
        for path in sorted(folder.glob("*.npz")) if folder.is_dir() else []:
            try:
                with np.load(path, allow_pickle=False) as data:
                    stored, values, offsets = list(data["keys"]), data["values"], data["offsets"]
                if len(offsets) != len(stored) + 1 or offsets[-1] != len(values) or not np.isfinite(values).all():
                    raise ValueError("inconsistent arrays")
            except Exception as exc:  # a damaged file is a miss; it is rewritten by the next store
                log.warning("score cache file %s is unreadable (%s: %s); its scores are recomputed",
                            path, type(exc).__name__, exc)
                continue
            for index, key in enumerate(stored):
                if key in wanted:
                    found[str(key)] = values[offsets[index]:offsets[index + 1]].copy()
        return found

    def store(self, family: dict[str, Any], keys: Sequence[str], values: Sequence[np.ndarray]) -> Path | None:
        """Write one file of the family holding ``values`` by ``keys``; None when caching is off or empty."""
        if self.root is None or not keys:
            return None
        arrays = [np.asarray(v, dtype=np.float64).reshape(-1) for v in values]
        offsets = np.cumsum([0] + [len(a) for a in arrays])
        folder = self._folder(family)
        path = folder / f"{content_key(sorted(keys))[:32]}.npz"
        atomic_write(path, lambda handle: np.savez(handle, keys=np.array(list(keys)), offsets=offsets,
                                                   values=np.concatenate(arrays) if arrays else np.zeros(0)))
        if not (folder / "family.json").exists():
            atomic_write(folder / "family.json", lambda handle: handle.write(json.dumps(family, indent=2,
                                                                                          default=str).encode()))
        return path
