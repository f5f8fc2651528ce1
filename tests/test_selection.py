"""Selection against the numpy greedy, a hand-worked facility-location case, and the baselines."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_examples
from delift.kernel.utility import UtilityKernel
from delift.selection.base import ScoreSelector, SelectionContext, budget_from_fraction
from delift.selection.baselines import FullSelector, RandomSelector
from delift.selection.delift import DeliftSelector
from delift.selection.submodular import (facility_location_greedy, facility_location_submodlib,
                                         facility_location_value)

HAND = np.array([[1.0, 0.2, 0.0],
                 [0.3, 0.9, 0.1],
                 [0.0, 0.4, 0.8]])


def test_facility_location_hand_worked():
    # pick 1: column sums 1.3, 1.5, 0.9 -> column 1 (1.5); coverage (0.2, 0.9, 0.4)
    # pick 2: column 0 adds 0.8, column 2 adds 0.4 -> column 0; pick 3: column 2 adds 0.4
    for indices, gains in (facility_location_greedy(HAND, 3), facility_location_submodlib(HAND, 3)):
        assert indices == [1, 0, 2]
        np.testing.assert_allclose(gains, [1.5, 0.8, 0.4], atol=1e-6)
    assert facility_location_value(HAND, [1, 0]) == pytest.approx(2.3)


@pytest.mark.parametrize("n,budget,seed", [(10, 3, 0), (40, 12, 1), (80, 24, 2), (25, 24, 3)])
def test_submodlib_equals_numpy_greedy_on_random_asymmetric_kernels(n, budget, seed):
    s = np.random.default_rng(seed).random((n, n))
    expected, expected_gains = facility_location_greedy(s, budget)
    indices, gains = facility_location_submodlib(s, budget)
    # once every row is covered by its best column, all gains are 0 and any order is a valid greedy
    positive = sum(g > 1e-6 for g in expected_gains)
    assert indices[:positive] == expected[:positive]
    assert len(set(indices)) == budget
    np.testing.assert_allclose(gains, expected_gains, rtol=1e-4, atol=1e-6)
    assert sum(gains) == pytest.approx(facility_location_value(s, indices), rel=1e-4)


def test_budget_of_the_whole_pool_orders_everything():
    s = np.random.default_rng(4).random((6, 6))
    indices, gains = facility_location_submodlib(s, 6)  # submodlib refuses budget == n: numpy greedy serves
    assert sorted(indices) == list(range(6))
    assert (indices, gains) == facility_location_greedy(s, 6)
    assert sum(gains) == pytest.approx(facility_location_value(s, indices))


class FakeKernels:
    """Stands in for KernelProvider: returns a fixed UF for the pool."""

    def __init__(self, uf, ids):
        self.kernel = UtilityKernel(uf=uf, d_zero=np.zeros(len(ids)), d_one=-uf, target_ids=ids, candidate_ids=ids,
                                    meta={"key": "fake"})

    def utility(self, targets, candidates):
        assert [t.id for t in targets] == self.kernel.target_ids
        return self.kernel


@pytest.mark.parametrize("postprocess", ["clip", "minmax"])
@pytest.mark.parametrize("exclude_self_pairs", [False, True])
def test_delift_selector_runs_facility_location_on_the_postprocessed_kernel(postprocess, exclude_self_pairs):
    pool = make_examples(12)
    uf = np.random.default_rng(5).normal(0.0, 0.1, (12, 12)) + np.eye(12) * 0.4
    ctx = SelectionContext(pool=pool, seed=0, kernels=FakeKernels(uf, [e.id for e in pool]))
    selection = DeliftSelector(postprocess=postprocess, exclude_self_pairs=exclude_self_pairs).select(ctx, 4)
    s = np.maximum(uf, 0) if postprocess == "clip" else None
    if postprocess == "minmax":
        values = uf[~np.eye(12, dtype=bool)] if exclude_self_pairs else uf
        s = (uf - values.min()) / (values.max() - values.min())
    if exclude_self_pairs:
        s = np.where(np.eye(12, dtype=bool), 0.0, s)
    expected, gains = facility_location_greedy(s, 4)
    assert selection.indices == expected
    np.testing.assert_allclose(selection.gains, gains, rtol=1e-4)
    assert selection.info["kernel_key"] == "fake" and selection.info["postprocess"] == postprocess


def test_delift_selector_unimplemented_objectives_say_so():
    pool = make_examples(4)
    ctx = SelectionContext(pool=pool, seed=0, kernels=FakeKernels(np.eye(4), [e.id for e in pool]))
    with pytest.raises(NotImplementedError, match="flmi"):
        DeliftSelector(objective="flmi").select(ctx, 2)
    with pytest.raises(ValueError, match="selector.objective"):
        DeliftSelector(objective="graph_cut")


def test_random_selector_is_seeded():
    pool = make_examples(30)
    pick = lambda seed: RandomSelector().select(SelectionContext(pool=pool, seed=seed), 9).indices  # noqa: E731
    assert pick(0) == pick(0)
    assert pick(0) != pick(1)
    assert len(set(pick(3))) == 9 and all(0 <= i < 30 for i in pick(3))
    assert pick(0) == [int(i) for i in np.random.default_rng(0).permutation(30)[:9]]


def test_full_selector_and_budget():
    pool = make_examples(7)
    assert FullSelector().select(SelectionContext(pool=pool, seed=0), 2).indices == list(range(7))
    assert budget_from_fraction(0.3, 60) == 18
    assert budget_from_fraction(0.3, 10) == 3  # 0.3 * 10 is 2.9999999999999996 in floating point
    assert budget_from_fraction(1.0, 7) == 7
    with pytest.raises(ValueError, match="selects nothing"):
        budget_from_fraction(0.1, 5)
    with pytest.raises(ValueError, match="budget_fraction"):
        budget_from_fraction(1.5, 5)


def test_score_selector_keeps_top_k_highest_first():
    class Fixed(ScoreSelector):
        name = "fixed"

        def scores(self, ctx):
            return np.array([0.1, 0.9, 0.5, 0.9, -1.0])

    selection = Fixed().select(SelectionContext(pool=make_examples(5), seed=0), 3)
    assert selection.indices == [1, 3, 2] and selection.gains == [0.9, 0.9, 0.5]
