"""Submodular maximisation: submodlib's lazy greedy, and plain numpy greedies as its cross-check.

Orientation everywhere (METHOD.md section 2): ``s`` is pool x pool with s[i, j] = how well
candidate j covers pool item i (rows = items to cover, columns = candidates); the auxiliary kernel
is pool x |Q| (``s_q``) or pool x |P| (``s_p``), its rows again the pool items.

- facility location   f(A)     = sum_{i in V} max_{j in A} s[i, j]
- FL mutual info      I(A; Q)  = sum_{i in V} min( max_{j in A} s[i, j], eta * max_{q in Q} s_q[i, q] )
- FL conditional gain f(A | P) = sum_{i in V} max( max_{j in A} s[i, j] - nu * max_{p in P} s_p[i, p], 0 )

The coverage of an empty set is 0 (as in submodlib), so the kernels must be non-negative.
submodlib reads ``data_sijs[i][j]``, ``query_sijs[i][q]`` and ``private_sijs[i][p]`` exactly in
this orientation: checked on random asymmetric, non-square kernels in tests/test_objectives.py
(same picks, same gains). Two differences from the numpy greedies, neither a change of objective:
submodlib breaks exact ties towards the highest index (numpy: the lowest), and it computes in
float32. Once every gain is 0 (FLMI saturates when each pool item is covered up to its query
cap) the remaining picks are an arbitrary, though deterministic, fill of the budget.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

Greedy = tuple[list[int], list[float]]


def _coverage(s: np.ndarray, selected: list[int]) -> np.ndarray:
    """max_{j in A} s[i, j] per row, 0 for the empty set."""
    return np.max(s[:, selected], axis=1) if selected else np.zeros(s.shape[0])


def facility_location_value(s: np.ndarray, selected: list[int]) -> float:
    """f(A) = sum_i max_{j in A} s[i, j] (rows are the items to cover, columns the candidates)."""
    return float(_coverage(np.asarray(s, dtype=np.float64), selected).sum())


def flmi_value(s: np.ndarray, s_q: np.ndarray, selected: list[int], eta: float = 1.0) -> float:
    """I(A; Q) = sum_i min(max_{j in A} s[i, j], eta * max_q s_q[i, q])."""
    cap = eta * np.max(np.asarray(s_q, dtype=np.float64), axis=1)
    return float(np.minimum(_coverage(np.asarray(s, dtype=np.float64), selected), cap).sum())


def flcg_value(s: np.ndarray, s_p: np.ndarray, selected: list[int], nu: float = 1.0) -> float:
    """f(A | P) = sum_i max(max_{j in A} s[i, j] - nu * max_p s_p[i, p], 0)."""
    penalty = nu * np.max(np.asarray(s_p, dtype=np.float64), axis=1)
    return float(np.maximum(_coverage(np.asarray(s, dtype=np.float64), selected) - penalty, 0.0).sum())


def _greedy(s: np.ndarray, budget: int, row_value: Callable[[np.ndarray], np.ndarray]) -> Greedy:
    """Plain greedy for sum_i row_value(coverage_i), coverage_i = max_{j in A} s[i, j].

    ``row_value`` maps coverages (any shape, rows on axis 0) to each row's contribution and must be
    non-decreasing; the gain of candidate j is sum_i row_value(max(c_i, s[i, j])) - row_value(c_i).
    Ties go to the lowest column index.
    """
    s = np.asarray(s, dtype=np.float64)
    coverage = np.zeros(s.shape[0])
    available = np.ones(s.shape[1], dtype=bool)
    chosen: list[int] = []
    gains: list[float] = []
    for _ in range(min(budget, s.shape[1])):
        current = row_value(coverage).sum()
        gain = row_value(np.maximum(s, coverage[:, None])).sum(axis=0) - current
        gain[~available] = -np.inf
        j = int(np.argmax(gain))
        chosen.append(j)
        gains.append(float(gain[j]))
        available[j] = False
        coverage = np.maximum(coverage, s[:, j])
    return chosen, gains


def _per_row(values: np.ndarray, like: np.ndarray) -> np.ndarray:
    """``values`` (one per row) shaped to broadcast against ``like`` (n,) or (n, m)."""
    return values if like.ndim == 1 else values[:, None]


def _check_pool_kernel(s: np.ndarray, what: str) -> np.ndarray:
    """``s`` checked, in its own floating dtype (no float64 copy of a 10k x 10k float32 kernel)."""
    s = np.asarray(s)
    if not np.issubdtype(s.dtype, np.floating):
        s = s.astype(np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"{what} needs a square kernel over the pool, got shape {s.shape}")
    if s.size and s.min() < 0:
        raise ValueError(f"{what} needs a non-negative kernel (min {s.min():.4g}); post-process it first")
    return s


def _check_aux_kernel(aux: np.ndarray, n: int, what: str) -> np.ndarray:
    aux = np.asarray(aux, dtype=np.float64)
    if aux.ndim != 2 or aux.shape[0] != n or aux.shape[1] < 1:
        raise ValueError(f"{what} must be pool x set = ({n}, m >= 1), got shape {aux.shape}")
    if aux.min() < 0:
        raise ValueError(f"{what} must be non-negative (min {aux.min():.4g}); post-process it first")
    return aux


def facility_location_greedy(s: np.ndarray, budget: int) -> Greedy:
    """Naive greedy on f(A) = sum_i max_{j in A} s[i, j]; ties go to the lowest column index."""
    return _greedy(s, budget, lambda c: c)


def flmi_greedy(s: np.ndarray, s_q: np.ndarray, budget: int, eta: float = 1.0) -> Greedy:
    """Naive greedy on I(A; Q) = sum_i min(max_{j in A} s[i, j], eta * max_q s_q[i, q])."""
    cap = eta * np.max(np.asarray(s_q, dtype=np.float64), axis=1)
    return _greedy(s, budget, lambda c: np.minimum(c, _per_row(cap, c)))


def flcg_greedy(s: np.ndarray, s_p: np.ndarray, budget: int, nu: float = 1.0) -> Greedy:
    """Naive greedy on f(A | P) = sum_i max(max_{j in A} s[i, j] - nu * max_p s_p[i, p], 0)."""
    penalty = nu * np.max(np.asarray(s_p, dtype=np.float64), axis=1)
    return _greedy(s, budget, lambda c: np.maximum(c - _per_row(penalty, c), 0.0))


def _maximize(function, budget: int, optimizer: str) -> Greedy:
    picks = function.maximize(budget=budget, optimizer=optimizer, stopIfZeroGain=False,
                              stopIfNegativeGain=False, verbose=False, show_progress=False)
    return [int(j) for j, _ in picks], [float(g) for _, g in picks]


def facility_location_submodlib(s: np.ndarray, budget: int, optimizer: str = "LazyGreedy") -> Greedy:
    """The same objective maximised by submodlib (dense mode), which reads sijs[i][j] as above."""
    from submodlib import FacilityLocationFunction

    s = _check_pool_kernel(s, "facility location")
    n = s.shape[1]
    if budget >= n:  # submodlib refuses budget == n; the whole pool in greedy order is cheap anyway
        return facility_location_greedy(s, budget)
    function = FacilityLocationFunction(n=n, mode="dense", sijs=np.ascontiguousarray(s, dtype=np.float32),
                                        separate_rep=False)
    return _maximize(function, budget, optimizer)


# objective -> submodlib's class, its auxiliary-kernel and parameter keywords, the numpy greedy, what s and s_aux are
GUIDED = {"flmi": ("FacilityLocationMutualInformationFunction", "query_sijs", "magnificationEta", flmi_greedy,
                   "FLMI", "FLMI query kernel s_Q"),
          "flcg": ("FacilityLocationConditionalGainFunction", "private_sijs", "privacyHardness", flcg_greedy,
                   "FLCG", "FLCG existing-data kernel s_P")}


def guided_submodlib(objective: str, s: np.ndarray, s_aux: np.ndarray, budget: int, param: float = 1.0,
                     optimizer: str = "LazyGreedy") -> Greedy:
    """FLMI I(A; Q) or FLCG f(A | P) maximised by submodlib's FacilityLocationMutualInformationFunction /
    FacilityLocationConditionalGainFunction.

    data_sijs = s (pool x pool) and query_sijs = s_Q (pool x Q), magnificationEta = eta (FLMI), or
    private_sijs = s_P (pool x P), privacyHardness = nu (FLCG); budget >= n (which submodlib refuses) falls
    back to the numpy greedy.
    """
    import submodlib

    function_name, aux_keyword, param_keyword, greedy, what, aux_what = GUIDED[objective]
    s = _check_pool_kernel(s, what)
    s_aux = _check_aux_kernel(s_aux, s.shape[0], aux_what)
    if budget >= s.shape[0]:
        return greedy(s, s_aux, budget, param)
    function = getattr(submodlib, function_name)(
        s.shape[0], s_aux.shape[1], data_sijs=np.ascontiguousarray(s, dtype=np.float32),
        **{aux_keyword: np.ascontiguousarray(s_aux, dtype=np.float32), param_keyword: float(param)})
    return _maximize(function, budget, optimizer)


def flmi_submodlib(s: np.ndarray, s_q: np.ndarray, budget: int, eta: float = 1.0,
                   optimizer: str = "LazyGreedy") -> Greedy:
    """:func:`guided_submodlib` of FLMI."""
    return guided_submodlib("flmi", s, s_q, budget, eta, optimizer)


def flcg_submodlib(s: np.ndarray, s_p: np.ndarray, budget: int, nu: float = 1.0,
                   optimizer: str = "LazyGreedy") -> Greedy:
    """:func:`guided_submodlib` of FLCG."""
    return guided_submodlib("flcg", s, s_p, budget, nu, optimizer)
