"""What the OpenAI-compatible judge clients (urllib and the ``openai`` package) share: the reply's text and
the two kinds of failure, so each client module imports this one and not the other."""

from __future__ import annotations

import json
from typing import Any


class Retryable(Exception):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class UnusableReply(Exception):
    """A failure another attempt will not fix (4xx, malformed reply)."""


def retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers is not None else None
    except (TypeError, ValueError):
        return None


def extract_reply(body: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions response; :class:`UnusableReply` otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise UnusableReply(f"not a chat-completions reply ({type(exc).__name__}): {body[:200]!r}") from None
    if not isinstance(content, str):
        raise UnusableReply(f"reply content is {type(content).__name__}, not text")
    return content
