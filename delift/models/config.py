"""The model's settings (``conf/model/*.yaml``): one dataclass, both the Hydra schema and what loading takes.

A notebook builds it directly (``ModelConfig(name="tiny", source="tiny_random")``). ``dtype`` stays as
written (``auto`` in run.json's config); :attr:`ModelConfig.resolved_dtype` is the concrete one that
cache keys and loading use. Imports only the standard library, omegaconf's ``MISSING`` and
:mod:`delift.config.checks` and the torch-free table of :mod:`delift.models.tiny` (torch only inside the two
functions that need it), so the config schema can hold it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, Optional

from omegaconf import MISSING

from delift.config.checks import Problems, at_least, choice
from delift.models.tiny import BUILDERS, DEFAULT_TINY_FAMILY, TOKENIZERS

DTYPES = ("float32", "float16", "bfloat16", "auto")  # auto: bfloat16 on hardware with native bf16, else float32
AUTO_DTYPE = "auto"
TORCH_DTYPE_NAMES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
                     "float16": "float16", "fp16": "float16"}  # accepted name -> torch attribute
CACHE_DIR_ENV = "DELIFT_CACHE_DIR"  # what conf/config.yaml's paths.cache_dir reads first
DEFAULT_CACHE_DIR = ".cache/delift"
TINY_FAMILIES = tuple(BUILDERS)  # model.tiny.family's choices: the families delift.models.tiny builds
TINY_TOKENIZERS = tuple(name for name in TOKENIZERS if name)  # model.tiny.tokenizer besides null (byte-level)


@functools.cache  # the hardware does not change within a run; keys read it often
def native_bf16() -> bool:
    """True on a CUDA GPU with bf16, or a CPU with AMX or AVX512-BF16 (elsewhere bf16 matmuls are emulated:
    measured about 200x slower than fp32 on an AVX2-only AMD EPYC)."""
    import torch

    if torch.cuda.is_available():
        return bool(torch.cuda.is_bf16_supported())
    try:
        flags = Path("/proc/cpuinfo").read_text().split()
    except OSError:
        return False
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtype(name: str) -> str:
    """``auto`` -> ``bfloat16`` with native bf16 hardware, else ``float32``; any other name unchanged."""
    if name != AUTO_DTYPE:
        return name
    return "bfloat16" if native_bf16() else "float32"


def default_cache_dir() -> str:
    """``paths.cache_dir``'s default: ``$DELIFT_CACHE_DIR``, else ``.cache/delift``."""
    return os.environ.get(CACHE_DIR_ENV) or DEFAULT_CACHE_DIR


@dataclass
class TinyModelConfig:
    """Family and shape of the tiny random model; a null field takes :func:`delift.models.tiny.build_tiny_model`'s
    default. ``family`` names one of :data:`TINY_FAMILIES` (null: ``llama``, the original test model)."""

    family: Optional[str] = None  # llama | llama3 | qwen2 | phi3 | mistral | gemma2; null = llama
    hidden_size: Optional[int] = None  # 64
    num_layers: Optional[int] = None  # 2
    num_heads: Optional[int] = None  # 4
    intermediate_size: Optional[int] = None  # 128
    max_positions: Optional[int] = None  # 2048 (the judge's tiny model takes 8192)
    tokenizer: Optional[str] = None  # null = byte-level; byte_pairs = byte-level plus fixed merges (another tokenizer)

    def problems(self) -> Problems:
        found: Problems = {}
        if self.family is not None:
            choice(found, "family", self.family, TINY_FAMILIES)
        if self.tokenizer is not None:
            choice(found, "tokenizer", self.tokenizer, TINY_TOKENIZERS)
        for name in ("hidden_size", "num_layers", "num_heads", "intermediate_size", "max_positions"):
            at_least(found, name, getattr(self, name), 1)
        return found

    def given(self) -> Dict[str, Any]:
        """The fields that are set, by name: what building and the model's identity take. ``family: llama`` is
        left out like null, so both name the same model (and share its cache)."""
        return {key: value for key, value in sorted(asdict(self).items())
                if value is not None and not (key == "family" and value == DEFAULT_TINY_FAMILY)}


