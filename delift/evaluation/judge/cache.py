"""On-disk cache of judge replies, keyed by what determines a reply.

``key = sha256(json({judge identity, messages, generation settings}))``: the judge model's
identity (backend, model id and, for local models, the resolved revision or folder fingerprint),
the full chat messages (so any change to the rubric or prompt is a new key) and the decoding
settings. The raw reply text is stored, not the score, so a parser change applies to cached
replies too. Only replies that parse to a valid verdict (status ``ok``) are cached, never failures:
a timed-out request, a reply without ``[RESULT] n`` or with a score out of range is sent again next
run (a misconfigured or broken judge server must not poison the cache). A stored reply that does
not parse to a valid verdict (written before this rule, or after a parser change) is a miss.

One JSON file per key (``<folder>/<key[:2]>/<key>.json``), written atomically; a file that cannot
be read, is not JSON, or holds another key is a miss (and is overwritten on the next store).
Caveat for the ``openai`` backend: the identity is the endpoint and model name; if the server
swaps the weights behind the same name, clear the cache folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from delift.evaluation.judge.parsing import OK, parse_verdict
from delift.fsutil import write_json

log = logging.getLogger(__name__)


def cacheable(reply: str | None) -> bool:
    """Whether ``reply`` may be cached and reused: it parses to a valid verdict."""
    return reply is not None and parse_verdict(reply).status == OK


def verdict_key(identity: Mapping[str, Any], messages: Sequence[Mapping[str, str]],
                settings: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of (identity, messages, settings)."""
    payload = {"identity": dict(identity), "messages": [dict(m) for m in messages], "settings": dict(settings)}
    text = json.dumps(payload, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class VerdictCache:
    """Replies by key under ``folder``; ``folder=None`` disables caching (every lookup misses)."""

    def __init__(self, folder: str | Path | None) -> None:
        self.folder = Path(folder).expanduser() if folder is not None else None

    def _path(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / key[:2] / f"{key}.json"

    def get(self, key: str) -> str | None:
        """The cached reply for ``key``, or None (absent, unreadable, corrupt or not a valid verdict)."""
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.exists():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            log.warning("judge cache: ignoring unreadable entry %s (%s)", path, exc)
            return None
        if not isinstance(entry, dict) or entry.get("key") != key or not isinstance(entry.get("reply"), str):
            log.warning("judge cache: ignoring malformed entry %s", path)
            return None
        if not cacheable(entry["reply"]):
            log.debug("judge cache: %s holds no valid verdict; asking again", path)
            return None
        return entry["reply"]

    def put(self, key: str, reply: str, identity: Mapping[str, Any]) -> None:
        """Store ``reply`` under ``key`` (atomic; the identity is kept for people reading the file).

        A reply that is not :func:`cacheable` is not stored.
        """
        if self.folder is None or not cacheable(reply):
            return
        write_json(self._path(key), {"key": key, "identity": dict(identity), "reply": reply})
