"""Judge backend on any OpenAI-compatible chat-completions endpoint (``judge.backend=openai``).

Works with a vLLM server (``vllm serve prometheus-eval/prometheus-7b-v2.0`` ->
``http://localhost:8000/v1``), Ollama (``http://localhost:11434/v1``) or a hosted API. ``judge.client``:
the ``openai`` package (:mod:`.openai_sdk`; ``auto`` uses it when installed) or plain HTTP with the standard
library (here; ``auto``'s fallback). Either sends ``POST {base_url}/chat/completions`` with
``{"model", "messages", "temperature", "max_tokens"}``; ``Authorization: Bearer <key>`` when the
environment variable named by ``api_key_env`` is set and non-empty (local servers need none).

Failure handling, per request (never raises for a bad reply; returns None, which the judge counts
as an ``error``):

- ``timeout_s`` bounds each attempt as a whole (connect, headers and body): at the deadline its socket
  is shut down, so a server that trickles a byte at a time cannot hold it past the limit;
- connection errors, timeouts, HTTP 429 and 5xx are retried up to ``max_retries`` times, waiting
  ``backoff_s * 2**attempt`` seconds (or the server's ``Retry-After`` when longer, capped at 60 s);
- other HTTP errors (400, 401, 404, ...) and replies that are not chat-completions JSON are not
  retried;
- ``budget_s`` (null = none) bounds the whole run: no attempt or retry starts after it, none runs past
  it, and the requests it leaves unanswered are errors, reported in one warning.

At most ``max_concurrency`` requests are in flight at once (a thread pool of that size).
Loopback URLs (localhost, 127.0.0.1, ::1) bypass any HTTP proxy set in the environment.
"""

from __future__ import annotations

import http.client
import importlib.util
import json
import logging
import os
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from delift.evaluation.judge.config import OpenAIJudgeSettings
from delift.evaluation.judge.replies import Retryable, UnusableReply, extract_reply, retry_after

log = logging.getLogger(__name__)

Messages = Sequence[dict[str, str]]
MAX_WAIT_S = 60.0
LOOPBACK = {"localhost", "127.0.0.1", "::1"}


class _Deadline:
    """One attempt's deadline: when it passes, every socket the attempt opened is shut down (a blocked read
    then returns at once), so no server can hold the attempt longer, whatever its pace."""

    def __init__(self, seconds: float) -> None:
        self.expired = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._timer = threading.Timer(max(seconds, 0.0), self._expire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._timer.cancel()

    def watch(self, connection: http.client.HTTPConnection) -> http.client.HTTPConnection:
        """``connection``, with its socket registered as soon as it connects."""
        connect = connection.connect

        def connect_and_watch() -> None:
            connect()
            with self._lock:
                self._sockets.append(connection.sock)
                if self.expired:
                    _shut(connection.sock)
        connection.connect = connect_and_watch
        return connection

    def _expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)


def _shut(sock: socket.socket | None) -> None:
    try:
        if sock is not None:
            sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # already closed


def _complete_or_timed_out(payload: bytes, reason: str) -> str:
    try:
        return extract_reply(payload)
    except UnusableReply:
        raise Retryable(reason) from None


class _Watching:
    """Mixed into urllib's HTTP(S) handler: every connection it opens is handed to the attempt's deadline."""

    def __init__(self, deadline: _Deadline) -> None:
        super().__init__()
        self.deadline = deadline

    def do_open(self, http_class: Any, req: Any, **kwargs: Any) -> Any:
        return super().do_open(lambda host, **kw: self.deadline.watch(http_class(host, **kw)), req, **kwargs)


