"""Exact scores of chosen (target, candidate) pairs, for the approximate kernels.

The pairs go through the engine's per-sequence path (``[shown_j][query_i] EOS [response_i] EOS``,
batched by sorted length, ``kernel.batch_size`` a pass), the path the engine itself takes for
truncated pairs: the same numbers as the prefix-cached engine up to fp32 rounding (~1e-6), for
any list of pairs, at the cost of running each candidate's prefix once per pair.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from delift.kernel.attention import grouped_sdpa
from delift.kernel.engine import BlockStats, ScoringSetup, score_per_sequence, score_zero_shot
from delift.kernel.sequences import build_sequence
from delift.kernel.tokens import TokenizedExample


def score_pairs(setup: ScoringSetup, targets: Sequence[TokenizedExample], candidates: Sequence[TokenizedExample],
                rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, BlockStats]:
    """d_one (or l_one) of the pairs (targets[rows[k]], candidates[cols[k]]), one value per pair."""
    stats = BlockStats(pairs=len(rows))
    if not len(rows):
        return np.empty(0), stats
    rows, cols = [int(i) for i in rows], [int(j) for j in cols]

    def build(k: int):
        t = targets[rows[k]]
        return build_sequence(candidates[cols[k]].shown, t.query, t.response, setup.eos_id, setup.eos_after_prompt,
                              setup.max_length, t.id)

    with grouped_sdpa(setup.model), setup.pool() as run:
        values = score_per_sequence(setup, len(rows), build, stats, pairs=True, run=run)
    return values, stats


def score_zero(setup: ScoringSetup, targets: Sequence[TokenizedExample],
               on_batch=None) -> tuple[np.ndarray, BlockStats]:
    """d_zero (or l_zero) of each target (the engine's zero-shot path; ``on_batch(count)`` for progress)."""
    if not len(targets):
        return np.empty(0), BlockStats()
    return score_zero_shot(setup, targets, on_batch=on_batch)
