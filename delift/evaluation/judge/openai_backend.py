"""Judge backend on any OpenAI-compatible chat-completions endpoint (``judge.backend=openai``).

Works with a vLLM server (``vllm serve prometheus-eval/prometheus-7b-v2.0`` ->
``http://localhost:8000/v1``), Ollama (``http://localhost:11434/v1``) or a hosted API. Plain HTTP
with the standard library: ``POST {base_url}/chat/completions`` with
``{"model", "messages", "temperature", "max_tokens"}``; ``Authorization: Bearer <key>`` when the
environment variable named by ``api_key_env`` is set and non-empty (local servers need none).

Failure handling, per request (never raises for a bad reply; returns None, which the judge counts
as an ``error``):

- connection errors, timeouts, HTTP 429 and 5xx are retried up to ``max_retries`` times, waiting
  ``backoff_s * 2**attempt`` seconds (or the server's ``Retry-After`` when longer, capped at 60 s);
- other HTTP errors (400, 401, 404, ...) and replies that are not chat-completions JSON are not
  retried.

At most ``max_concurrency`` requests are in flight at once (a thread pool of that size).
Loopback URLs (localhost, 127.0.0.1, ::1) bypass any HTTP proxy set in the environment.
"""

from __future__ import annotations

import http.client
import json
import logging
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from delift.evaluation.judge.config import OpenAIJudgeSettings

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]
MAX_WAIT_S = 60.0
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class _Retryable(Exception):
    """A failure worth another attempt (connection, timeout, 429, 5xx)."""

    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A failure another attempt will not fix (4xx, malformed reply)."""


def _retry_after(headers: Any) -> float | None:
    try:
        return float(headers.get("Retry-After")) if headers is not None else None
    except (TypeError, ValueError):
        return None


def extract_reply(body: bytes) -> str:
    """``choices[0].message.content`` of a chat-completions response; :class:`_Fatal` otherwise."""
    try:
        data = json.loads(body.decode("utf-8"))
        content = data["choices"][0]["message"]["content"]
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, IndexError, TypeError) as exc:
        raise _Fatal(f"not a chat-completions reply ({type(exc).__name__}): {body[:200]!r}") from None
    if not isinstance(content, str):
        raise _Fatal(f"reply content is {type(content).__name__}, not text")
    return content


class OpenAIJudgeBackend:
    """Sends each conversation as one chat-completions request; None for a request that failed."""

    def __init__(self, settings: OpenAIJudgeSettings) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        host = urllib.parse.urlsplit(self.url).hostname or ""
        handlers = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.settings.base_url, "model": self.settings.model}

    def generation_settings(self) -> dict[str, Any]:
        return {"max_tokens": self.settings.max_tokens, "temperature": float(self.settings.temperature)}

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _attempt(self, body: bytes) -> str:
        request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        try:
            with self._opener.open(request, timeout=self.settings.timeout_s) as response:
                payload = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200] if exc.fp is not None else b""
            if exc.code == 429 or exc.code >= 500:
                raise _Retryable(f"HTTP {exc.code}", _retry_after(exc.headers)) from None
            raise _Fatal(f"HTTP {exc.code}: {detail!r}") from None
        except (urllib.error.URLError, http.client.HTTPException, TimeoutError, ConnectionError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"{type(exc).__name__}: {reason}") from None
        return extract_reply(payload)

    def request(self, messages: Messages) -> str | None:
        """One conversation -> its reply text, or None after the retries (never raises for HTTP)."""
        s = self.settings
        body = json.dumps({"model": s.model, "messages": list(messages), "temperature": float(s.temperature),
                           "max_tokens": s.max_tokens}).encode("utf-8")
        for attempt in range(s.max_retries + 1):
            try:
                return self._attempt(body)
            except _Fatal as exc:
                log.warning("judge request to %s failed, not retried: %s", self.url, exc)
                return None
            except _Retryable as exc:
                if attempt == s.max_retries:
                    log.warning("judge request to %s failed after %d attempts: %s", self.url, attempt + 1, exc)
                    return None
                wait = min(MAX_WAIT_S, max(s.backoff_s * 2 ** attempt, exc.retry_after or 0.0))
                log.info("judge request: %s; retry %d/%d in %.1f s", exc, attempt + 1, s.max_retries, wait)
                time.sleep(wait)
        return None  # unreachable: the loop returns on its last attempt

    def complete(self, conversations: Sequence[Messages]) -> list[str | None]:
        """One reply (or None) per conversation, in order, ``max_concurrency`` requests at a time."""
        if not conversations:
            return []
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(conversations))) as pool:
            return list(pool.map(self.request, conversations))
