"""Approximate utility kernels: ``kernel.approximation`` = exact (default) | learned | knn.

- ``learned`` (after NN-CIFT, Agarwal & Hakkani-Tur 2025; :mod:`delift.kernel.learned`): the exact UF on
  a seeded sample of ``learned.sample_fraction`` of the targets (and of the candidates; the same
  examples when targets and candidates are one list), computed by the provider as an ordinary exact
  kernel (own cache key, resumable, shardable); a one-hidden-layer network on sentence embeddings
  (:mod:`delift.kernel.pairnet`) trained on it predicts every other entry. A held-out part of the
  sample (``learned.holdout_fraction`` of its examples: every sampled pair touching one of them) reports
  the network's error. Sampled entries keep their exact values; self-pairs are scored exactly
  (``learned.exact_diagonal``); d_zero is scored only for the rows that need it (sampled rows, exact
  self-pairs' rows) and is NaN elsewhere, as is d_one there.
- ``knn`` (:mod:`delift.kernel.knn`): each target is scored exactly against only its ``knn.neighbors``
  nearest candidates by embedding cosine (and itself); every other entry has UF = 0 (d_one = d_zero).

Both are cached whole like the exact kernel, under kernel_cache_key(exact payload + ``approximation``
settings, seed included); the exact kernel's own key never changes. What was approximated is recorded
in ``UtilityKernel.meta`` (``approximation``, sample size, held-out error, neighbours...), which the
DELIFT selector copies into the selection's info.

The embedded text is the example's own fields (instruction, input, output joined by blank lines).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from delift.data.records import Example
from delift.kernel.cache import kernel_cache_key
from delift.kernel.utility import UtilityKernel, check_aggregate, utility_matrix

if TYPE_CHECKING:
    from delift.kernel.provider import KernelProvider

log = logging.getLogger(__name__)

APPROXIMATIONS = ("exact", "learned", "knn")
APPROXIMATION_KEYS = ("approximation", "embedder", "learned", "knn")  # kernel config keys read here, not by KernelSettings
APPROX_CODE_VERSION = 2  # bump whenever an approximation's numbers would change
EMBEDDING_TEXT = "fields"


@dataclass(frozen=True)
class LearnedSettings:
    """``kernel.learned`` (see conf/kernel/default.yaml)."""

    sample_fraction: float = 0.1
    holdout_fraction: float = 0.1
    hidden: int = 100
    lr: float = 1e-4
    batch_size: int = 64
    epochs: int = 20
    seed: int = 0
    exact_diagonal: bool = True


@dataclass(frozen=True)
class KnnSettings:
    """``kernel.knn`` (see conf/kernel/default.yaml)."""

    neighbors: int = 20


def _problems(method: str, embedder: str, learned: LearnedSettings, knn: KnnSettings) -> list[str]:
    found = []
    if method not in APPROXIMATIONS:
        found.append(f"kernel.approximation={method!r}: expected one of {', '.join(APPROXIMATIONS)}")
    if method != "exact" and not str(embedder).strip():
        found.append(f"kernel.embedder: empty, kernel.approximation={method} needs a sentence embedder")
    if not 0.0 < learned.sample_fraction <= 1.0:
        found.append(f"kernel.learned.sample_fraction={learned.sample_fraction!r}: must be in (0, 1]")
    if not 0.0 <= learned.holdout_fraction < 1.0:
        found.append(f"kernel.learned.holdout_fraction={learned.holdout_fraction!r}: must be in [0, 1)")
    for name in ("hidden", "batch_size", "epochs"):
        if getattr(learned, name) < 1:
            found.append(f"kernel.learned.{name}={getattr(learned, name)!r}: must be >= 1")
    if not learned.lr > 0:
        found.append(f"kernel.learned.lr={learned.lr!r}: must be > 0")
    if learned.seed < 0:
        found.append(f"kernel.learned.seed={learned.seed!r}: must be >= 0")
    if knn.neighbors < 1:
        found.append(f"kernel.knn.neighbors={knn.neighbors!r}: must be >= 1")
    return found


def _as_mapping(cfg: Any) -> dict[str, Any]:
    if cfg is None:
        return {}
    if is_dataclass(cfg):
        return {f.name: getattr(cfg, f.name) for f in fields(cfg)}
    if isinstance(cfg, Mapping):
        return dict(cfg)
    return dict(cfg.items())  # an OmegaConf DictConfig


@dataclass(frozen=True)
class ApproximationSettings:
    """How the provider's kernels are computed: ``method`` exact | learned | knn, and their settings."""

    method: str = "exact"
    embedder: str = "all-MiniLM-L6-v2"
    learned: LearnedSettings = field(default_factory=LearnedSettings)
    knn: KnnSettings = field(default_factory=KnnSettings)

    def __post_init__(self) -> None:
        found = _problems(self.method, self.embedder, self.learned, self.knn)
        if found:
            raise ValueError("; ".join(found))

    @classmethod
    def from_config(cls, cfg: Any) -> ApproximationSettings:
        """From the typed ``kernel`` config (or a mapping); keys other than APPROXIMATION_KEYS are ignored."""
        data = _as_mapping(cfg)
        learned = LearnedSettings(**{k: v for k, v in _as_mapping(data.get("learned")).items()
                                     if k in LearnedSettings.__dataclass_fields__})
        knn = KnnSettings(**{k: v for k, v in _as_mapping(data.get("knn")).items()
                             if k in KnnSettings.__dataclass_fields__})
        return cls(method=data.get("approximation", "exact"), embedder=data.get("embedder", cls.embedder),
                   learned=learned, knn=knn)

    @property
    def exact(self) -> bool:
        return self.method == "exact"

    def identity(self) -> dict[str, Any]:
        """What the approximate kernel's key adds to the exact kernel's payload (the chosen method only)."""
        out: dict[str, Any] = {"method": self.method, "embedder": self.embedder, "text": EMBEDDING_TEXT,
                               "code_version": APPROX_CODE_VERSION}
        if self.method == "learned":
            out.update(asdict(self.learned))
        elif self.method == "knn":
            out.update(asdict(self.knn))
        return out


