"""LLM judge: prompt, parser, cache, config, the hf backend (tiny model) and the openai backend
against a real HTTP server on 127.0.0.1."""

from __future__ import annotations

import json
import math
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delift.evaluation.judge import (
    DIMENSIONS,
    build_messages,
    build_prompt,
    instruction_text,
    judge_identity,
    judge_settings,
    parse_verdict,
    run_judge,
)
from delift.evaluation.judge.cache import VerdictCache, verdict_key
from delift.evaluation.judge.prompt import SYSTEM_TEXT

CONF_JUDGE = Path(__file__).resolve().parents[1] / "conf" / "judge"
EIGHT = ["Instruction Following", "Accuracy", "Relevance", "Completeness", "Depth", "Clarity", "Creativity",
         "Helpfulness"]


# --- parser ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply,status,score", [
    ("Clear and correct. [RESULT] 4", "ok", 4.0),
    ("Feedback: fine\n[RESULT] 5\n", "ok", 5.0),
    ("[RESULT]: 4", "ok", 4.0),
    ("[RESULT] 4/5", "ok", 4.0),
    ("[RESULT] 3 out of 5", "ok", 3.0),
    ("**[RESULT] 4**", "ok", 4.0),
    ("[RESULT] **2**", "ok", 2.0),
    ("**[RESULT]:** 3", "ok", 3.0),
    ("[result] 1", "ok", 1.0),
    ("[ RESULT ] 5", "ok", 5.0),
    ("[RESULT 2]", "ok", 2.0),
    ("[RESULT: 3]", "ok", 3.0),
    ("[RESULT] (4)", "ok", 4.0),
    ("[RESULT] Score: 5.", "ok", 5.0),
    ("[RESULT] - 4", "ok", 4.0),
    ("[RESULT] 4. I hope this helps, and 1 2 3 more numbers", "ok", 4.0),  # trailing text ignored
    ("[RESULT] 3\nOn reflection, [RESULT] 2", "ok", 2.0),                   # the last marker wins
    ("Use the form [RESULT] (an integer from 1 to 5). Verdict: [RESULT] 5", "ok", 5.0),
    ("[RESULT] 5 ... restating the format: [RESULT]", "ok", 5.0),          # markers without a number ignored
    ("[RESULT] 4.5", "ok", 4.5),                                            # decimals kept as they are
    ("[RESULT] 4.0", "ok", 4.0),
    ("[RESULT] 0", "out_of_range", None),
    ("[RESULT] 6", "out_of_range", None),
    ("[RESULT] 10", "out_of_range", None),
    ("[RESULT] -1", "out_of_range", None),
    ("[RESULT] 5.5", "out_of_range", None),
    ("[RESULT] 8/10", "out_of_range", None),                                # another scale: never rescaled
    ("[RESULT] 4 out of 10", "out_of_range", None),
    ("The response deserves a 4.", "parse_failure", None),                  # no marker: no guessing
    ("Score: 4", "parse_failure", None),
    ("[RESULT] four", "parse_failure", None),
    ("[RESULT] (an integer from 1 to 5)", "parse_failure", None),
    ("[RESULTS] 4", "parse_failure", None),
    ("", "parse_failure", None),
    (None, "error", None),
])
def test_parser_edge_cases(reply, status, score):
    verdict = parse_verdict(reply)
    assert verdict.status == status
    assert verdict.score == score
    assert verdict.raw == reply
    assert (verdict.value == score) if score is not None else math.isnan(verdict.value)


# --- prompt ---------------------------------------------------------------------------------------

def test_prompt_holds_everything_the_judge_needs():
    prompt = build_prompt("Add 2 and 3.", "It is five.", "The sum is 5.")
    assert list(DIMENSIONS) == EIGHT
    for text in ["Add 2 and 3.", "It is five.", "The sum is 5.", "[RESULT]", "Reference Answer (Score 5)",
                 *EIGHT, *(f"Score {n}:" for n in range(1, 6))]:
        assert text in prompt, text
    order = [prompt.index(t) for t in ("Add 2 and 3.", "It is five.", "The sum is 5.", "Score Rubrics")]
    assert order == sorted(order)
    assert prompt.rstrip().endswith("###Feedback:")

    merged = build_messages("i", "r", "ref")
    assert [m["role"] for m in merged] == ["user"] and merged[0]["content"].startswith(SYSTEM_TEXT)
    split = build_messages("i", "r", "ref", system_message=True)
    assert [m["role"] for m in split] == ["system", "user"] and split[1]["content"] == build_prompt("i", "r", "ref")
    assert instruction_text(" Sum these. ", "1, 2") == "Sum these.\n\nInput:\n1, 2"
    assert instruction_text("Sum these.", "  ") == instruction_text("Sum these.") == "Sum these."


