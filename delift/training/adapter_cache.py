"""LoRA adapters on disk, keyed by what they were trained from: ``<cache_dir>/adapters/<key>/``.

The key is the sha256 of the base model's identity, the training examples' fingerprint, the prompt
template, every training setting and the seed: the same training run always maps to the same
folder. The fine-tuning protocol stores the adapter it trains; a selector that needs an adapter
trained on a given set with the run's settings (LoBaSS's reference model: the whole pool, exactly as
the Full Data baseline trains) reuses it, or trains and stores it. A folder carries a manifest and is
checked like a model folder (:mod:`delift.models.folder_check`: sizes, JSON, safetensors header) before
each use; a damaged one (a truncated copy, a missing file) is reported naming the file and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.models.config import ModelConfig
from delift.models.folder_check import sound_folder, store_folder
from delift.models.loading import model_identity
from delift.training.finetune import finetune
from delift.training.settings import TrainConfig

log = logging.getLogger(__name__)

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_key(spec: ModelConfig, train_set: Sequence[Example], template: PromptTemplate, cfg: TrainConfig,
                seed: int) -> str:
    """sha256 of everything a trained adapter depends on."""
    payload = {"model": model_identity(spec), "data": fingerprint(train_set), "template": asdict(template),
               "train": asdict(cfg), "seed": int(seed)}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


class AdapterCache:
    """Trained adapters by key under ``<cache_dir>/adapters``."""

    def __init__(self, cache_dir: str | Path):
        self.root = Path(cache_dir).expanduser() / "adapters"

    def get(self, key: str) -> Path | None:
        return sound_folder(self.root / key, "adapter cache", "the adapter is retrained", ADAPTER_FILES)

    def put(self, key: str, adapter_dir: str | Path) -> Path:
        """Copy a trained adapter folder into the cache with its manifest (atomically; a concurrent writer's
        copy wins)."""
        return store_folder(self.root / key, lambda tmp: shutil.copytree(adapter_dir, tmp, dirs_exist_ok=True),
                            "adapter cache", "stored", ADAPTER_FILES)


def trained_adapter(spec: ModelConfig, train_set: Sequence[Example], template: PromptTemplate, cfg: TrainConfig,
                    seed: int, cache_dir: str | Path, output_dir: str | Path, progress: bool = True) -> Path:
    """The adapter trained on ``train_set`` with ``cfg`` and ``seed``: from the cache, or trained now and stored."""
    cache, key = AdapterCache(cache_dir), adapter_key(spec, train_set, template, cfg, seed)
    found = cache.get(key)
    if found is not None:
        log.info("adapter cache hit: %s (%d examples, seed %d)", found, len(train_set), seed)
        return found
    result = finetune(spec, train_set, template, cfg, output_dir, seed=seed, progress=progress)
    del result.model
    return cache.put(key, result.adapter_dir)