def embedding_text(example: Example) -> str:
    """The example's own words: instruction, input (when non-empty) and output, joined by blank lines."""
    return "\n\n".join(part for part in (example.instruction, example.input, example.output) if part.strip())


def embed_examples(examples: Sequence[Example], embedder_name: str) -> np.ndarray:
    """(n, d) float32 L2-normalised sentence embeddings of the examples' texts."""
    from delift.models.embeddings import embed, load_sentence_embedder

    return embed([embedding_text(e) for e in examples], load_sentence_embedder(embedder_name))


def approximation_payload(provider: KernelProvider, targets, candidates, aggregate: str) -> dict[str, Any]:
    """The exact kernel's payload plus the approximation's settings: the approximate kernel's cache key material."""
    return {**provider.cache_payload(targets, candidates, aggregate),
            "approximation": provider.approximation.identity()}


def uf_of_entries(d_zero_rows: np.ndarray, d_one: np.ndarray, aggregate: str) -> np.ndarray:
    """UF of single entries, d_zero of each entry's target beside its d_one (``utility_matrix`` entry-wise)."""
    return utility_matrix(np.asarray(d_zero_rows, dtype=np.float64), np.asarray(d_one, dtype=np.float64)[:, None],
                          aggregate)[:, 0]


def d_one_of(uf: np.ndarray, d_zero: np.ndarray, aggregate: str) -> np.ndarray:
    """The d_one (or l_one) that gives ``uf`` with ``d_zero``: the inverse of ``utility_matrix``."""
    if check_aggregate(aggregate) == "distance":
        return d_zero[:, None] - uf
    return uf + d_zero[:, None]


def self_pairs(target_ids: Sequence[str], candidate_ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) of every pair whose target and candidate are the same example (same id)."""
    where = {cid: j for j, cid in enumerate(candidate_ids)}
    pairs = [(i, where[tid]) for i, tid in enumerate(target_ids) if tid in where]
    return (np.array([p[0] for p in pairs], dtype=np.int64), np.array([p[1] for p in pairs], dtype=np.int64))


def approximate_utility(provider: KernelProvider, targets: Sequence[Example], candidates: Sequence[Example],
                        aggregate: str) -> UtilityKernel:
    """The approximate kernel of ``provider.approximation``: from the cache, else computed and stored."""
    approx = provider.approximation
    payload = approximation_payload(provider, targets, candidates, aggregate)
    key = kernel_cache_key(payload)
    kernel = provider.cache.load(key)
    if kernel is not None:
        kernel.meta.update(cached=True, key=key)
        return kernel
    started = time.perf_counter()
    if approx.method == "learned":
        from delift.kernel.learned import learned_kernel

        kernel = learned_kernel(provider, targets, candidates, aggregate)
    elif approx.method == "knn":
        from delift.kernel.knn import knn_kernel

        kernel = knn_kernel(provider, targets, candidates, aggregate, key)
    else:
        raise ValueError(f"kernel.approximation={approx.method!r}: not an approximation")
    kernel.meta.update(approximation=approx.method, aggregate=aggregate, cached=False,
                       seconds=time.perf_counter() - started, approximation_settings=approx.identity())
    provider.cache.save(key, kernel, payload)
    kernel.meta["key"] = key
    log.info("%s kernel %s (%dx%d) in %.1f s", approx.method, key[:12], len(targets), len(candidates),
             kernel.meta["seconds"])
    return kernel


def approximate_fill(provider: KernelProvider, targets: Sequence[Example], candidates: Sequence[Example],
                     aggregate: str) -> dict[str, Any]:
    """Sharded precomputation: ``learned`` fills this shard's blocks of its exact sample kernel, ``knn`` this
    shard's row blocks."""
    approx = provider.approximation
    key = kernel_cache_key(approximation_payload(provider, targets, candidates, aggregate))
    if provider.cache.path(key).exists():
        return {"key": key, "aggregate": aggregate, "complete": True, "blocks_computed": 0, "blocks_skipped": 0,
                "pairs": 0, "tokens": 0, "seconds": 0.0, "approximation": approx.method}
    if approx.method == "learned":
        from delift.kernel.learned import learned_sample

        sample = learned_sample([e.id for e in targets], [e.id for e in candidates], approx.learned)
        counts = provider.exact_fill([targets[i] for i in sample.rows], [candidates[j] for j in sample.cols],
                                     aggregate)
        counts.update(sample_key=counts["key"], key=key, approximation="learned")
        return counts  # "complete" is the sample kernel's: the network is trained by the merging run
    if approx.method == "knn":
        from delift.kernel.knn import knn_fill

        return knn_fill(provider, targets, candidates, aggregate, key)
    raise ValueError(f"kernel.approximation={approx.method!r}: not an approximation")