# --- stub backend, cache ----------------------------------------------------------------------------

class StubBackend:
    """Returns canned replies in order and counts what it was asked."""

    def __init__(self, replies, identity=None):
        self.replies = list(replies)
        self.calls: list[list] = []
        self._identity = identity or {"backend": "stub", "model": "stub-1"}

    def identity(self):
        return dict(self._identity)

    def generation_settings(self):
        return {"max_tokens": 8, "temperature": 0.0}

    def complete(self, conversations):
        self.calls.append(list(conversations))
        out, self.replies = self.replies[:len(conversations)], self.replies[len(conversations):]
        return out


HF_CFG = {"backend": "hf", "model": "stub-1"}


def test_stub_replies_parse_and_counts_add_up():
    replies = ["Good. [RESULT] 4", "[RESULT] 9", "no verdict here", None, "**[RESULT]: 2**"]
    result = run_judge(["q"] * 5, [f"r{i}" for i in range(5)], ["ref"] * 5, HF_CFG, backend=StubBackend(replies))
    assert result.scores[0] == 4.0 and result.scores[4] == 2.0
    assert all(math.isnan(s) for s in result.scores[1:4])
    assert [v.status for v in result.verdicts] == ["ok", "out_of_range", "parse_failure", "error", "ok"]
    assert result.counts == {"judge_n": 5, "judge_valid": 2, "judge_parse_failures": 1, "judge_out_of_range": 1,
                             "judge_errors": 1}


def test_identical_prompts_are_sent_once():
    backend = StubBackend(["[RESULT] 3", "[RESULT] 5"])
    result = run_judge(["q", "q", "q2"], ["r", "r", "r"], ["ref"] * 3, HF_CFG, backend=backend)
    assert len(backend.calls[0]) == 2 and result.scores == [3.0, 3.0, 5.0]


def test_cache_hit_skips_the_backend_and_corrupt_entry_is_a_miss(tmp_path):
    cfg = {**HF_CFG, "cache_dir": str(tmp_path)}
    args = (["q1", "q2"], ["r1", "r2"], ["ref1", "ref2"])
    first = StubBackend(["[RESULT] 4", None])  # the failed request must not be cached
    assert run_judge(*args, cfg, backend=first).counts["judge_errors"] == 1
    second = StubBackend(["[RESULT] 2"])
    result = run_judge(*args, cfg, backend=second)
    assert result.scores == [4.0, 2.0] and result.cache_hits == 1
    assert len(second.calls) == 1 and len(second.calls[0]) == 1  # only the example that failed before
    third = StubBackend([])
    assert run_judge(*args, cfg, backend=third).scores == [4.0, 2.0] and third.calls == []

    files = sorted((tmp_path / "verdicts").rglob("*.json"))
    assert len(files) == 2
    files[0].write_text('{"key": "trunc')  # a torn/corrupt entry: a miss, then rewritten
    files[1].write_text(json.dumps({"key": "someone-else", "reply": "[RESULT] 1"}))  # wrong key: a miss
    fourth = StubBackend(["[RESULT] 5", "[RESULT] 5"])
    assert run_judge(*args, cfg, backend=fourth).scores == [5.0, 5.0] and len(fourth.calls[0]) == 2
    assert run_judge(*args, cfg, backend=StubBackend([])).scores == [5.0, 5.0]

    other_model = StubBackend(["[RESULT] 1", "[RESULT] 1"], identity={"backend": "stub", "model": "stub-2"})
    assert run_judge(*args, cfg, backend=other_model).scores == [1.0, 1.0]  # another judge: other keys


