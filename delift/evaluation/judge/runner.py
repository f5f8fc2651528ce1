"""Judge a list of (instruction, response, reference) triples: prompt -> cache -> backend -> parse.

Every example ends in exactly one status (see :mod:`delift.evaluation.judge.parsing`):
``ok`` (a score in [1, 5]), ``parse_failure`` (no ``[RESULT] n`` in the reply),
``out_of_range`` (a number outside 1..5 or on another scale) or ``error`` (the backend gave no
reply, e.g. a request that timed out after its retries). :attr:`JudgeResult.counts` reports them as

- ``judge_n``: examples judged;
- ``judge_valid``: examples with a score;
- ``judge_parse_failures``, ``judge_out_of_range``, ``judge_errors``: the failures by kind;

so ``judge_valid + judge_parse_failures + judge_out_of_range + judge_errors == judge_n``.
Nothing here raises for a bad reply; bad configuration raises ``ValueError`` naming the key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delift.evaluation.judge.cache import VerdictCache, verdict_key
from delift.evaluation.judge.config import (
    RUN_KEYS,
    HFJudgeSettings,
    OpenAIJudgeSettings,
    is_plumbing_model,
    judge_settings,
)
from delift.evaluation.judge.parsing import ERROR, OK, OUT_OF_RANGE, PARSE_FAILURE, Verdict, parse_verdict
from delift.evaluation.judge.prompt import build_messages

log = logging.getLogger(__name__)

COUNT_KEYS = {"judge_valid": OK, "judge_parse_failures": PARSE_FAILURE, "judge_out_of_range": OUT_OF_RANGE,
              "judge_errors": ERROR}
DEFAULT_CACHE_ROOT = ".cache/delift/judge"  # for built test models when no cache_dir is given


def _hf_backend(settings: HFJudgeSettings, cache_root: str, progress: bool):
    from delift.evaluation.judge.hf_backend import HFJudgeBackend

    return HFJudgeBackend(settings, cache_root, progress=progress)


def _openai_backend(settings: OpenAIJudgeSettings, cache_root: str, progress: bool):
    from delift.evaluation.judge.openai_backend import OpenAIJudgeBackend

    return OpenAIJudgeBackend(settings)


# backend name -> factory(settings, cache_root, progress); a backend has identity(),
# generation_settings() and complete(conversations) -> list[str | None].
BACKENDS: dict[str, Callable[[Any, str, bool], Any]] = {"hf": _hf_backend, "openai": _openai_backend}


@dataclass
class JudgeResult:
    """One verdict per example, the judge's identity, and how many replies came from the cache."""

    verdicts: list[Verdict]
    identity: dict[str, Any]
    plumbing_only: bool
    cache_hits: int = 0

    @property
    def scores(self) -> list[float]:
        """Per-example score in [1, 5], NaN where the example has no valid verdict."""
        return [v.value for v in self.verdicts]

    @property
    def counts(self) -> dict[str, int]:
        """``judge_n`` and the per-status counts described in the module docstring."""
        out = {"judge_n": len(self.verdicts)}
        for key, status in COUNT_KEYS.items():
            out[key] = sum(v.status == status for v in self.verdicts)
        return out


def run_judge(instructions: Sequence[str], responses: Sequence[str], references: Sequence[str],
              cfg: HFJudgeSettings | OpenAIJudgeSettings | Mapping[str, Any], backend: Any = None, *,
              cache_dir: str | Path | None = None, progress: bool = False) -> JudgeResult:
    """Judge every example with the judge ``cfg``: its typed settings, or a ``conf/judge/*.yaml`` mapping
    (which may also carry ``cache_dir`` and ``progress``; it is checked and converted here).

    ``cache_dir`` (optional) is the judge's cache folder: replies are cached under
    ``<cache_dir>/verdicts`` (without it nothing is cached; failures never are), a tiny test judge is
    built under ``<cache_dir>/models``. ``backend`` replaces the configured one (tests). Identical
    prompts are sent once.
    """
    if not len(instructions) == len(responses) == len(references):
        raise ValueError(f"judge inputs differ in length: {len(instructions)} instructions, "
                         f"{len(responses)} responses, {len(references)} references")
    if isinstance(cfg, (HFJudgeSettings, OpenAIJudgeSettings)):
        settings = cfg
    else:
        settings = judge_settings(cfg)
        run_keys = {key: cfg[key] for key in RUN_KEYS if key in cfg}
        cache_dir = cache_dir if cache_dir is not None else run_keys.get("cache_dir")
        progress = progress or bool(run_keys.get("progress", False))
    cache_root = None if cache_dir is None else str(cache_dir)
    if backend is None:
        backend = BACKENDS[settings.backend](settings, str(cache_root or DEFAULT_CACHE_ROOT), bool(progress))
    identity = backend.identity()
    generation = backend.generation_settings()
    cache = VerdictCache(Path(cache_root) / "verdicts" if cache_root else None)

    conversations = [build_messages(i, r, ref, system_message=settings.system_message)
                     for i, r, ref in zip(instructions, responses, references)]
    keys = [verdict_key(identity, messages, generation) for messages in conversations]
    replies: dict[str, str | None] = {}
    for key in dict.fromkeys(keys):
        cached = cache.get(key)
        if cached is not None:
            replies[key] = cached
    hits = len(replies)
    pending = [key for key in dict.fromkeys(keys) if key not in replies]
    if pending:
        first: dict[str, list[dict[str, str]]] = {}
        for key, messages in zip(keys, conversations):
            first.setdefault(key, messages)
        fresh = backend.complete([first[key] for key in pending])
        if len(fresh) != len(pending):
            raise RuntimeError(f"judge backend returned {len(fresh)} replies for {len(pending)} requests")
        for key, reply in zip(pending, fresh):
            replies[key] = reply
            if reply is not None:
                cache.put(key, reply, identity)  # kept only if it parses to a valid verdict
    log.info("judge: %d prompts, %d cached, %d sent to %s", len(keys), hits, len(pending), settings.backend)
    verdicts = [parse_verdict(replies[key]) for key in keys]
    return JudgeResult(verdicts=verdicts, identity=identity, plumbing_only=is_plumbing_model(settings),
                       cache_hits=hits)
