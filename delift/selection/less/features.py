"""Gradient features per checkpoint, computed chunk by chunk and cached on disk.

For each checkpoint the LoRA weights are loaded into one model in eval mode (dropout off). A chunk of
examples is run in length-sorted batches of per-example gradients (training side: Adam feature with
that checkpoint's moments; target side: the plain gradient). Then:

- projected (``proj_dim`` set), ``projection: rademacher``: every batch is written to a :class:`BlockedScratch`
  file and the chunk is projected block by block by the shared :class:`RademacherProjection`;
  ``projection: srht``: each batch is projected as it comes by the shared :class:`SRHTProjection` (no scratch
  file). The L2-normalised rows (chunk x proj_dim) are stored: one file per (checkpoint, side, projection,
  chunk content), written atomically, so a killed run recomputes at most the chunk it was in;
- exact (``proj_dim: null``): rows are L2-normalised in full dimension; the target side is reduced at
  once to its subtask means (subtasks x P), and each training chunk to its cosines with them
  (chunk x subtasks), since a subtask's mean cosine is the cosine-style product with the mean row.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch

from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.fsutil import atomic_write
from delift.models.config import ModelConfig
from delift.models.loading import load_tokenizer
from delift.scoring.cache import content_key
from delift.scoring.layout import training_items
from delift.selection.less.gradients import adam_feature, lora_parameters, per_example_gradients
from delift.selection.less.projection import BlockedScratch, RademacherProjection, normalise_rows
from delift.selection.less.srht import SRHTProjection
from delift.selection.less.warmup import Checkpoint, build_lora_model

log = logging.getLogger(__name__)

FEATURE_CODE_VERSION = 1


class FeatureStore:
    """``<root>/<family key>/<chunk key>.npz`` (array ``values``), written atomically; damaged files are misses."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, family: dict[str, Any], examples: Sequence[Example]) -> Path:
        folder = self.root / content_key({**family, "code": FEATURE_CODE_VERSION})[:32]
        return folder / f"{content_key(fingerprint(examples))[:32]}.npz"

    def load(self, path: Path, shape: tuple[int, ...]) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                values = data["values"]
            if values.shape != shape or not np.isfinite(values).all():
                raise ValueError(f"shape {values.shape}, expected {shape}, or non-finite values")
            return values
        except Exception as exc:  # a damaged file is recomputed
            log.warning("LESS feature file %s is unreadable (%s: %s); it is recomputed", path, type(exc).__name__, exc)
            return None

    def save(self, path: Path, values: np.ndarray, family: dict[str, Any]) -> None:
        atomic_write(path, lambda handle: np.savez(handle, values=np.asarray(values, dtype=np.float32)))
        if not (path.parent / "family.json").exists():
            atomic_write(path.parent / "family.json",
                         lambda handle: handle.write(json.dumps(family, indent=2, default=str).encode()))