def test_invalid_replies_are_not_cached_and_old_invalid_entries_are_misses(tmp_path):
    cfg = {**HF_CFG, "cache_dir": str(tmp_path)}
    args = (["q"] * 4, ["r1", "r2", "r3", "r4"], ["ref"] * 4)
    broken = StubBackend(["no verdict", "[RESULT] 7", None, "[RESULT] 4"])
    assert [v.status for v in run_judge(*args, cfg, backend=broken).verdicts] == [
        "parse_failure", "out_of_range", "error", "ok"]
    assert len(list((tmp_path / "verdicts").rglob("*.json"))) == 1  # only the valid verdict
    fixed = StubBackend(["[RESULT] 1", "[RESULT] 2", "[RESULT] 3"])
    result = run_judge(*args, cfg, backend=fixed)
    assert result.scores == [1.0, 2.0, 3.0, 4.0] and result.cache_hits == 1 and len(fixed.calls[0]) == 3

    # entries written before this rule (or before a parser change) that hold no valid verdict: misses
    cache = VerdictCache(tmp_path / "verdicts")
    cache.put("k" * 64, "no verdict", {"model": "stub-1"})
    assert cache.get("k" * 64) is None and not list(tmp_path.rglob("kkkk*.json"))  # put refuses it
    for path in (tmp_path / "verdicts").rglob("*.json"):
        entry = json.loads(path.read_text())
        path.write_text(json.dumps({**entry, "reply": "[RESULT] 6"}))
    again = StubBackend(["[RESULT] 5"] * 4)
    result = run_judge(*args, cfg, backend=again)
    assert result.scores == [5.0] * 4 and result.cache_hits == 0 and len(again.calls[0]) == 4


def test_cache_key_covers_identity_messages_and_settings(tmp_path):
    ident, msgs, settings = {"model": "a"}, build_messages("i", "r", "ref"), {"temperature": 0.0}
    key = verdict_key(ident, msgs, settings)
    assert len(key) == 64 and key == verdict_key(dict(ident), [dict(m) for m in msgs], dict(settings))
    assert key != verdict_key({"model": "b"}, msgs, settings)
    assert key != verdict_key(ident, build_messages("i", "r2", "ref"), settings)
    assert key != verdict_key(ident, msgs, {"temperature": 0.5})
    cache = VerdictCache(tmp_path)
    assert cache.get(key) is None
    cache.put(key, "[RESULT] 3", ident)
    assert cache.get(key) == "[RESULT] 3"
    assert not list(tmp_path.rglob("*.tmp"))
    assert VerdictCache(None).get(key) is None


# --- config ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", sorted(CONF_JUDGE.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_judge_config_validates(path):
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    settings = judge_settings({**cfg, "cache_dir": "/tmp/x", "progress": False})
    assert settings.backend == path.stem
    assert settings.model == "prometheus-eval/prometheus-7b-v2.0"
    assert judge_identity(cfg)["plumbing_only"] is False


def test_bad_judge_config_names_the_key():
    with pytest.raises(ValueError, match=r"judge\.backend='vllm'"):
        judge_settings({"backend": "vllm"})
    with pytest.raises(ValueError, match=r"judge\.base_url"):
        judge_settings({"backend": "openai", "base_url": "localhost:8000"})
    with pytest.raises(ValueError, match=r"judge\.max_concurrency"):
        judge_settings({"backend": "openai", "max_concurrency": 0})
    with pytest.raises(ValueError, match=r"judge\.model_source"):
        judge_settings({"backend": "hf", "model_source": "ftp"})
    with pytest.raises(ValueError, match=r"judge\.base_url: unknown key for judge\.backend=hf"):
        judge_settings({"backend": "hf", "base_url": "http://x"})


def test_identity_flags_tiny_random_judges():
    assert judge_identity({"backend": "hf", "model": "x", "model_source": "tiny_random"})["plumbing_only"] is True
    assert judge_identity({"backend": "hf", "model": "hf-internal-testing/tiny-random-LlamaForCausalLM"})[
        "plumbing_only"] is True
    assert judge_identity({"backend": "openai", "model": "HuggingFaceTB/SmolLM2-135M-Instruct"})["plumbing_only"]
    ident = judge_identity({"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m"})
    assert ident == {"backend": "openai", "model": "m", "base_url": "http://127.0.0.1:9/v1", "plumbing_only": False}


# --- hf backend on the tiny random model ----------------------------------------------------------------

