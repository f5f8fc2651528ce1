"""The ``openai`` package as the judge's HTTP client (``judge.client=openai``; ``auto`` picks it when installed:
``pip install 'delift[judge]'``). Same request, same reply parsing and the same failure rules as the standard-library
client in :mod:`delift.evaluation.judge.openai_backend`, which stays the fallback.

``timeout_s`` bounds each attempt as a whole here too: the call runs in a daemon thread that the caller stops
waiting for at the deadline (httpx's own timeouts bound each read, not the request); the abandoned call ends at its
next read timeout and never holds the process at exit.
"""

from __future__ import annotations

import threading
from typing import Any

from delift.evaluation.judge.replies import Retryable, UnusableReply, extract_reply, retry_after


def make_client(base_url: str, api_key: str, use_env_proxy: bool) -> Any:
    """An ``openai.OpenAI`` client that never retries on its own (the backend does) and, for a loopback URL,
    ignores the environment's proxies."""
    import httpx
    import openai

    return openai.OpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                         http_client=httpx.Client(trust_env=use_env_proxy))


def sdk_attempt(client: Any, payload: dict[str, Any], seconds: float, timed_out: str) -> str:
    """One chat-completions call with ``client`` -> the reply text; Retryable / UnusableReply like the urllib client."""
    import openai

    outcome: dict[str, Any] = {}

    def call() -> None:
        try:
            raw = client.chat.completions.with_raw_response.create(**payload, timeout=seconds)
            outcome["body"] = raw.http_response.read()
        except Exception as exc:  # noqa: BLE001 - handed to the caller's thread below
            outcome["error"] = exc

    worker = threading.Thread(target=call, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise Retryable(timed_out)
    exc = outcome.get("error")
    if exc is None:
        return extract_reply(outcome["body"])
    if isinstance(exc, openai.APITimeoutError):
        raise Retryable(timed_out)
    if isinstance(exc, openai.APIStatusError):
        code = exc.status_code
        if code == 429 or code >= 500:
            raise Retryable(f"HTTP {code}", retry_after(exc.response.headers))
        raise UnusableReply(f"HTTP {code}: {exc.response.content[:200]!r}")
    if isinstance(exc, openai.APIConnectionError):
        raise Retryable(f"{type(exc).__name__}: {exc}")
    raise exc
