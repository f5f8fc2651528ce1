"""The kernel's settings, the utility kernel as data, and entry-wise maths (METHOD.md section 1).

For target i and candidate j, with p_t the teacher-forced probability of the t-th token of
y_i (final EOS included):
    d(seq) = sqrt(mean_t (1 - p_t)^2)
    UF[i, j] = d_zero(i) - d_one(i, j)
where the zero-shot sequence shows only x_i and the one-shot sequence shows (x_j, y_j) first.
Rows are targets, columns are candidates, everywhere.

The per-token probabilities can be reduced another way (``aggregate``, per kernel request):

- ``distance`` (default, DELIFT): d = sqrt(mean_t (1 - p_t)^2) in fp64; UF = d_zero - d_one;
- ``logprob_sum`` (Nuggets' golden score): l = sum_t log p_t, log p_t taken from the same fp32
  log-softmax (never the log of a rounded p), summed in fp64. The arrays called ``d_zero`` /
  ``d_one`` then hold l_zero / l_one, and UF = l_one - l_zero: the log-likelihood gain of showing
  the candidate.

Either way UF is "positive when showing candidate j helps target i" (``utility_matrix``).

This module is the bottom of the package: it imports nothing else of ``delift.kernel``.
:class:`BaseKernelConfig` holds the settings of the exact kernel and the choice of approximation;
each approximation strategy (``delift.kernel.approximations``) owns its settings dataclass, and
``delift.kernel.config.KernelConfig`` is this class plus one block per strategy found.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, field, is_dataclass
from typing import Any, ClassVar, NamedTuple, Sequence

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.data.records import Example
from delift.models.embeddings import DEFAULT_EMBEDDER

KERNEL_CODE_VERSION = 3  # bump whenever the numbers an exact kernel holds would change
APPROX_CODE_VERSION = 2  # bump whenever an approximation's numbers would change
EMBEDDING_TEXT = "fields"  # what an approximation embeds of an example (embedding_text)
EXACT = "exact"
DEFAULT_AGGREGATE = "distance"
AGGREGATES = ("distance", "logprob_sum")  # how a sequence's scored-token probabilities become one number


def check_aggregate(aggregate: str) -> str:
    """``aggregate`` when it is one of ``AGGREGATES``, else a ValueError naming the choices."""
    if aggregate not in AGGREGATES:
        raise ValueError(f"kernel aggregate {aggregate!r}: expected one of {', '.join(AGGREGATES)}")
    return aggregate


@dataclass
class BaseKernelConfig:
    """The exact kernel's settings and the approximation's name (see ``conf/kernel/default.yaml``)."""

    APPROXIMATIONS: ClassVar[tuple[str, ...]] = (EXACT,)  # KernelConfig sets every strategy found

    shown_example: str = "{prompt}{response}\n\n"  # how candidate j is shown before the query
    eos_after_prompt: bool = True
    max_length: int = 1024
    on_overflow: str = "error"  # error | skip: a target response that cannot fit
    batch_size: int = 16  # sequences per pass on the per-sequence path (zero-shot, truncated pairs)
    tokens_per_batch: int = 8192  # token budget of one prefix / continuation pass of the engine
    workers: int = 0  # CPU: engine passes run at once (0: one per torch thread, at most 4)
    block_size: int = 256  # targets x candidates per stored block (resume and sharding unit)
    num_shards: int = 1  # processes that split the blocks between them
    shard: int = 0  # which of them this process is
    approximation: str = EXACT  # a strategy of delift.kernel.approximations
    embedder: str = DEFAULT_EMBEDDER  # sentence embedder of the approximations (unused by exact)

    def problems(self) -> Problems:
        found: Problems = {}
        try:
            strategy = self.strategy()
        except ValueError as exc:
            strategy, found["approximation"] = None, f"{self.approximation!r}: {str(exc).split(': ', 1)[1]}"
        if strategy is not None and strategy.uses_embedder and not str(self.embedder).strip():
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

    def identity(self) -> dict[str, Any]:
        """The fields that change an exact kernel's numbers (batching, block size and sharding do not, in fp32)."""
        return {"shown_example": self.shown_example, "eos_after_prompt": self.eos_after_prompt,
                "max_length": self.max_length, "code_version": KERNEL_CODE_VERSION}

    def strategy(self) -> Any:
        """The chosen :class:`~delift.kernel.approximations.base.Approximation` (ValueError for an unknown name):
        given by ``KernelConfig`` (:mod:`delift.kernel.config`), which knows the strategies; this module is the
        bottom of the package and knows none."""
        raise NotImplementedError("BaseKernelConfig knows no approximation strategies: use "
                                  "delift.kernel.config.KernelConfig")

    def approximation_settings(self) -> Any:
        """The chosen strategy's settings block (``kernel.<approximation>``), or None when it has none; a strategy
        outside delift (no block here) gets its ``Config``'s defaults."""
        block = getattr(self, self.approximation, None)
        if is_dataclass(block):
            return block
        if self.approximation in self.APPROXIMATIONS:
            return None
        settings = self.strategy().Config
        return None if settings is None else settings()

    def approximation_identity(self) -> dict[str, Any]:
        """What an approximate kernel's key adds to the exact kernel's payload (the chosen strategy only)."""
        out: dict[str, Any] = {"method": self.approximation, "embedder": self.embedder, "text": EMBEDDING_TEXT,
                               "code_version": APPROX_CODE_VERSION}
        block = self.approximation_settings()
        if block is not None:
            out.update(asdict(block))
        return out


