"""RDS+, representation-based data selection (Ivison et al. 2025, "Large-Scale Data Selection for Instruction Tuning").

Every pool and target example is embedded by the scoring model itself (``scorer``, else the run's model): the
position-weighted mean of its final hidden states over prompt + response + EOS in the training layout,
``e = sum_t w_t h_t`` with ``w_t = t / sum_s s`` (t = 1..n; SGPT's weighting, the official code's
``weighted_mean`` default), L2-normalised; similarity = cosine between pool and target embeddings.

Selection (``aggregation``):

- ``round_robin`` (default): the target examples take turns; each takes its most similar pool example not yet
  picked (ties by pool order), round after round, until the budget is spent;
- ``max``: the official code's single-task selection: each pool example's score is its highest cosine to any
  target example; the top k are kept (ties by pool order).

Targets: use case 2, the query set Q; use cases 1 and 3, the pool dataset's own valid split (in use case 3 that
is the new task's valid split, what the new tuning must serve). ``target_order: seeded`` shuffles the turn order
with the run's seed (it matters when the budget is smaller than the target set); ``given`` keeps the split's order.
Embeddings are cached per example under ``<paths.cache_dir>/scores`` (the shared score cache), so a sweep embeds
each example once and a killed run resumes from what was stored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.data.records import Example
from delift.scoring import ExampleScorer
from delift.selection.base import Selection, SelectionContext, Selector, target_set, top_k
from delift.selection.work import ModelWork, ScoringPass

AGGREGATIONS = ("round_robin", "max")
TARGET_ORDERS = ("given", "seeded")


def normalise_rows(embeddings: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a zero row stays zero)."""
    embeddings = np.asarray(embeddings, np.float64)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return embeddings / np.where(norms > 0, norms, 1.0)


def cosine_matrix(targets: np.ndarray, pool: np.ndarray) -> np.ndarray:
    """(n_targets, n_pool) cosine similarities."""
    return normalise_rows(targets) @ normalise_rows(pool).T


def round_robin(similarity: np.ndarray, budget: int, turns: np.ndarray | None = None) -> tuple[list[int], list[int]]:
    """Pool indices picked and the target (row) that picked each: rows take turns in ``turns`` order (default
    0..T-1), each taking its most similar pool column not yet picked (ties by pool order)."""
    n_targets, n_pool = similarity.shape
    if n_targets == 0:
        raise ValueError("round-robin selection needs at least one target example")
    budget = min(int(budget), n_pool)
    turns = np.arange(n_targets) if turns is None else np.asarray(turns)
    # each row's pool columns, most similar first (stable: ties by pool order); a pointer skips taken columns
    ranked = np.argsort(-similarity, axis=1, kind="stable")
    pointer = np.zeros(n_targets, dtype=int)
    taken = np.zeros(n_pool, dtype=bool)
    picks, pickers = [], []
    while len(picks) < budget:
        for row in turns:
            if len(picks) >= budget:
                break
            while taken[ranked[row, pointer[row]]]:
                pointer[row] += 1
            column = int(ranked[row, pointer[row]])
            taken[column] = True
            picks.append(column)
            pickers.append(int(row))
    return picks, pickers


class RDSSelector(Selector):
    """RDS+ (see the module docstring)."""

    name = "rds"
    label = "RDS+"
    row_order = None

    @dataclass
    class Config:
        _target_: str = "delift.selection.rds.RDSSelector"
        # round_robin: the target examples take turns, each its most similar unpicked pool example | max: score =
        # the highest cosine to any target, top k (the official code's single-task selection)
        aggregation: str = "round_robin"
        target_order: str = "given"  # given: the target split's order | seeded: turns shuffled with the run's seed
        batch_size: int = 8  # examples per forward pass (right-padded; memory only)
        max_length: int = 1024  # tokens of prompt + response + EOS (the prompt loses tokens from the left)

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "aggregation", self.aggregation, AGGREGATIONS)
            choice(found, "target_order", self.target_order, TARGET_ORDERS)
            at_least(found, "batch_size", self.batch_size, 1)
            at_least(found, "max_length", self.max_length, 1)
            return found

    @staticmethod
    def targets(ctx: SelectionContext) -> tuple[str, list[Example]]:
        """(name, examples) of the target set: Q in use case 2, else the pool dataset's valid split."""
        return target_set(ctx, "rds")

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """One forward pass of the scoring model over the pool and one over the target set, in the training
        layout (the hidden states are pooled; nothing is scored)."""
        c = self.config
        target_name, targets = self.targets(ctx)
        return [ScoringPass("embed pool (RDS+)", ctx.pool, "training", c.batch_size, "weighted_mean_states",
                            c.max_length),
                ScoringPass(f"embed {target_name} (RDS+)", targets, "training", c.batch_size, "weighted_mean_states",
                            c.max_length)]

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        if ctx.model_spec is None or ctx.template is None:
            raise ValueError("rds needs the scoring model_spec and template in the selection context")
        target_name, targets = self.targets(ctx)
        scorer = ExampleScorer(ctx.model_spec, ctx.template, ctx.cache_dir, batch_size=self.config.batch_size,
                               max_length=self.config.max_length, progress=ctx.progress)
        pool_states = scorer.weighted_mean_states(ctx.pool)
        target_states = scorer.weighted_mean_states(targets)
        scorer.release()
        similarity = cosine_matrix(target_states, pool_states)
        best = similarity.max(axis=0)
        info = {"aggregation": self.config.aggregation, "targets": target_name, "target_size": len(targets),
                "scored": scorer.computed, "cache_hits": scorer.cache_hits,
                "mean_similarity": float(similarity.mean()), "mean_best_similarity": float(best.mean()),
                "scores": {ex.id: float(s) for ex, s in zip(ctx.pool, best)}}
        if self.config.aggregation == "max":
            order = top_k(best, budget)
            return Selection(order, [float(best[i]) for i in order], self.name, budget, info=info)
        turns = (np.random.default_rng(ctx.seed).permutation(len(targets)) if self.config.target_order == "seeded"
                 else np.arange(len(targets)))
        order, pickers = round_robin(similarity, budget, turns)
        info.update({"target_order": self.config.target_order, "turns": [targets[t].id for t in turns],
                     "picked_by": [targets[t].id for t in pickers]})
        return Selection(order, [float(similarity[t, i]) for t, i in zip(pickers, order)], self.name, budget,
                         info=info)
