"""Submodular maximisation: submodlib's lazy greedy, and a plain numpy greedy as its cross-check."""

from __future__ import annotations

import numpy as np


def facility_location_value(s: np.ndarray, selected: list[int]) -> float:
    """f(A) = sum_i max_{j in A} s[i, j] (rows are the items to cover, columns the candidates)."""
    if not selected:
        return 0.0
    return float(np.max(s[:, selected], axis=1).sum())


def facility_location_greedy(s: np.ndarray, budget: int) -> tuple[list[int], list[float]]:
    """Naive greedy on f(A) = sum_i max_{j in A} s[i, j]; ties go to the lowest column index."""
    s = np.asarray(s, dtype=np.float64)
    coverage = np.zeros(s.shape[0])
    chosen: list[int] = []
    gains: list[float] = []
    available = np.ones(s.shape[1], dtype=bool)
    for _ in range(min(budget, s.shape[1])):
        gain = np.maximum(s - coverage[:, None], 0.0).sum(axis=0)
        gain[~available] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        gains.append(float(gain[j]))
        available[j] = False
        coverage = np.maximum(coverage, s[:, j])
    return chosen, gains


def facility_location_submodlib(s: np.ndarray, budget: int, optimizer: str = "LazyGreedy") -> tuple[list[int], list[float]]:
    """The same objective maximised by submodlib (dense mode), which reads sijs[i][j] as above."""
    from submodlib import FacilityLocationFunction

    n_rows, n_cols = s.shape
    if n_rows != n_cols:
        raise ValueError(f"facility location needs a square kernel over the pool, got {s.shape}")
    if budget >= n_cols:  # submodlib refuses budget == n; the whole pool in greedy order is cheap anyway
        return facility_location_greedy(s, budget)
    function = FacilityLocationFunction(n=n_cols, mode="dense", sijs=np.ascontiguousarray(s, dtype=np.float32),
                                        separate_rep=False)
    picks = function.maximize(budget=budget, optimizer=optimizer, stopIfZeroGain=False,
                              stopIfNegativeGain=False, verbose=False, show_progress=False)
    return [int(j) for j, _ in picks], [float(g) for _, g in picks]