class FeatureEngine:
    """One model in eval mode whose LoRA weights follow the checkpoint being featurised (loaded lazily)."""

    def __init__(self, spec: ModelConfig, template: PromptTemplate, settings: Any, store: FeatureStore,
                 family: dict[str, Any], *, proj_dim: int | None, proj_seed: int, proj_block: int,
                 batch_size: int, gradient_path: str, scratch_dir: str | Path, projection: str):
        self.spec, self.template, self.settings, self.store = spec, template, settings, store
        self.family, self.proj_dim, self.proj_seed, self.proj_block = family, proj_dim, proj_seed, proj_block
        self.projection = projection
        self.batch_size, self.gradient_path, self.scratch_dir = batch_size, gradient_path, Path(scratch_dir)
        self.model: Any = None
        self.tokenizer = load_tokenizer(spec)
        self.loaded: int | None = None
        self.moments: tuple[torch.Tensor, torch.Tensor] | None = None
        self.computed = 0  # examples whose gradients were computed (all checkpoints and sides)
        self.cache_hits = 0

    def _use(self, checkpoint: Checkpoint) -> None:
        if self.model is None:
            self.model = build_lora_model(self.spec, self.settings, 0).eval()
            self.n_params = sum(p.numel() for _, p in lora_parameters(self.model))
        if self.loaded != checkpoint.epoch:
            checkpoint.load_into(self.model)
            self.moments = checkpoint.flat_moments(self.model)
            self.loaded = checkpoint.epoch

    def _batches(self, examples: Sequence[Example], adam: bool, bar: Any) -> Iterator[tuple[list[int], torch.Tensor]]:
        """(positions in ``examples``, feature rows) per length-sorted batch."""
        items = training_items(examples, self.tokenizer, self.template, self.settings.max_length)
        order = sorted(range(len(items)), key=lambda i: -(len(items[i].context) + len(items[i].scored)))
        pad_id = int(self.tokenizer.pad_token_id)
        for start in range(0, len(order), self.batch_size):
            positions = order[start:start + self.batch_size]
            grads = per_example_gradients(self.model, [items[i] for i in positions], pad_id, self.gradient_path)
            if adam:
                grads = adam_feature(grads, *self.moments)
            self.computed += len(positions)
            if bar is not None:
                bar.update(len(positions))
            yield positions, grads.detach()

    def _family(self, checkpoint: Checkpoint, side: str, **extra: Any) -> dict[str, Any]:
        return {**self.family, "epoch": checkpoint.epoch, "side": side, **extra}

    def projected(self, checkpoint: Checkpoint, examples: Sequence[Example], adam: bool,
                  bars: tuple[Any, Any] = (None, None)) -> np.ndarray:
        """(len(examples), proj_dim) L2-normalised projected features (cached)."""
        identity = {"dim": self.proj_dim, "seed": self.proj_seed}  # a Rademacher feature's key, as before srht
        if self.projection != "rademacher":
            identity["kind"] = self.projection
        family = self._family(checkpoint, "train-adam" if adam else "target-sgd", projection=identity)
        path = self.store.path(family, examples)
        found = self.store.load(path, (len(examples), self.proj_dim))
        if found is not None:
            self.cache_hits += len(examples)
            return found
        self._use(checkpoint)
        device = next(self.model.parameters()).device
        if self.projection == "srht":
            values = self._srht(examples, adam, bars, SRHTProjection(self.n_params, self.proj_dim, self.proj_seed,
                                                                      device))
            self.store.save(path, values, family)
            return values
        projection = RademacherProjection(self.n_params, self.proj_dim, self.proj_seed, self.proj_block, device)
        self.scratch_dir.mkdir(parents=True, exist_ok=True)
        _clean_stale_scratch(self.scratch_dir)
        name = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex}.bin"
        order: list[int] = []
        with BlockedScratch(self.scratch_dir / name, len(examples), self.n_params, self.proj_block) as scratch:
            for positions, rows in self._batches(examples, adam, bars[0]):
                scratch.write_rows(len(order), rows.float().cpu().numpy())
                order += positions
            progress = _BlockProgress(bars[1], len(examples), projection.n_blocks)
            out = projection.project(lambda start, stop: torch.from_numpy(scratch.read_cols(start, stop)),
                                     len(examples), on_block=progress)
        values = np.empty((len(examples), self.proj_dim), dtype=np.float32)
        values[order] = normalise_rows(out).cpu().numpy()
        self.store.save(path, values, family)
        return values

    def _srht(self, examples: Sequence[Example], adam: bool, bars: tuple[Any, Any],
              projection: SRHTProjection) -> np.ndarray:
        """(len(examples), proj_dim) L2-normalised SRHT features, each batch projected as it comes."""
        values = np.empty((len(examples), self.proj_dim), dtype=np.float32)
        for positions, rows in self._batches(examples, adam, bars[0]):
            values[positions] = normalise_rows(projection.project_rows(rows.float())).cpu().numpy()
            if bars[1] is not None:
                bars[1].update(len(positions))
        return values

    def exact_means(self, checkpoint: Checkpoint, targets: Sequence[Example], groups: Sequence[tuple[str, list[int]]],
                    bar: Any = None) -> tuple[np.ndarray, str]:
        """(subtasks, P) means of the targets' normalised plain gradients (cached), and their cache key."""
        family = self._family(checkpoint, "target-means", groups=[[name, [targets[i].id for i in idx]]
                                                                 for name, idx in groups])
        path = self.store.path(family, targets)
        self._use_shape(checkpoint)
        found = self.store.load(path, (len(groups), self.n_params))
        if found is not None:
            self.cache_hits += len(targets)
            return found, path.stem
        self._use(checkpoint)
        group_of = torch.empty(len(targets), dtype=torch.long)
        for g, (_, indices) in enumerate(groups):
            group_of[indices] = g
        device = next(self.model.parameters()).device
        sums = torch.zeros(len(groups), self.n_params, dtype=torch.float32, device=device)
        for positions, rows in self._batches(targets, False, bar):
            sums.index_add_(0, group_of[positions].to(device), normalise_rows(rows.float()))
        counts = torch.tensor([len(idx) for _, idx in groups], dtype=torch.float32, device=device)
        means = (sums / counts[:, None]).cpu().numpy()
        self.store.save(path, means, family)
        return means, path.stem

    def exact_cosines(self, checkpoint: Checkpoint, examples: Sequence[Example], means: np.ndarray, means_key: str,
                      bar: Any = None) -> np.ndarray:
        """(len(examples), subtasks) products of normalised full Adam features with the subtask means (cached)."""
        family = self._family(checkpoint, "train-exact", means=means_key)
        path = self.store.path(family, examples)
        found = self.store.load(path, (len(examples), len(means)))
        if found is not None:
            self.cache_hits += len(examples)
            return found
        self._use(checkpoint)
        device = next(self.model.parameters()).device
        target = torch.from_numpy(means).to(device)
        values = np.empty((len(examples), len(means)), dtype=np.float32)
        for positions, rows in self._batches(examples, True, bar):
            values[positions] = (normalise_rows(rows.float()) @ target.T).cpu().numpy()
        self.store.save(path, values, family)
        return values

    def _use_shape(self, checkpoint: Checkpoint) -> None:
        """The number of LoRA parameters, from the checkpoint file alone (no model load on a cache hit)."""
        if not hasattr(self, "n_params"):
            self.n_params = sum(t.numel() for t in checkpoint.lora_state().values())

    def release(self) -> None:
        self.model, self.moments, self.loaded = None, None, None


class _BlockProgress:
    """Advances an examples-per-second bar by the share of a chunk's projection blocks done."""

    def __init__(self, bar: Any, n_examples: int, n_blocks: int):
        self.bar, self.n_examples, self.n_blocks, self.shown = bar, n_examples, n_blocks, 0

    def __call__(self, index: int) -> None:
        if self.bar is None:
            return
        reached = round(self.n_examples * (index + 1) / self.n_blocks)
        self.bar.update(reached - self.shown)
        self.shown = reached


def _clean_stale_scratch(folder: Path) -> None:
    """Remove scratch files this host's dead processes left behind (a killed run)."""
    host = socket.gethostname()
    for path in folder.glob(f"{host}-*.bin"):
        try:
            pid = int(path.name[len(host) + 1:].split("-")[0])
            os.kill(pid, 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
        except (ValueError, PermissionError):
            continue