@dataclass
class ModelShape:
    """A decoder's shape and parameter count, as its config.json states them: what the cost plan
    (``delift-plan``) needs without the model's files. Never part of the model's identity (cache keys)."""

    layers: int = MISSING  # num_hidden_layers
    hidden: int = MISSING  # hidden_size
    heads: int = MISSING  # num_attention_heads
    kv_heads: int = MISSING  # num_key_value_heads
    intermediate: int = MISSING  # intermediate_size (one of the gated MLP's up / gate projections)
    vocab: int = MISSING  # vocab_size
    tied_embeddings: bool = False  # tie_word_embeddings: the output head is the input embedding
    qkv_bias: bool = False  # biases on the q, k, v projections (Qwen2)
    head_dim: Optional[int] = None  # null = hidden / heads
    non_embedding_params: Optional[int] = None  # null = counted from the shape (delift.plan.models)

    def problems(self) -> Problems:
        found: Problems = {}
        for key in ("layers", "hidden", "heads", "kv_heads", "intermediate", "vocab", "head_dim",
                    "non_embedding_params"):
            at_least(found, key, getattr(self, key), 1)
        if self.kv_heads >= 1 and self.heads % self.kv_heads:
            found["kv_heads"] = f"{self.kv_heads}: must divide heads={self.heads}"
        return found


@dataclass
class ModelConfig:
    """What identifies a causal LM and where its converted copy is cached."""

    name: str = MISSING
    source: str = "hub"  # hub | packaged_gguf | tiny_random | a module path (delift.models.sources)
    hub_id: Optional[str] = None
    revision: str = "main"
    local_path: Optional[str] = None
    gguf_package: Optional[str] = None
    gguf_file: Optional[str] = None
    dtype: str = "auto"  # auto: bfloat16 on native-bf16 hardware, else float32 (see resolved_dtype)
    seed: int = 0
    tiny: Optional[TinyModelConfig] = None
    cache_dir: Optional[str] = None  # where converted models (packaged_gguf, tiny_random) are cached; null = paths.cache_dir
    shape: Optional[ModelShape] = None  # the cost plan's figures (delift-plan); null = read from the model's files

    def problems(self) -> Problems:
        """dtype and cache_dir; ``model.source`` and its own fields are checked by the source registry
        (:func:`delift.models.sources.source_problems`, added beside this one when :mod:`delift.models` is imported)."""
        found: Problems = {}
        choice(found, "dtype", self.dtype, DTYPES)
        if self.cache_dir is not None and not str(self.cache_dir).strip():
            found["cache_dir"] = "empty: give a folder, or null for paths.cache_dir"
        return found

    @property
    def resolved_dtype(self) -> str:
        """The concrete dtype name (``auto`` resolved by the hardware): what cache keys and loading see."""
        return resolve_dtype(self.dtype)

    @property
    def torch_dtype(self) -> Any:
        """The ``torch.dtype`` of :attr:`resolved_dtype`."""
        import torch

        name = self.resolved_dtype
        if name not in TORCH_DTYPE_NAMES:
            raise ValueError(f"model.dtype={name!r} is not one of {sorted(TORCH_DTYPE_NAMES)}")
        return getattr(torch, TORCH_DTYPE_NAMES[name])

    @property
    def cache_root(self) -> Path:
        """The cache folder: ``cache_dir``, or ``paths.cache_dir``'s default when it is null."""
        return Path(self.cache_dir or default_cache_dir()).expanduser()

    @property
    def tiny_shape(self) -> Dict[str, Any]:
        """The tiny model's set family and shape fields (empty without ``tiny``)."""
        return self.tiny.given() if self.tiny is not None else {}
