"""The judge's client from the ``openai`` package (the ``judge`` extra) against the same local servers as the
standard-library client: same request body, auth, retries, failures and whole-request timeout."""

from __future__ import annotations

import importlib.util
import logging
import time

import pytest
from test_judge import FakeServer, completion, openai_cfg
from test_judge_deadline import DripServer

from delift.evaluation.judge import build_messages, judge_settings, run_judge
from delift.evaluation.judge.openai_backend import resolve_client


def test_auto_picks_the_package_when_installed_else_the_standard_library(monkeypatch):
    installed = importlib.util.find_spec("openai") is not None
    assert resolve_client("auto") == ("openai" if installed else "urllib")
    assert resolve_client("urllib") == "urllib"
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openai" else object())
    assert resolve_client("auto") == "urllib"
    with pytest.raises(ValueError, match=r"judge.client=openai: the openai package is not installed; "
                                         r"pip install 'delift\[judge\]'"):
        judge_settings(openai_cfg("http://127.0.0.1:9/v1", client="openai"))
    with pytest.raises(ValueError, match="judge.client='requests'"):
        judge_settings(openai_cfg("http://127.0.0.1:9/v1", client="requests"))


def sdk_cfg(url, **extra):
    pytest.importorskip("openai")  # the judge extra: pip install 'delift[judge]'
    return openai_cfg(url, client="openai", **extra)


def test_sdk_request_body_and_auth_header(monkeypatch):
    monkeypatch.setenv("DELIFT_TEST_JUDGE_KEY", "sekrit")
    with FakeServer(lambda n, body: (200, completion("Spot on. [RESULT] 5"), 0)) as server:
        result = run_judge(["Add 2 and 3."], ["5"], ["The sum is 5."], sdk_cfg(server.url + "/"))
    assert result.scores == [5.0]
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions" and request["headers"]["Authorization"] == "Bearer sekrit"
    assert request["body"] == {"model": "judge-m", "messages": build_messages("Add 2 and 3.", "5", "The sum is 5."),
                               "temperature": 0.0, "max_tokens": 64}


def test_sdk_without_key_sends_no_auth_header(monkeypatch):
    monkeypatch.delenv("DELIFT_TEST_JUDGE_KEY", raising=False)
    with FakeServer(lambda n, body: (200, completion("[RESULT] 3"), 0)) as server:
        assert run_judge(["q"], ["r"], ["ref"], sdk_cfg(server.url)).scores == [3.0]
    assert "Authorization" not in server.requests[0]["headers"]


def test_sdk_retries_follow_the_same_rules():  # failures: test_judge.py, parametrised by client
    replies = [(500, {"error": "boom"}, 0), (429, {"error": "slow down"}, 0), (200, completion("[RESULT] 4"), 0)]
    with FakeServer(lambda n, body: replies[n]) as server:
        assert run_judge(["q"], ["r"], ["ref"], sdk_cfg(server.url)).scores == [4.0] and len(server.requests) == 3


def test_sdk_timeout_bounds_the_whole_request(caplog):
    with DripServer(pace=0.2) as server, caplog.at_level(logging.WARNING):
        started = time.monotonic()
        result = run_judge(["q"], ["r"], ["ref"], sdk_cfg(server.url, timeout_s=1, max_retries=0))
        elapsed = time.monotonic() - started
    assert elapsed < 2.0 and result.counts["judge_errors"] == 1
    assert f"{server.url}/chat/completions" in caplog.text and "judge.timeout_s=1 bounds the whole request" in caplog.text