def test_hf_backend_on_tiny_model_never_crashes_and_counts(tmp_path):
    cfg = {"backend": "hf", "model": "tiny", "model_source": "tiny_random", "max_new_tokens": 12,
           "batch_size": 2, "cache_dir": str(tmp_path)}
    instructions = ["Add 2 and 3.", "Name a colour.", "Say hi."]
    result = run_judge(instructions, ["5", "Blue", "hi"], ["The sum is 5.", "Red.", "Hello."], cfg)
    counts = result.counts
    assert counts["judge_n"] == 3 and counts["judge_errors"] == 0  # a local model always replies
    assert counts["judge_valid"] + counts["judge_parse_failures"] + counts["judge_out_of_range"] == 3
    for verdict, score in zip(result.verdicts, result.scores):
        assert isinstance(verdict.raw, str)
        assert (1 <= score <= 5) if verdict.status == "ok" else math.isnan(score)
    assert result.plumbing_only and result.identity["source"] == "tiny_random"
    # second run: valid verdicts from the cache, the rest (a random model rarely says [RESULT] n) asked
    # again; greedy decoding gives the same replies
    again = run_judge(instructions, ["5", "Blue", "hi"], ["The sum is 5.", "Red.", "Hello."], cfg)
    assert again.cache_hits == counts["judge_valid"] and [v.raw for v in again.verdicts] == [v.raw for v in
                                                                                             result.verdicts]


def test_hf_backend_uses_the_chat_template_or_falls_back(tmp_path):
    from delift.evaluation.judge.hf_backend import HFJudgeBackend
    from delift.models.loading import load_tokenizer

    backend = HFJudgeBackend(judge_settings({"backend": "hf", "model": "tiny", "model_source": "tiny_random"}),
                             tmp_path)
    backend._tokenizer = load_tokenizer(backend.spec)
    messages = build_messages("i", "r", "ref", system_message=True)
    assert backend.render(messages) == SYSTEM_TEXT + "\n\n" + build_prompt("i", "r", "ref")  # no template
    backend._tokenizer.chat_template = "{% for m in messages %}<{{ m.role }}>{{ m.content }}{% endfor %}<assistant>"
    assert backend.render(messages).startswith("<system>" + SYSTEM_TEXT + "<user>###Task")
    backend._tokenizer.chat_template = "{{ raise_exception('roles must alternate') }}"
    assert backend.render(messages).startswith(SYSTEM_TEXT + "\n\n###Task")


# --- openai backend against a local HTTP server ----------------------------------------------------------

class FakeServer:
    """Chat-completions server on 127.0.0.1; ``script(n, body) -> (status, payload, delay_s)``."""

    def __init__(self, script):
        self.script = script
        self.requests: list[dict] = []
        self.active = 0
        self.max_active = 0
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    n = len(server.requests) - 1
                    server.active += 1
                    server.max_active = max(server.max_active, server.active)
                try:
                    status, payload, delay = server.script(n, body)
                    time.sleep(delay)
                finally:  # done before the reply is sent: the client may send its next request right after it
                    with server.lock:
                        server.active -= 1
                try:
                    data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def completion(text):
    return {"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant",
            "content": text}, "finish_reason": "stop"}]}


def openai_cfg(url, **extra):
    return {"backend": "openai", "base_url": url, "model": "judge-m", "api_key_env": "DELIFT_TEST_JUDGE_KEY",
            "client": "urllib", "timeout_s": 5, "max_retries": 2, "backoff_s": 0.01, "max_concurrency": 4, "max_tokens": 64,
            "temperature": 0.0, **extra}


def test_openai_request_body_and_auth_header(monkeypatch):
    monkeypatch.setenv("DELIFT_TEST_JUDGE_KEY", "sekrit")
    with FakeServer(lambda n, body: (200, completion("Spot on. [RESULT] 5"), 0)) as server:
        result = run_judge(["Add 2 and 3."], ["5"], ["The sum is 5."], openai_cfg(server.url + "/"))
    assert result.scores == [5.0] and result.counts["judge_valid"] == 1
    (request,) = server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == "Bearer sekrit"
    assert request["body"] == {"model": "judge-m", "messages": build_messages("Add 2 and 3.", "5", "The sum is 5."),
                               "temperature": 0.0, "max_tokens": 64}
    assert result.identity == {"backend": "openai", "base_url": server.url + "/", "model": "judge-m"}


def test_openai_without_key_sends_no_auth_header(monkeypatch):
    monkeypatch.delenv("DELIFT_TEST_JUDGE_KEY", raising=False)
    with FakeServer(lambda n, body: (200, completion("[RESULT] 3"), 0)) as server:
        assert run_judge(["q"], ["r"], ["ref"], openai_cfg(server.url, system_message=True)).scores == [3.0]
    assert "Authorization" not in server.requests[0]["headers"]
    assert [m["role"] for m in server.requests[0]["body"]["messages"]] == ["system", "user"]


