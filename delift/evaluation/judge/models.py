"""The judge's model: the choices of ``judge.model_source``, the :class:`ModelConfig` each builds, and how the
preflight finds the judge (:class:`JudgeModel`, :class:`JudgeEndpoint`: what
:meth:`delift.evaluation.judge.metric.JudgeMetric.loaded_models` declares).

A choice loads with a registered model source (:mod:`delift.models.sources`, named by its class, never by a
string): ``hub`` takes ``judge.model`` as a hub id (at ``judge.revision``), ``local`` as a checkpoint folder
(the hub source's ``local_path``), ``tiny_random`` builds the project's tiny random Llama (plumbing only: a
source with a caveat). Torch-free; loads and contacts nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

from delift.models.config import ModelConfig, TinyModelConfig
from delift.models.sources import Hub, HubProblem, SelfLocating, TinyRandom, Unavailable, download_hint, find_source

# Settings below are :mod:`delift.evaluation.judge.config`'s (which validates model_source against MODEL_CHOICES:
# typed Any here, so that the two modules do not import each other).

PLUMBING = "judge.model_source=tiny_random"  # the fix's plumbing hint: a judge every machine has


@dataclass(frozen=True)
class ModelChoice:
    """One ``judge.model_source``: the model source it loads with, its ModelConfig, the fix of a missing one."""

    source: str  # a registered model source's name
    fields: Callable[[Any], dict[str, Any]]  # ModelConfig's fields beyond name, source, cache_dir
    fix: Callable[[str], str] = lambda model: ""  # judge.model -> what to do when it cannot be found

    @property
    def plumbing(self) -> bool:
        """True when its models carry a caveat (a tiny random model): scores are plumbing, not evidence."""
        return find_source(self.source).caveat is not None


MODEL_CHOICES: dict[str, ModelChoice] = {}


def model_choice(name: str, choice: ModelChoice) -> None:
    """Declare ``judge.model_source=name``."""
    MODEL_CHOICES[name] = choice


model_choice(Hub.name, ModelChoice(
    Hub.name, lambda s: {"hub_id": s.model, "revision": s.revision, "dtype": s.dtype},
    lambda model: f"{download_hint(model)}, or judge.model=<checkpoint folder> judge.model_source=local; "
                  f"for plumbing only (scores are noise): {PLUMBING}"))
model_choice("local", ModelChoice(
    Hub.name, lambda s: {"local_path": s.model, "dtype": s.dtype},
    lambda model: f"judge.model=<checkpoint folder> with judge.model_source=local; for plumbing only: {PLUMBING}"))
# The grading prompt alone is ~2,400 byte tokens: give the test model room for it.
model_choice(TinyRandom.name, ModelChoice(
    TinyRandom.name, lambda s: {"dtype": "float32", "seed": s.seed, "tiny": TinyModelConfig(max_positions=8192)}))


def judge_model_spec(settings: Any, cache_dir: str | Path) -> ModelConfig:
    """The :class:`ModelConfig` for the judge model described by ``settings``."""
    choice = MODEL_CHOICES[settings.model_source]
    return ModelConfig(name="judge-" + Path(settings.model).name.replace("/", "-"), source=choice.source,
                       **choice.fields(settings), cache_dir=str(cache_dir))


def endpoint_problem(base_url: str) -> str | None:
    """Why ``judge.base_url`` is not a usable URL (http or https, a host, a numeric port), or None."""
    url = urlparse(base_url)
    try:
        url.port  # noqa: B018 - raises on a port that is not a number
    except ValueError as exc:
        return str(exc)
    return None if url.scheme in ("http", "https") and url.hostname else "needs http:// or https:// and a host"


@dataclass(frozen=True)
class JudgeModel(SelfLocating):
    """The judge model a run loads (``backend=hf``), found by its model source's offline check."""

    settings: Any  # HFJudgeSettings
    cache_dir: str

    def unavailable(self, hub_problem: HubProblem) -> Unavailable | None:
        settings = self.settings
        spec = judge_model_spec(settings, self.cache_dir)
        found = find_source(spec.source).unavailable("judge", spec, "", hub_problem)
        return None if found is None else Unavailable("judge.model", settings.model, found.why,
                                                      MODEL_CHOICES[settings.model_source].fix(settings.model))


@dataclass(frozen=True)
class JudgeEndpoint(SelfLocating):
    """The endpoint a run calls (``backend=openai``): the form of its URL, never contacted."""

    settings: Any  # OpenAIJudgeSettings

    def unavailable(self, hub_problem: HubProblem) -> Unavailable | None:
        why = endpoint_problem(self.settings.base_url)
        return None if why is None else Unavailable(
            "judge.base_url", self.settings.base_url, why, "e.g. judge.base_url=http://localhost:8000/v1 (a vLLM server)")
