"""Nuggets: score each example by how often it helps, as a one-shot example, on a golden set.

Li et al. 2024, "One-Shot Learning as Instruction Data Prospector for Large Language Models"
(official code: pldlgb/nuggets). For a golden set G and a pool example c:

    GS(c) = |{g in G : l_one(g, c) > l_zero(g)}| / |G|,
    l_zero(g)   = sum_t log p(y_g,t | x_g, y_g,<t)             (zero-shot)
    l_one(g, c) = sum_t log p(y_g,t | c shown, x_g, y_g,<t)     (c as the one-shot example)

summed over the kernel's scored tokens (the response and the final EOS), with the same sequence
layout as DELIFT's kernel (``[shown c][query g] EOS [response g] EOS``, ``kernel.shown_example``).
A tie counts as a loss (strict ``>``, as the official ``np.greater``). The pool is ranked by GS, the
top k are kept (highest first, ties by pool order).

Cost: one kernel request, targets = G, candidates = pool, with the engine's ``logprob_sum``
aggregate: |G| zero-shot sequences + |G| x n one-shot pairs (each candidate's shown example runs
once per block of targets), not n^2. Its cache key differs from DELIFT's distance kernel.

The golden set (``selector.golden``):

- ``kmeans`` (default, every use case; in continual tuning G comes from the new pool too):
  instruction embeddings (instruction and input joined by a blank line, L2-normalised,
  ``selector.embedder``) of the pool are clustered into ``golden_size`` (capped at the pool size)
  clusters by a seeded k-means (k-means++ initialisation with ``numpy.random.default_rng(ctx.seed)``,
  then Lloyd iterations until no assignment changes, at most ``kmeans_iterations``). For each
  centroid in turn the pool example of highest cosine similarity not taken yet joins G, so G holds
  ``golden_size`` distinct examples. The official code clusters LLM embeddings of the whole prompted
  example with scikit-learn's k-means (100 clusters, Euclidean nearest); ours uses the run's sentence
  embedder and numpy, so no extra dependency and the same result for the same seed everywhere.
- ``query`` (task-specific tuning, ``usecase=task_specific``): G = the use case's query set (the
  target task's ``usecase.query_split``, ``usecase.query_size`` examples); ``golden_size`` is unused.

A golden example is also in the pool (``kmeans``), so its GS includes its own self-pair (shown its
own answer), as in the official code; that adds at most 1/|G| to its score.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from delift.config.schema import Problems, at_least, choice
from delift.data.records import Example, fingerprint
from delift.kernel.settings import KernelRequest, is_sparse
from delift.models.embeddings import DEFAULT_EMBEDDER, embed, embedder_identity, load_sentence_embedder
from delift.selection.base import ScoreSelector, Selection, SelectionContext
from delift.selection.work import EmbeddingPass, KernelWork, ModelWork

GOLDEN_MODES = ("kmeans", "query")
AGGREGATE = "logprob_sum"
KERNEL_META = ("shown_truncated", "shown_dropped", "query_truncated")


def instruction_text(example: Example) -> str:
    """What the golden-set clustering embeds: the instruction, and the input when there is one."""
    return "\n\n".join(part for part in (example.instruction, example.input) if part.strip())


def _squared_distances(x: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """||x_i - c_k||^2 (n x k), in fp64, never below 0."""
    d = (x * x).sum(1)[:, None] - 2.0 * x @ centroids.T + (centroids * centroids).sum(1)[None, :]
    return np.maximum(d, 0.0)


def kmeans(x: np.ndarray, k: int, seed: int, iterations: int = 100) -> np.ndarray:
    """Centroids (k x d) of a deterministic k-means: k-means++ seeding, then Lloyd iterations.

    Seeding: the first centre is a uniform draw from ``default_rng(seed)``, each next one a draw with
    probability proportional to the squared distance to the nearest centre so far (uniform over the
    points not chosen yet when every point sits on a centre). Lloyd: assign each point to its nearest
    centroid (lowest index on a tie), move each centroid to its points' mean (a centroid left with no
    point stays where it is); stop when no assignment changes or after ``iterations`` rounds.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k-means: k={k} clusters for {n} points")
    rng = np.random.default_rng(seed)
    chosen = [int(rng.integers(n))]
    nearest = _squared_distances(x, x[chosen])[:, 0]
    while len(chosen) < k:
        total = nearest.sum()
        if total > 0:
            pick = int(rng.choice(n, p=nearest / total))
        else:  # every point is on a centre (duplicates): any point not chosen yet
            free = np.setdiff1d(np.arange(n), chosen)
            pick = int(free[rng.integers(len(free))])
        chosen.append(pick)
        nearest = np.minimum(nearest, _squared_distances(x, x[[pick]])[:, 0])
    centroids = x[chosen].copy()
    assignment = None
    for _ in range(iterations):
        new = _squared_distances(x, centroids).argmin(1)
        if assignment is not None and np.array_equal(new, assignment):
            break
        assignment = new
        for c in range(k):
            members = assignment == c
            if members.any():
                centroids[c] = x[members].mean(0)
    return centroids