class KernelRequest(NamedTuple):
    """One kernel a selector needs (``Selector.kernel_requests``): ``kernels.utility(*request)`` and
    ``kernels.fill(*request)``; a plain (targets, candidates) pair means the default aggregate."""

    targets: list[Example]
    candidates: list[Example]
    aggregate: str = DEFAULT_AGGREGATE


@dataclass
class UtilityKernel:
    """UF (targets x candidates) with the per-sequence values it came from (``utility_matrix``).

    With the default aggregate ``d_zero`` / ``d_one`` are distances; with ``logprob_sum``
    (``meta["aggregate"]``) they are sums of log-probabilities of the scored tokens. A sparse kernel
    (``kernel.approximation=knn``) holds ``uf`` as a float32 scipy CSR and no d_one (:mod:`delift.kernel.sparse`).
    """

    uf: Any  # (n_targets, n_candidates): np.ndarray, or scipy.sparse.csr_matrix for a sparse kernel
    d_zero: np.ndarray  # (n_targets,)
    d_one: np.ndarray | None  # (n_targets, n_candidates); None for a sparse kernel (uf a CSR: delift.kernel.sparse)
    target_ids: list[str]
    candidate_ids: list[str]
    meta: dict[str, Any] = field(default_factory=dict)


def is_sparse(matrix: Any) -> bool:
    """A scipy sparse matrix, e.g. a knn kernel's ``uf``? (scipy is imported once one exists: composing a config
    does not load it)"""
    scipy_sparse = sys.modules.get("scipy.sparse")
    return scipy_sparse is not None and scipy_sparse.issparse(matrix)


def utility_matrix(d_zero: np.ndarray, d_one: np.ndarray, aggregate: str = DEFAULT_AGGREGATE) -> np.ndarray:
    """UF (targets x candidates), positive when the candidate helps: d_zero - d_one for distances,
    l_one - l_zero for log-probability sums."""
    d_zero, d_one = np.asarray(d_zero), np.asarray(d_one)
    if check_aggregate(aggregate) == "distance":
        return d_zero[:, None] - d_one
    return d_one - d_zero[:, None]


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


def embedding_text(example: Example) -> str:
    """The example's own words: instruction, input (when non-empty) and output, joined by blank lines."""
    return "\n\n".join(part for part in (example.instruction, example.input, example.output) if part.strip())


def embed_examples(examples: Sequence[Example], embedder_name: str) -> np.ndarray:
    """(n, d) float32 L2-normalised sentence embeddings of the examples' texts (``embedding_text``)."""
    from delift.models.embeddings import embed, load_sentence_embedder

    return embed([embedding_text(e) for e in examples], load_sentence_embedder(embedder_name))
