"""Typed schema of the ``kernel`` group: the exact kernel's settings and its approximations (learned, knn).

Split from :mod:`delift.config.schema` (which re-exports these classes); same rules: each dataclass's
``problems()`` names its local keys, and the loader walks them with full paths.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from delift.checks import Problems, at_least, choice


@dataclass
class LearnedKernelConfig:
    """``kernel.approximation=learned`` (NN-CIFT): a small network predicts UF from sentence embeddings."""

    sample_fraction: float = 0.1  # share of the pool scored exactly (as rows and columns): f^2 n^2 pairs
    holdout_fraction: float = 0.1  # share of the sampled examples held out to report the network's error
    hidden: int = 100  # ReLU units of the one hidden layer
    lr: float = 1e-4  # Adam
    batch_size: int = 64  # pairs per step
    epochs: int = 20
    seed: int = 0  # sample, hold-out split, initialisation and shuffling
    exact_diagonal: bool = True  # self-pairs (i, i) scored exactly (n passes) instead of predicted

    def problems(self) -> Problems:
        found: Problems = {}
        if not 0.0 < self.sample_fraction <= 1.0:
            found["sample_fraction"] = f"{self.sample_fraction!r}: must be in (0, 1]"
        if not 0.0 <= self.holdout_fraction < 1.0:
            found["holdout_fraction"] = f"{self.holdout_fraction!r}: must be in [0, 1)"
        for name in ("hidden", "batch_size", "epochs"):
            at_least(found, name, getattr(self, name), 1)
        at_least(found, "lr", self.lr, 0.0, strict=True)
        at_least(found, "seed", self.seed, 0)
        return found


@dataclass
class KnnKernelConfig:
    """``kernel.approximation=knn``: each target scored exactly against its nearest candidates only."""

    neighbors: int = 20  # m nearest candidates by embedding cosine (plus the target itself); others UF = 0

    def problems(self) -> Problems:
        found: Problems = {}
        at_least(found, "neighbors", self.neighbors, 1)
        return found


KERNEL_APPROXIMATIONS = ("exact", "learned", "knn")


@dataclass
class KernelConfig:
    """The DELIFT utility kernel (see ``conf/kernel/default.yaml`` for each key)."""

    shown_example: str = "{prompt}{response}\n\n"
    eos_after_prompt: bool = True
    max_length: int = 1024
    on_overflow: str = "error"  # error | skip
    batch_size: int = 16
    tokens_per_batch: int = 8192
    workers: int = 0
    block_size: int = 256
    num_shards: int = 1
    shard: int = 0
    approximation: str = "exact"  # exact | learned | knn (delift.kernel.approximate)
    embedder: str = "all-MiniLM-L6-v2"  # sentence embedder of learned / knn (unused by exact)
    learned: LearnedKernelConfig = field(default_factory=LearnedKernelConfig)
    knn: KnnKernelConfig = field(default_factory=KnnKernelConfig)

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "approximation", self.approximation, KERNEL_APPROXIMATIONS)
        if self.approximation != "exact" and not str(self.embedder).strip():
            found["embedder"] = f"empty: kernel.approximation={self.approximation} needs a sentence embedder"
        choice(found, "on_overflow", self.on_overflow, ("error", "skip"))
        if "{prompt}" not in self.shown_example or "{response}" not in self.shown_example:
            found["shown_example"] = "must contain {prompt} and {response}"
        at_least(found, "max_length", self.max_length, 4)
        for name in ("batch_size", "tokens_per_batch", "block_size", "num_shards"):
            at_least(found, name, getattr(self, name), 1)
        at_least(found, "workers", self.workers, 0)
        if not 0 <= self.shard < max(self.num_shards, 1):
            found["shard"] = f"{self.shard}: must be in [0, kernel.num_shards={self.num_shards})"
        return found