def nearest_distinct(x: np.ndarray, centroids: np.ndarray) -> list[int]:
    """For each centroid in order, the row of ``x`` of highest cosine similarity not taken by an earlier one.

    Ties go to the lower row index. Needs at least as many rows as centroids.
    """
    x = np.asarray(x, dtype=np.float64)
    centroids = np.asarray(centroids, dtype=np.float64)
    if len(centroids) > len(x):
        raise ValueError(f"{len(centroids)} centroids need as many distinct points, got {len(x)}")
    unit = lambda a: a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)  # noqa: E731
    similarity = unit(x) @ unit(centroids).T
    taken: set[int] = set()
    out = []
    for c in range(len(centroids)):
        for i in np.argsort(-similarity[:, c], kind="stable"):
            if int(i) not in taken:
                taken.add(int(i))
                out.append(int(i))
                break
    return out


def golden_indices(embeddings: np.ndarray, size: int, seed: int, iterations: int = 100) -> list[int]:
    """Rows of the golden set: the distinct nearest rows to min(size, n) seeded k-means centroids."""
    k = min(int(size), len(embeddings))
    return nearest_distinct(embeddings, kmeans(embeddings, k, seed, iterations))


def golden_scores(l_zero: np.ndarray, l_one: np.ndarray) -> np.ndarray:
    """GS of each candidate: the fraction of golden rows g with l_one[g, c] > l_zero[g] (a tie is a loss)."""
    l_zero, l_one = np.asarray(l_zero, dtype=np.float64), np.asarray(l_one, dtype=np.float64)
    if l_one.ndim != 2 or l_zero.shape != (l_one.shape[0],) or l_one.shape[0] == 0:
        raise ValueError(f"golden scores: l_zero {l_zero.shape} and l_one {l_one.shape} do not fit (|G| >= 1)")
    return np.greater(l_one, l_zero[:, None]).mean(axis=0)