def test_openai_retries_500_and_429_then_succeeds():
    replies = [(500, {"error": "boom"}, 0), (429, {"error": "slow down"}, 0), (200, completion("[RESULT] 4"), 0)]
    with FakeServer(lambda n, body: replies[n]) as server:
        result = run_judge(["q"], ["r"], ["ref"], openai_cfg(server.url))
    assert result.scores == [4.0] and len(server.requests) == 3


@pytest.mark.parametrize("client", ["urllib", "openai"])
def test_openai_failures_are_counted_not_raised(client):
    if client == "openai":
        pytest.importorskip("openai")  # the judge extra: the package's client follows the same rules
    def script(n, body):
        content = body["messages"][0]["content"]
        if "BAD-REQUEST" in content:
            return 400, {"error": "bad"}, 0
        if "NOT-JSON" in content:
            return 200, b"<html>oops</html>", 0
        if "ALWAYS-503" in content:
            return 503, {"error": "down"}, 0
        return 200, completion("[RESULT] 2"), 0

    with FakeServer(script) as server:
        result = run_judge(["q"] * 4, ["BAD-REQUEST", "NOT-JSON", "ALWAYS-503", "fine"], ["ref"] * 4,
                           openai_cfg(server.url, max_retries=2, max_concurrency=1, client=client))
    assert [v.status for v in result.verdicts] == ["error", "error", "error", "ok"]
    assert result.counts == {"judge_n": 4, "judge_valid": 1, "judge_parse_failures": 0, "judge_out_of_range": 0,
                             "judge_errors": 3}
    assert len(server.requests) == 1 + 1 + 3 + 1  # 400 and bad JSON are not retried; 503 is, twice


def test_openai_timeout_and_refused_connection_are_errors():
    with FakeServer(lambda n, body: (200, completion("[RESULT] 5"), 1.0)) as server:
        started = time.perf_counter()
        result = run_judge(["q"], ["r"], ["ref"], openai_cfg(server.url, timeout_s=0.2, max_retries=1))
        assert time.perf_counter() - started < 1.0
    assert result.counts["judge_errors"] == 1 and math.isnan(result.scores[0])
    assert len(server.requests) == 2  # the timed-out request was retried once

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    refused = run_judge(["q"], ["r"], ["ref"], openai_cfg(f"http://127.0.0.1:{port}/v1", max_retries=1))
    assert refused.counts["judge_errors"] == 1


def test_openai_concurrency_limit_is_honoured():
    with FakeServer(lambda n, body: (200, completion("[RESULT] 3"), 0.15)) as server:
        result = run_judge(["q"] * 6, [f"r{i}" for i in range(6)], ["ref"] * 6,
                           openai_cfg(server.url, max_concurrency=2))
    assert result.scores == [3.0] * 6 and len(server.requests) == 6
    assert server.max_active == 2


def test_openai_garbage_is_not_cached_and_is_asked_again_once_the_server_is_fixed(tmp_path):
    """A misconfigured server (wrong chat template, wrong model) returns replies without a verdict:
    after it is fixed, a rerun must send every failed example again instead of reusing them."""
    def broken(n, body):
        content = body["messages"][0]["content"]
        if "r-bad-request" in content:
            return 400, {"error": "bad"}, 0
        if "r-out-of-range" in content:
            return 200, completion("[RESULT] 8/10"), 0
        return 200, completion("<|im_end|><|im_end|>"), 0

    args = (["q"] * 3, ["r-garbage", "r-out-of-range", "r-bad-request"], ["ref"] * 3)
    with FakeServer(broken) as server:  # one server, so one base_url: the same judge identity throughout
        cfg = openai_cfg(server.url, cache_dir=str(tmp_path))
        first = run_judge(*args, cfg)
        assert [v.status for v in first.verdicts] == ["parse_failure", "out_of_range", "error"]
        assert len(server.requests) == 3

        server.script = lambda n, body: (200, completion("Fine now. [RESULT] 4"), 0)  # the server is fixed
        second = run_judge(*args, cfg)
        assert len(server.requests) == 6 and second.cache_hits == 0
        assert second.scores == [4.0] * 3 and second.counts["judge_valid"] == 3

        server.script = broken  # the valid verdicts are cached now: nothing is sent
        third = run_judge(*args, cfg)
        assert len(server.requests) == 6 and third.cache_hits == 3 and third.scores == [4.0] * 3