class _WatchedHTTP(_Watching, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPS(_Watching, urllib.request.HTTPSHandler):
    pass


def resolve_client(client: str) -> str:
    """``judge.client`` made concrete: ``auto`` is ``openai`` when that package is installed, else ``urllib``."""
    if client == "auto":
        return "openai" if importlib.util.find_spec("openai") is not None else "urllib"
    return client


class OpenAIJudgeBackend:
    """Sends each conversation as one chat-completions request; None for a request that failed."""

    def __init__(self, settings: OpenAIJudgeSettings) -> None:
        self.settings = settings
        self.url = settings.base_url.rstrip("/") + "/chat/completions"
        host = urllib.parse.urlsplit(self.url).hostname or ""
        self._proxies = [urllib.request.ProxyHandler({})] if host in LOOPBACK else []
        self.client = resolve_client(settings.client)
        self._sdk: Any = None
        if self.client == "openai":
            from delift.evaluation.judge.openai_sdk import make_client

            self._sdk = make_client(settings.base_url, self._api_key() or "", use_env_proxy=host not in LOOPBACK)
        self._run_deadline: float | None = None  # monotonic end of judge.budget_s, set by complete()

    def identity(self) -> dict[str, Any]:
        return {"backend": "openai", "base_url": self.settings.base_url, "model": self.settings.model}

    def generation_settings(self) -> dict[str, Any]:
        return {"max_tokens": self.settings.max_tokens, "temperature": float(self.settings.temperature)}

    def _api_key(self) -> str | None:
        return os.environ.get(self.settings.api_key_env) if self.settings.api_key_env else None

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _seconds_left(self) -> float:
        """Seconds one attempt may take now: ``timeout_s``, less when the run's budget ends sooner."""
        if self._run_deadline is None:
            return float(self.settings.timeout_s)
        return min(float(self.settings.timeout_s), self._run_deadline - time.monotonic())

    def _attempt(self, payload: dict[str, Any], seconds: float) -> str:
        if self._sdk is not None:
            from delift.evaluation.judge.openai_sdk import sdk_attempt

            return sdk_attempt(self._sdk, payload, seconds, self._timed_out(seconds))
        body = json.dumps(payload).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers=self._headers(), method="POST")
        deadline = _Deadline(seconds)
        opener = urllib.request.build_opener(*self._proxies, _WatchedHTTP(deadline), _WatchedHTTPS(deadline))
        try:
            with deadline, opener.open(request, timeout=seconds) as response:
                payload = response.read()
            if deadline.expired:  # the shut-down socket may end a read early without an error
                return _complete_or_timed_out(payload, self._timed_out(seconds))
        except TimeoutError:
            raise Retryable(self._timed_out(seconds)) from None
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:200] if exc.fp is not None else b""
            if exc.code == 429 or exc.code >= 500:
                raise Retryable(f"HTTP {exc.code}", retry_after(exc.headers)) from None
            raise UnusableReply(f"HTTP {exc.code}: {detail!r}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            if deadline.expired or isinstance(getattr(exc, "reason", None), TimeoutError):
                raise Retryable(self._timed_out(seconds)) from None
            reason = getattr(exc, "reason", exc)
            raise Retryable(f"{type(exc).__name__}: {reason}") from None
        return extract_reply(payload)

    def _timed_out(self, seconds: float) -> str:
        limit = float(self.settings.timeout_s)
        why = f"judge.timeout_s={limit:g}" if seconds >= limit else f"what judge.budget_s={self.settings.budget_s:g} left"
        return f"timed out: no complete reply within {seconds:.3g} s ({why} bounds the whole request)"

    def request(self, messages: Messages) -> str | None:
        """One conversation -> its reply text, or None after the retries (never raises for HTTP)."""
        s = self.settings
        payload = {"model": s.model, "messages": list(messages), "temperature": float(s.temperature),
                   "max_tokens": s.max_tokens}
        for attempt in range(s.max_retries + 1):
            seconds = self._seconds_left()
            if seconds <= 0:
                return None  # the run's budget is spent (complete() reports it)
            try:
                return self._attempt(payload, seconds)
            except UnusableReply as exc:
                log.warning("judge request to %s failed, not retried: %s", self.url, exc)
                return None
            except Retryable as exc:
                if attempt == s.max_retries:
                    log.warning("judge request to %s failed after %d attempts: %s", self.url, attempt + 1, exc)
                    return None
                wait = min(MAX_WAIT_S, max(s.backoff_s * 2 ** attempt, exc.retry_after or 0.0))
                if self._run_deadline is not None and time.monotonic() + wait >= self._run_deadline:
                    log.warning("judge request to %s failed, no retry within judge.budget_s=%g: %s", self.url,
                                s.budget_s, exc)
                    return None
                log.info("judge request: %s; retry %d/%d in %.1f s", exc, attempt + 1, s.max_retries, wait)
                time.sleep(wait)
        return None  # unreachable: the loop returns on its last attempt

    def complete(self, conversations: Sequence[Messages]) -> list[str | None]:
        """One reply (or None) per conversation, in order, ``max_concurrency`` requests at a time."""
        if not conversations:
            return []
        budget = self.settings.budget_s
        self._run_deadline = None if budget is None else time.monotonic() + float(budget)
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=min(self.settings.max_concurrency, len(conversations))) as pool:
            replies = list(pool.map(self.request, conversations))
        if budget is not None and time.monotonic() - started >= budget:
            log.warning("judge.budget_s=%g s spent on %d requests to %s: %d of them got no reply (counted as "
                        "judge errors)", budget, len(conversations), self.url, sum(r is None for r in replies))
        return replies