class NuggetsSelector(ScoreSelector):
    """Top k of the pool by golden score GS (Nuggets), from a logprob-sum kernel G x pool."""

    name = "nuggets"
    label = "Nuggets"
    row_order = None

    @dataclass
    class Config:
        """``conf/selector/nuggets.yaml``."""

        _target_: str = "delift.selection.nuggets.NuggetsSelector"
        # kmeans = pool examples nearest (cosine) to seeded k-means centroids of instruction embeddings (any use
        # case; in continual tuning G comes from the new pool) | query = the use case's query set Q (task_specific)
        golden: str = "kmeans"
        golden_size: int = 100  # k-means clusters = golden examples (the paper's 100), capped at the pool size
        # at most this many Lloyd rounds after k-means++ seeding (stops once nothing moves); both seeded by the run's seed
        kmeans_iterations: int = 100
        # instruction (+ input) embeddings for k-means: offline default (packaged), or a hub id / local folder
        embedder: str = DEFAULT_EMBEDDER
        batch_size: int = 64  # embedder batch size
        device: Optional[str] = None  # embedder device (None: sentence-transformers' choice)

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "golden", self.golden, GOLDEN_MODES)
            at_least(found, "golden_size", self.golden_size, 1)
            at_least(found, "kmeans_iterations", self.kmeans_iterations, 1)
            at_least(found, "batch_size", self.batch_size, 1)
            return found

    # ------------------------------------------------------------------------------------ golden set
    def embeddings(self, examples: Sequence[Example]) -> np.ndarray:
        """L2-normalised instruction embeddings, one row per example."""
        model = load_sentence_embedder(self.config.embedder, self.config.device)
        return embed([instruction_text(ex) for ex in examples], model, batch_size=self.config.batch_size)

    def golden_set(self, ctx: SelectionContext) -> list[Example]:
        """G: the query set (``golden=query``) or the pool examples nearest to seeded k-means centroids.

        The k-means golden set is computed once per context (kept in ``ctx.resources``), so
        :meth:`kernel_requests` and :meth:`select` agree without embedding the pool twice.
        """
        if self.config.golden == "query":
            if not ctx.query:
                raise ValueError("selector.golden=query needs the use case's query set (usecase=task_specific); "
                                 "use selector.golden=kmeans otherwise")
            return list(ctx.query)
        pool = list(ctx.pool)
        if not pool:
            raise ValueError("nuggets: the pool is empty")
        memo = (self.config.embedder, self.config.golden_size, self.config.kmeans_iterations, ctx.seed, tuple(ex.id for ex in pool))
        cached = ctx.resources.get("nuggets_golden")
        if cached is None or cached[0] != memo:
            rows = golden_indices(self.embeddings(pool), self.config.golden_size, ctx.seed, self.config.kmeans_iterations)
            ctx.resources["nuggets_golden"] = cached = (memo, rows)
        return [pool[i] for i in cached[1]]

    def kernel_requests(self, ctx: SelectionContext) -> list[KernelRequest]:
        """One kernel: targets = G, candidates = the pool, sums of log-probabilities (``logprob_sum``)."""
        return [KernelRequest(self.golden_set(ctx), list(ctx.pool), AGGREGATE)]

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """The golden set x pool ``logprob_sum`` kernel. A k-means golden set is known only after the sentence
        embedder ran: evenly spaced pool examples of the same size stand in for it (an estimate)."""
        c = self.config
        if c.golden == "query":
            return [KernelWork("kernel golden x pool", request) for request in self.kernel_requests(ctx)]
        pool = list(ctx.pool)
        size = min(c.golden_size, len(pool))
        golden = [pool[i] for i in np.unique(np.linspace(0, len(pool) - 1, size).round().astype(int))]
        return [EmbeddingPass("embed pool instructions", pool, c.embedder, c.batch_size),
                KernelWork("kernel golden x pool", KernelRequest(golden, pool, AGGREGATE), estimate=True,
                           share=("nuggets", fingerprint(pool), c.golden_size, c.kmeans_iterations, c.embedder,
                                  ctx.seed))]

    # ------------------------------------------------------------------------------------ scoring
    def scores_and_info(self, ctx: SelectionContext) -> tuple[np.ndarray, dict[str, Any]]:
        """GS of every pool example, and what to record in ``Selection.info``."""
        if ctx.kernels is None:
            raise ValueError("the nuggets selector needs a kernel provider in the selection context")
        started = time.perf_counter()
        (request,) = self.kernel_requests(ctx)
        golden_seconds = time.perf_counter() - started
        kernel = ctx.kernels.utility(*request)
        if (list(kernel.target_ids) != [e.id for e in request.targets]
                or list(kernel.candidate_ids) != [e.id for e in request.candidates]):
            raise ValueError("the golden x pool kernel's rows/columns do not match the golden set / pool")
        if kernel.meta.get("aggregate", AGGREGATE) != AGGREGATE:
            raise ValueError(f"nuggets needs a {AGGREGATE} kernel, got {kernel.meta.get('aggregate')!r}")
        # l_one > l_zero exactly when UF = l_one - l_zero > 0 (fp64, finite): reading UF also serves
        # approximate kernels, whose predicted rows have no l_zero / l_one
        uf = kernel.uf
        if is_sparse(uf):  # knn: |G| x pool, small enough dense (an unscored pair, UF = 0, is a loss)
            from delift.kernel.sparse import densify

            uf = densify(uf, "nuggets' golden scores")
        scores = golden_scores(np.zeros(len(kernel.target_ids)), uf)
        info: dict[str, Any] = {
            "golden": self.config.golden, "golden_size": len(request.targets), "golden_size_setting": self.config.golden_size,
            "golden_ids": [e.id for e in request.targets],
            "golden_scores": {ex.id: float(s) for ex, s in zip(ctx.pool, scores)},
            "kernel_key": kernel.meta.get("key"), "kernel_cached": kernel.meta.get("cached"),
            "kernel_seconds": kernel.meta.get("seconds"), "kernel_aggregate": AGGREGATE,
            "zero_shot_logprob_mean": (float(np.nanmean(kernel.d_zero)) if np.isfinite(kernel.d_zero).any()
                                       else None),
            "win_fraction": float(np.mean(scores)),
            **{key: kernel.meta.get(key) for key in KERNEL_META},
        }
        if self.config.golden == "kmeans":
            info.update(embedder=embedder_identity(self.config.embedder), kmeans_iterations=self.config.kmeans_iterations,
                        seed=ctx.seed, golden_seconds=round(golden_seconds, 3))
        return scores, info

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        return self.scores_and_info(ctx)[0]

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        scores, info = self.scores_and_info(ctx)
        order = np.argsort(-scores, kind="stable")[:budget]  # highest first, ties by pool order (ScoreSelector)
        return Selection([int(i) for i in order], [float(scores[i]) for i in order], self.name, budget, info)

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its sentence embedder, for a k-means golden set (a query golden set embeds nothing)."""
        return [("selector.embedder", config.embedder)] if config.embedder and config.golden != "query" else []
