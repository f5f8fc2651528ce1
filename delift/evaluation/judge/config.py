"""Judge settings from ``conf/judge/*.yaml`` (a plain mapping), validated with errors naming the key.

Keys every backend takes: ``backend`` (``hf`` | ``openai``), ``model``, ``temperature``
(0 = greedy), ``system_message`` (send the system text as its own message; off by default since
Mistral-style chat templates reject a system role). The pipeline may add ``cache_dir`` (the
judge's own cache folder, e.g. ``<paths.cache_dir>/judge``: replies go to ``<cache_dir>/verdicts``,
a built test model to ``<cache_dir>/models``) and ``progress``; those two are not judge settings.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

from delift.evaluation.judge.models import MODEL_CHOICES

RUN_KEYS = ("cache_dir", "progress")  # added by the caller, not judge settings


@dataclass(frozen=True)
class HFJudgeSettings:
    """A local transformers causal LM as the judge (``conf/judge/hf.yaml``)."""

    backend: str = "hf"
    model: str = "prometheus-eval/prometheus-7b-v2.0"  # hub id; a checkpoint folder with model_source=local
    model_source: str = "hub"  # hub (hub id) | local (``model`` is a folder) | tiny_random (plumbing)
    revision: str = "main"  # hub only; the resolved commit goes into the cache key
    dtype: str = "bfloat16"
    max_new_tokens: int = 512  # feedback + "[RESULT] n"; a cut-off reply counts as a parse failure
    batch_size: int = 4
    temperature: float = 0.0  # 0 = greedy; > 0 samples, seeded with `seed`
    seed: int = 0
    max_prompt_tokens: int | None = None  # None = never shorten the grading prompt
    system_message: bool = False  # False: system text goes into the user turn (Mistral templates have no system role)


@dataclass(frozen=True)
class OpenAIJudgeSettings:
    """Any OpenAI-compatible chat-completions endpoint (``conf/judge/openai.yaml``)."""

    backend: str = "openai"
    base_url: str = "http://localhost:8000/v1"  # POST {base_url}/chat/completions
    model: str = "prometheus-eval/prometheus-7b-v2.0"
    api_key_env: str | None = "OPENAI_API_KEY"  # env variable holding the key; unset/empty = no auth header
    client: str = "auto"  # openai (the package: pip install 'delift[judge]') | urllib (standard library) | auto
    timeout_s: float = 120.0  # one attempt as a whole (connect, headers, body: a trickling server cannot hold it)
    budget_s: float | None = None  # the whole judge run, retries included; null = no limit; unanswered = errors
    max_retries: int = 4  # on connection errors, timeouts, 429 and 5xx
    backoff_s: float = 2.0  # wait backoff_s * 2^attempt (or Retry-After), at most 60 s
    max_concurrency: int = 8  # requests in flight at once
    max_tokens: int = 512
    temperature: float = 0.0
    system_message: bool = False  # True: send the system text as a separate system message


SETTINGS = {"hf": HFJudgeSettings, "openai": OpenAIJudgeSettings}
CLIENTS = ("auto", "openai", "urllib")


def _check(condition: bool, key: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"judge.{key}={value!r}: expected {expected}")


def judge_settings(cfg: Mapping[str, Any]) -> HFJudgeSettings | OpenAIJudgeSettings:
    """Validate a judge config mapping (``cfg.judge`` as a dict) into its backend's settings."""
    data = {k: v for k, v in dict(cfg).items() if k not in RUN_KEYS}
    backend = data.get("backend")
    _check(backend in SETTINGS, "backend", backend, f"one of {sorted(SETTINGS)}")
    cls = SETTINGS[backend]
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"judge.{unknown[0]}: unknown key for judge.backend={backend}; "
                         f"expected a subset of {sorted(known)}")
    settings = cls(**data)
    _check(isinstance(settings.model, str) and bool(settings.model), "model", settings.model, "a non-empty string")
    _check(isinstance(settings.temperature, (int, float)) and math.isfinite(settings.temperature)
           and settings.temperature >= 0, "temperature", settings.temperature, "a number >= 0 (0 = greedy)")
    if isinstance(settings, HFJudgeSettings):
        _check(settings.model_source in MODEL_CHOICES, "model_source", settings.model_source,
               f"one of {list(MODEL_CHOICES)}")
        _check(isinstance(settings.max_new_tokens, int) and settings.max_new_tokens >= 1,
               "max_new_tokens", settings.max_new_tokens, "an integer >= 1")
        _check(isinstance(settings.batch_size, int) and settings.batch_size >= 1,
               "batch_size", settings.batch_size, "an integer >= 1")
        _check(settings.max_prompt_tokens is None or (isinstance(settings.max_prompt_tokens, int)
               and settings.max_prompt_tokens >= 1), "max_prompt_tokens", settings.max_prompt_tokens,
               "null or an integer >= 1")
    else:
        _check(isinstance(settings.base_url, str) and settings.base_url.startswith(("http://", "https://")),
               "base_url", settings.base_url, "an http:// or https:// URL (e.g. http://localhost:8000/v1)")
        _check(isinstance(settings.timeout_s, (int, float)) and settings.timeout_s > 0,
               "timeout_s", settings.timeout_s, "a number of seconds > 0")
        _check(settings.client in CLIENTS, "client", settings.client, f"one of {list(CLIENTS)}")
        if settings.client == "openai" and importlib.util.find_spec("openai") is None:
            raise ValueError("judge.client=openai: the openai package is not installed; pip install 'delift[judge]' "
                             "(or judge.client=auto / urllib, the standard-library client)")
        _check(settings.budget_s is None or (isinstance(settings.budget_s, (int, float)) and settings.budget_s > 0),
               "budget_s", settings.budget_s, "null (no limit) or a number of seconds > 0")
        _check(isinstance(settings.max_retries, int) and settings.max_retries >= 0,
               "max_retries", settings.max_retries, "an integer >= 0")
        _check(isinstance(settings.backoff_s, (int, float)) and settings.backoff_s >= 0,
               "backoff_s", settings.backoff_s, "a number of seconds >= 0")
        _check(isinstance(settings.max_concurrency, int) and settings.max_concurrency >= 1,
               "max_concurrency", settings.max_concurrency, "an integer >= 1")
        _check(isinstance(settings.max_tokens, int) and settings.max_tokens >= 1,
               "max_tokens", settings.max_tokens, "an integer >= 1")
    return settings


def is_plumbing_model(settings: HFJudgeSettings | OpenAIJudgeSettings) -> bool:
    """True for a tiny/random test judge or a 135M one: its scores are plumbing, not evidence."""
    if isinstance(settings, HFJudgeSettings) and MODEL_CHOICES[settings.model_source].plumbing:
        return True
    name = settings.model.lower().replace("_", "-")
    # OFFLINE.md: a 135M model rates right and wrong answers alike, so it only checks the plumbing too.
    return "tiny-random" in name or "random-tiny" in name or "135m" in name


def judge_identity(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """What to record next to judge scores: backend, model, where it runs, and the plumbing flag.

    ``plumbing_only`` is True for a tiny random judge; label such scores as plumbing, never as
    results. (Cheap: loads nothing.)
    """
    settings = judge_settings(cfg)
    ident: dict[str, Any] = {"backend": settings.backend, "model": settings.model}
    if isinstance(settings, HFJudgeSettings):
        ident.update(model_source=settings.model_source, revision=settings.revision, dtype=settings.dtype)
    else:
        ident.update(base_url=settings.base_url)
    ident["plumbing_only"] = is_plumbing_model(settings)
    return ident
