"""FLMI and FLCG: submodlib wrappers against the numpy greedies, hand-worked cases, joint post-processing,
and choosing the objective from the selection context."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_examples

from delift.kernel.postprocess import postprocess_joint
from delift.selection.base import SelectionContext
from delift.selection.objectives import context_objective, resolve_objective, run_objective
from delift.selection.submodular import (
    facility_location_greedy,
    flcg_greedy,
    flcg_submodlib,
    flcg_value,
    flmi_greedy,
    flmi_submodlib,
    flmi_value,
)

HAND = np.array([[1.0, 0.2, 0.0],
                 [0.3, 0.9, 0.1],
                 [0.0, 0.4, 0.8]])  # rows = pool items to cover, columns = candidates
HAND_Q = np.array([[0.5, 0.1],
                   [0.2, 0.6],
                   [0.9, 0.3]])  # pool x Q: caps (eta = 1) are the row maxima 0.5, 0.6, 0.9
HAND_P = np.array([[0.1, 0.0],
                   [0.8, 0.2],
                   [0.0, 0.3]])  # pool x P: penalties (nu = 1) are the row maxima 0.1, 0.8, 0.3


def test_flmi_hand_worked():
    # gain(j) = sum_i min(max(c_i, s[i, j]), cap_i) - sum_i min(c_i, cap_i), caps (0.5, 0.6, 0.9), c = 0:
    # pick 1: col 0: .5 + .3 + 0 = .8; col 1: .2 + .6 + .4 = 1.2; col 2: 0 + .1 + .8 = .9  -> col 1 (1.2)
    #         coverage (.2, .9, .4), capped (.2, .6, .4) = 1.2
    # pick 2: col 0: capped (.5, .6, .4) = 1.5 -> +.3; col 2: capped (.2, .6, .8) = 1.6 -> +.4  -> col 2 (0.4)
    # pick 3: col 0: capped (.5, .6, .8) = 1.9 -> +.3
    # (plain facility location on HAND picks 1, 0, 2: the query caps change the second pick)
    indices, gains = flmi_greedy(HAND, HAND_Q, 3)
    assert indices == [1, 2, 0]
    np.testing.assert_allclose(gains, [1.2, 0.4, 0.3], atol=1e-12)
    assert facility_location_greedy(HAND, 3)[0] == [1, 0, 2]
    indices, gains = flmi_submodlib(HAND, HAND_Q, 2)
    assert indices == [1, 2]
    np.testing.assert_allclose(gains, [1.2, 0.4], atol=1e-6)
    assert flmi_value(HAND, HAND_Q, [1, 2, 0]) == pytest.approx(1.9)
    # eta = 0.5 halves the caps (.25, .3, .45): col 0: .25 + .3 + 0; col 1: .2 + .3 + .4 = .9; col 2: 0 + .1 + .45
    assert flmi_greedy(HAND, HAND_Q, 1, eta=0.5) == ([1], [pytest.approx(0.9)])


def test_flcg_hand_worked():
    # gain(j) = sum_i max(max(c_i, s[i, j]) - pen_i, 0) - sum_i max(c_i - pen_i, 0), penalties (.1, .8, .3):
    # pick 1: col 0: .9 + 0 + 0 = .9; col 1: .1 + .1 + .1 = .3; col 2: 0 + 0 + .5 = .5  -> col 0 (0.9)
    #         coverage (1.0, .3, 0)
    # pick 2: col 1: row 1 .9 - .8 = +.1, row 2 .4 - .3 = +.1 -> .2; col 2: row 2 .8 - .3 = +.5 -> col 2 (0.5)
    # pick 3: col 1: row 1 +.1 (row 2 is already .8) -> col 1 (0.1)
    indices, gains = flcg_greedy(HAND, HAND_P, 3)
    assert indices == [0, 2, 1]
    np.testing.assert_allclose(gains, [0.9, 0.5, 0.1], atol=1e-12)
    indices, gains = flcg_submodlib(HAND, HAND_P, 2)
    assert indices == [0, 2]
    np.testing.assert_allclose(gains, [0.9, 0.5], atol=1e-6)
    assert flcg_value(HAND, HAND_P, [0, 2, 1]) == pytest.approx(1.5)
    # reading s_P as P x pool (the transpose) is a shape error, not a silent different answer
    with pytest.raises(ValueError, match="pool x set"):
        flcg_submodlib(HAND, HAND_P.T, 2)


def _compare(picked, expected, value, n):
    """``picked`` (submodlib) is a greedy run of ``value`` over n candidates, matching the numpy greedy.

    Replaying submodlib's picks, each one must have the best marginal gain and report it (to 1e-5).
    FLMI's caps make exact ties common and submodlib breaks them towards the highest index, numpy
    towards the lowest: the indices must agree wherever the best gain is unique and positive.
    """
    (indices, gains), (ref, ref_gains) = picked, expected
    assert len(set(indices)) == len(indices) == len(ref)
    chosen: list[int] = []
    for step, (j, g) in enumerate(zip(indices, gains)):
        base = value(chosen)
        all_gains = {c: value(chosen + [c]) - base for c in range(n) if c not in chosen}
        best = max(all_gains.values())
        assert all_gains[j] == pytest.approx(best, abs=1e-5) and g == pytest.approx(best, abs=1e-5)
        runner_up = max([v for c, v in all_gains.items() if c != j], default=-np.inf)
        if best > 1e-6 and runner_up < best - 1e-5 and indices[:step] == ref[:step]:
            assert j == ref[step]
        chosen.append(j)
    np.testing.assert_allclose(gains[:len(ref_gains)], ref_gains, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("n,m,budget,param,seed", [(12, 5, 5, 1.0, 0), (40, 7, 12, 1.0, 1), (60, 13, 20, 2.0, 2),
                                                   (30, 30, 9, 0.5, 3), (25, 3, 24, 1.0, 4)])
def test_flmi_submodlib_equals_numpy_greedy(n, m, budget, param, seed):
    rng = np.random.default_rng(seed)
    s, s_q = rng.random((n, n)), rng.random((n, m))
    ref = flmi_greedy(s, s_q, budget, eta=param)
    _compare(flmi_submodlib(s, s_q, budget, eta=param), ref, lambda a: flmi_value(s, s_q, a, eta=param), n)
    assert sum(ref[1]) == pytest.approx(flmi_value(s, s_q, ref[0], eta=param))
    # the orientation matters: the greedy on s.T picks differently
    assert flmi_greedy(s.T, s_q, budget, eta=param)[0] != ref[0]


@pytest.mark.parametrize("n,m,budget,param,seed", [(12, 5, 5, 1.0, 0), (40, 7, 12, 1.0, 1), (60, 13, 20, 0.5, 2),
                                                   (30, 30, 9, 0.7, 3), (25, 3, 24, 1.5, 4)])
def test_flcg_submodlib_equals_numpy_greedy(n, m, budget, param, seed):
    rng = np.random.default_rng(seed)
    s, s_p = rng.random((n, n)), 0.8 * rng.random((n, m))
    ref = flcg_greedy(s, s_p, budget, nu=param)
    _compare(flcg_submodlib(s, s_p, budget, nu=param), ref, lambda a: flcg_value(s, s_p, a, nu=param), n)
    assert sum(ref[1]) == pytest.approx(flcg_value(s, s_p, ref[0], nu=param))
    assert flcg_greedy(s.T, s_p, budget, nu=param)[0] != ref[0]


def test_budget_of_the_whole_pool_falls_back_to_numpy():
    rng = np.random.default_rng(5)
    s, aux = rng.random((6, 6)), rng.random((6, 2))
    assert flmi_submodlib(s, aux, 6) == flmi_greedy(s, aux, 6)  # submodlib refuses budget == n
    assert flcg_submodlib(s, aux, 7) == flcg_greedy(s, aux, 7)
    assert sorted(flcg_submodlib(s, aux, 6)[0]) == list(range(6))


def test_objectives_reject_negative_or_misshapen_kernels():
    with pytest.raises(ValueError, match="non-negative"):
        flmi_submodlib(HAND - 0.5, HAND_Q, 2)
    with pytest.raises(ValueError, match="non-negative"):
        flcg_submodlib(HAND, HAND_P - 0.5, 2)
    with pytest.raises(ValueError, match="square"):
        flmi_submodlib(HAND[:, :2], HAND_Q, 1)
    with pytest.raises(ValueError, match="auxiliary kernel"):
        run_objective("flmi", HAND, None, 2)


def test_joint_postprocessing_by_hand():
    uf = np.array([[0.9, -0.2],
                   [0.1, 0.3]])
    aux = np.array([[0.7],
                    [-0.5]])
    s, s_aux = postprocess_joint(uf, aux, "clip")
    np.testing.assert_allclose(s, [[0.9, 0.0], [0.1, 0.3]])
    np.testing.assert_allclose(s_aux, [[0.7], [0.0]])
    # minmax over both matrices: lo = -0.5 (aux), hi = 0.9 (uf), range 1.4
    s, s_aux = postprocess_joint(uf, aux, "minmax")
    np.testing.assert_allclose(s, [[1.0, 0.3 / 1.4], [0.6 / 1.4, 0.8 / 1.4]])
    np.testing.assert_allclose(s_aux, [[1.2 / 1.4], [0.0]])
    # self pairs (uf's diagonal only) left out of the scale: lo = -0.5, hi = 0.7 (aux), range 1.2; diagonal zeroed
    s, s_aux = postprocess_joint(uf, aux, "minmax", exclude_self_pairs=True)
    np.testing.assert_allclose(s, [[0.0, 0.3 / 1.2], [0.6 / 1.2, 0.0]])
    np.testing.assert_allclose(s_aux, [[1.0], [0.0]])
    s, s_aux = postprocess_joint(uf, aux, "none")
    np.testing.assert_array_equal(s, uf)
    np.testing.assert_array_equal(s_aux, aux)
    assert postprocess_joint(uf, None, "minmax")[1] is None
    with pytest.raises(ValueError, match="non-finite"):
        postprocess_joint(uf, np.array([[np.nan], [0.0]]), "clip")


def test_objective_follows_the_context():
    pool, other = make_examples(4), make_examples(2, prefix="q")
    assert context_objective(SelectionContext(pool=pool, seed=0)) == "facility_location"
    assert context_objective(SelectionContext(pool=pool, seed=0, query=other)) == "flmi"
    assert context_objective(SelectionContext(pool=pool, seed=0, existing=other)) == "flcg"
    with pytest.raises(ValueError, match="both a query set"):
        context_objective(SelectionContext(pool=pool, seed=0, query=other, existing=other))
    with pytest.raises(ValueError, match="empty"):
        context_objective(SelectionContext(pool=pool, seed=0, query=[]))
    ctx = SelectionContext(pool=pool, seed=0, query=other)
    assert resolve_objective("auto", ctx) == resolve_objective("flmi", ctx) == "flmi"
    for wrong in ("facility_location", "flcg"):
        with pytest.raises(ValueError, match=f"selector.objective={wrong}"):
            resolve_objective(wrong, ctx)
    with pytest.raises(ValueError, match="selector.objective"):
        resolve_objective("graph_cut", ctx)
