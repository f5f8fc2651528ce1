"""The OpenAI-compatible judge client against a server that trickles its reply: timeout_s bounds each
request as a whole, budget_s the whole run; a timed-out request is a counted error naming the URL."""

from __future__ import annotations

import json
import logging
import socketserver
import threading
import time

import pytest

from delift.config.checks import ConfigError
from delift.config.loader import compose_config
from delift.evaluation.judge import judge_settings, run_judge

REPLY = json.dumps({"choices": [{"message": {"role": "assistant", "content": "[RESULT] 4"}}]}).encode()


class DripServer:
    """HTTP on 127.0.0.1 that sends its reply one byte every ``pace`` seconds (from the status line on when
    ``drip_headers``, else after sending the headers at once); ``pace=0`` answers at once."""

    def __init__(self, pace: float, drip_headers: bool = False):
        self.requests = 0
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                length = 0
                while (line := self.rfile.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                self.rfile.read(length)
                outer.requests += 1
                head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(REPLY)}\r\n"
                        "Connection: close\r\n\r\n").encode()
                if not drip_headers:
                    self.wfile.write(head)
                    self.wfile.flush()
                try:
                    for byte in (head if drip_headers else b"") + REPLY:
                        time.sleep(pace)
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    pass  # the client hung up

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.httpd = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def cfg(url: str, **extra) -> dict:
    return {"backend": "openai", "base_url": url, "model": "judge-m", "api_key_env": None, "client": "urllib",
            "timeout_s": 1,
            "max_retries": 0, "backoff_s": 0.01, "max_concurrency": 1, "max_tokens": 8, **extra}


@pytest.mark.parametrize("drip_headers", [False, True], ids=["slow-body", "slow-headers"])
def test_a_trickling_server_cannot_hold_a_request_past_timeout_s(caplog, drip_headers):
    with DripServer(pace=0.2, drip_headers=drip_headers) as server, caplog.at_level(logging.WARNING):
        started = time.monotonic()
        result = run_judge(["q"], ["r"], ["ref"], cfg(server.url))
        elapsed = time.monotonic() - started
    assert 0.9 < elapsed < 2.0, elapsed  # the reply needs > 10 s at this pace
    assert result.counts["judge_errors"] == 1 and server.requests == 1
    (warning,) = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"{server.url}/chat/completions" in warning and "judge.timeout_s=1 bounds the whole request" in warning


def test_a_quick_server_still_answers():
    with DripServer(pace=0.0) as server:
        assert run_judge(["q"], ["r"], ["ref"], cfg(server.url)).scores == [4.0]


def test_budget_s_bounds_the_whole_run_retries_included(caplog):
    with DripServer(pace=0.2) as server, caplog.at_level(logging.WARNING):
        started = time.monotonic()
        result = run_judge(["q"] * 4, [f"r{i}" for i in range(4)], ["ref"] * 4,
                           cfg(server.url, max_retries=3, budget_s=1.5))
        elapsed = time.monotonic() - started
    assert elapsed < 2.5, elapsed  # without the budget: 4 requests x 4 attempts x 1 s
    assert result.counts["judge_errors"] == 4 and server.requests == 2  # 1 s, then the 0.5 s the budget left
    assert f"judge.budget_s=1.5 s spent on 4 requests to {server.url}/chat/completions: 4 of them" in caplog.text


@pytest.mark.parametrize("value", [0, -1, "soon"])
def test_budget_s_is_checked_with_the_config(value):
    with pytest.raises(ValueError, match="judge.budget_s"):
        judge_settings(cfg("http://127.0.0.1:9/v1", budget_s=value))
    if value != "soon":
        with pytest.raises(ConfigError, match=r"judge.budget_s=-?\d.*null \(no limit\) or a number of seconds > 0"):
            compose_config(["experiment=smoke", "metrics=paper", "judge=openai", f"judge.budget_s={value}"])
