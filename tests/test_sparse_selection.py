"""Sparse kernels (kernel.approximation=knn): the lazy and stochastic greedies over CSC against the dense numpy
greedies (ties included), the DELIFT selector on CSR kernels, sparse post-processing and the sparse cache file."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
from conftest import make_examples

from delift.kernel import sparse as sparse_kernel
from delift.kernel.cache import KernelCache
from delift.kernel.settings import UtilityKernel
from delift.kernel.sparse import csr_rows, densify, postprocess_sparse
from delift.selection.base import SelectionContext
from delift.selection.delift import DeliftSelector
from delift.selection.objectives import run_objective
from delift.selection.sparse_submodular import (
    SparseCoverage,
    lazy_greedy,
    maximize_sparse,
    sparse_value,
    stochastic_greedy,
)
from delift.selection.submodular import (
    facility_location_greedy,
    facility_location_value,
    flcg_greedy,
    flcg_value,
    flmi_greedy,
    flmi_value,
)

HAND = np.array([[1.0, 0.2, 0.0],
                 [0.3, 0.9, 0.1],
                 [0.0, 0.4, 0.8]])


def random_sparse(rows: int, cols: int, per_row: int, seed: int, levels: int = 8) -> sp.csr_matrix:
    """``per_row`` stored entries a row at random columns, values k / levels (k = 0..levels): many exact ties,
    all sums exact in float64, so the greedies must agree pick for pick."""
    rng = np.random.default_rng(seed)
    columns = [np.sort(rng.choice(cols, per_row, replace=False)) for _ in range(rows)]
    values = rng.integers(0, levels + 1, rows * per_row) / levels
    return csr_rows(cols, columns, values)


def dense_reference(objective, d, d_aux, budget, eta, nu):
    if objective == "facility_location":
        return facility_location_greedy(d, budget)
    if objective == "flmi":
        return flmi_greedy(d, d_aux, budget, eta)
    return flcg_greedy(d, d_aux, budget, nu)


CASES = [(40, 5, 12, 0), (40, 5, 40, 1), (60, 3, 20, 2), (25, 8, 25, 3), (80, 4, 30, 4), (30, 2, 29, 5)]


@pytest.mark.parametrize("objective", ["facility_location", "flmi", "flcg"])
@pytest.mark.parametrize("n,m,budget,seed", CASES)
@pytest.mark.parametrize("aux_sparse", [True, False])
def test_lazy_greedy_equals_the_dense_numpy_greedy(objective, n, m, budget, seed, aux_sparse):
    s = random_sparse(n, n, m, seed)
    aux = None if objective == "facility_location" else random_sparse(n, 7, 2, seed + 100)
    eta, nu = 0.5, 0.75  # dyadic: caps and penalties stay exact
    expected, expected_gains = dense_reference(objective, s.toarray(), None if aux is None else aux.toarray(),
                                               budget, eta, nu)
    given_aux = aux if aux is None or aux_sparse else aux.toarray()
    picks, gains = maximize_sparse(objective, s, given_aux, budget, eta=eta, nu=nu)
    assert picks == expected  # ties to the lowest index, as the numpy greedy
    np.testing.assert_allclose(gains, expected_gains, rtol=0, atol=1e-12)
    dense_value = {"facility_location": lambda: facility_location_value(s.toarray(), picks),
                   "flmi": lambda: flmi_value(s.toarray(), aux.toarray(), picks, eta),
                   "flcg": lambda: flcg_value(s.toarray(), aux.toarray(), picks, nu)}[objective]()
    assert sparse_value(objective, s, picks, aux, eta, nu) == pytest.approx(dense_value, abs=1e-12)
    assert sum(gains) == pytest.approx(dense_value, abs=1e-9)


def test_hand_worked_on_a_csr_kernel():
    # as tests/test_selection.py: column sums 1.3, 1.5, 0.9 -> 1; then 0 (+0.8), then 2 (+0.4)
    picks, gains = maximize_sparse("facility_location", sp.csr_matrix(HAND), None, 3)
    assert picks == [1, 0, 2]
    np.testing.assert_allclose(gains, [1.5, 0.8, 0.4], atol=1e-12)
    # orientation: rows are covered by columns; the transposed kernel's first pick is its best column, 1 (1.3)
    assert maximize_sparse("facility_location", sp.csr_matrix(HAND.T), None, 1) == ([1], [pytest.approx(1.3)])


def test_stochastic_greedy_is_seeded_and_equals_greedy_when_it_samples_everything():
    s = random_sparse(200, 200, 6, seed=7)
    exact = maximize_sparse("facility_location", s, None, 60)
    # a sample of at least every remaining candidate is the exact greedy (same ties)
    every = stochastic_greedy(SparseCoverage(s, "facility_location"), 200, 60, seed=0, epsilon=1e-300)
    assert every == exact
    first = maximize_sparse("facility_location", s, None, 60, optimizer="StochasticGreedy", seed=3)
    assert first == maximize_sparse("facility_location", s, None, 60, optimizer="LazierThanLazyGreedy", seed=3)
    other = maximize_sparse("facility_location", s, None, 60, optimizer="StochasticGreedy", seed=4)
    assert first[0] != other[0] and len(set(first[0])) == 60
    ratio = sparse_value("facility_location", s, first[0]) / sparse_value("facility_location", s, exact[0])
    assert 0.9 < ratio <= 1.0


def test_lazy_greedy_orders_the_whole_pool_and_refuses_bad_input():
    s = random_sparse(10, 10, 3, seed=1)
    picks, gains = lazy_greedy(SparseCoverage(s, "facility_location"), 10, 10)
    assert sorted(picks) == list(range(10)) and (picks, gains) == facility_location_greedy(s.toarray(), 10)
    negative = sp.csr_matrix(-HAND)
    with pytest.raises(ValueError, match="non-negative"):
        maximize_sparse("facility_location", negative, None, 2)
    with pytest.raises(ValueError, match="optimizer='Bogus'"):
        maximize_sparse("facility_location", sp.csr_matrix(HAND), None, 2, optimizer="Bogus")
    with pytest.raises(ValueError, match=r"pool x set = \(3, m >= 1\)"):
        maximize_sparse("flmi", sp.csr_matrix(HAND), np.ones((2, 2)), 2)


def test_run_objective_sends_a_sparse_kernel_to_the_sparse_greedy():
    s = random_sparse(30, 30, 4, seed=9)
    aux = random_sparse(30, 5, 2, seed=10)
    assert run_objective("flcg", s, aux, 8, nu=0.5) == flcg_greedy(s.toarray(), aux.toarray(), 8, 0.5)


def test_postprocess_sparse_clips_and_drops_self_pairs():
    uf = sp.csr_matrix(np.array([[0.5, -0.2, 0.0], [0.0, -0.1, 0.3], [0.2, 0.0, 0.4]], dtype=np.float32))
    rows, cols = np.array([0, 1, 2]), np.array([0, 1, 2])
    s, aux = postprocess_sparse(uf, None, "clip")
    np.testing.assert_array_equal(s.toarray(), np.maximum(uf.toarray(), 0))
    s, aux = postprocess_sparse(uf, np.array([[-1.0], [2.0], [0.5]]), "clip", rows, cols)
    np.testing.assert_array_equal(s.toarray(), np.array([[0, 0, 0], [0, 0, 0.3], [0.2, 0, 0]], dtype=np.float32))
    np.testing.assert_array_equal(aux, [[0.0], [2.0], [0.5]])
    assert uf[0, 0] == pytest.approx(0.5)  # the input is left alone
    with pytest.raises(ValueError, match="only clip keeps it sparse"):
        postprocess_sparse(uf, None, "minmax")


class SparseKernels:
    """Stands in for the kernels front: a CSR UF per (target ids, candidate ids), as knn returns."""

    def __init__(self, matrices):
        self.matrices = matrices

    def utility(self, targets, candidates):
        key = (tuple(e.id for e in targets), tuple(e.id for e in candidates))
        return UtilityKernel(uf=self.matrices[key], d_zero=np.zeros(len(targets)), d_one=None,
                             target_ids=list(key[0]), candidate_ids=list(key[1]),
                             meta={"key": "knn", "approximation": "knn", "neighbors": 4})


def signed_sparse(rows, cols, per_row, seed):
    """Quantised UF with negative entries (clip drops them) and a stored self-pair in every row of a square one."""
    rng = np.random.default_rng(seed)
    columns = []
    for i in range(rows):
        chosen = set(rng.choice(cols, per_row, replace=False).tolist()) | ({i} if rows == cols else set())
        columns.append(np.array(sorted(chosen)))
    values = (rng.integers(-4, 9, sum(len(c) for c in columns)) / 8).astype(np.float32)
    return csr_rows(cols, columns, values)


@pytest.mark.parametrize("exclude_self_pairs", [False, True])
def test_delift_selector_on_sparse_kernels_matches_the_dense_path(exclude_self_pairs):
    pool, query, existing = make_examples(30), make_examples(6, "q"), make_examples(5, "p")
    ids = lambda examples: tuple(e.id for e in examples)  # noqa: E731
    uf = signed_sparse(30, 30, 4, seed=1)
    matrices = {(ids(pool), ids(pool)): uf, (ids(query), ids(pool)): signed_sparse(6, 30, 4, seed=2),
                (ids(pool), ids(existing)): signed_sparse(30, 5, 2, seed=3)}
    dense_s = np.maximum(uf.toarray().astype(np.float64), 0.0)
    if exclude_self_pairs:
        np.fill_diagonal(dense_s, 0.0)
    selector = DeliftSelector(DeliftSelector.Config(exclude_self_pairs=exclude_self_pairs))
    kernels = SparseKernels(matrices)
    plain = selector.select(SelectionContext(pool=pool, seed=0, kernels=kernels), 9)
    assert (plain.indices, plain.gains) == facility_location_greedy(dense_s, 9)
    s_q = np.maximum(matrices[(ids(query), ids(pool))].toarray().T.astype(np.float64), 0)
    flmi = selector.select(SelectionContext(pool=pool, seed=0, kernels=kernels, query=query, eta=0.5), 9)
    assert flmi.indices == flmi_greedy(dense_s, s_q, 9, 0.5)[0]
    s_p = np.maximum(matrices[(ids(pool), ids(existing))].toarray().astype(np.float64), 0)
    flcg = selector.select(SelectionContext(pool=pool, seed=0, kernels=kernels, existing=existing, nu=0.75), 9)
    assert flcg.indices == flcg_greedy(dense_s, s_p, 9, 0.75)[0]
    dense_uf = uf.toarray().astype(np.float64)
    eye = np.eye(30, dtype=bool)
    info = flmi.info
    assert info["uf_diagonal_mean"] == pytest.approx(dense_uf[eye].mean())
    assert info["uf_offdiagonal_mean"] == pytest.approx(dense_uf[~eye].mean())
    assert info["s_mean"] == pytest.approx(dense_s.mean()) and info["s_aux_mean"] == pytest.approx(s_q.mean())
    assert info["s_aux_rowmax_mean"] == pytest.approx(s_q.max(axis=1).mean())
    assert info["kernel_stored_entries"] == uf.nnz and info["approximation"] == "knn"


def test_minmax_densifies_a_small_sparse_kernel_and_refuses_a_large_one(monkeypatch):
    pool = make_examples(12)
    ids = tuple(e.id for e in pool)
    uf = signed_sparse(12, 12, 3, seed=4)
    kernels = SparseKernels({(ids, ids): uf})
    selection = DeliftSelector(DeliftSelector.Config(postprocess="minmax")).select(SelectionContext(pool=pool, seed=0, kernels=kernels), 4)
    dense = uf.toarray().astype(np.float64)
    s = (dense - dense.min()) / (dense.max() - dense.min())  # unstored zeros take part in the scale
    assert selection.indices == facility_location_greedy(s, 4)[0]
    monkeypatch.setattr(sparse_kernel, "DENSE_LIMIT", 100)
    with pytest.raises(ValueError, match=r"selector.postprocess=minmax needs the sparse 12 x 12 kernel dense"):
        DeliftSelector(DeliftSelector.Config(postprocess="minmax")).select(SelectionContext(pool=pool, seed=0, kernels=kernels), 4)
    assert densify(np.ones((2, 2)), "x").dtype == np.float64


def read_csr(path, key=None):
    return KernelCache.read(path, key, layout="csr")


def test_sparse_cache_file_round_trip_and_damage(tmp_path, caplog):
    uf = signed_sparse(6, 6, 2, seed=5)
    kernel = UtilityKernel(uf=uf, d_zero=np.linspace(0.1, 0.6, 6), d_one=None, target_ids=list("abcdef"),
                           candidate_ids=list("abcdef"), meta={"neighbors": 2})
    path = KernelCache.write(tmp_path / "k.npz", kernel, "k", {"p": 1})
    with np.load(path) as data:
        assert sorted(data.files) == ["d_zero", "meta", "uf_data", "uf_indices", "uf_indptr", "uf_shape"]
        assert json.loads(str(data["meta"]))["layout"] == "csr"
    back = read_csr(path)
    assert sp.isspmatrix_csr(back.uf) and back.uf.dtype == np.float32 and back.uf.nnz == uf.nnz
    np.testing.assert_array_equal(back.uf.toarray(), uf.toarray())
    np.testing.assert_array_equal(back.d_zero, kernel.d_zero)
    assert back.target_ids == list("abcdef") and back.meta["neighbors"] == 2 and back.d_one is None
    assert read_csr(path, "k") is not None  # its own key
    assert read_csr(path, "other") is None and "holds the kernel of key k, not other" in caplog.text
    damaged = sp.csr_matrix(uf, copy=True)
    damaged.data[0] = np.nan
    KernelCache.write(path, UtilityKernel(damaged, kernel.d_zero, None, kernel.target_ids, kernel.candidate_ids), "k",
                       {})
    assert read_csr(path) is None and "uf holds 1 non-finite" in caplog.text
    np.savez(tmp_path / "dense.npz", uf=uf.toarray(), meta=np.array("{}"))  # the old dense layout: rebuilt
    assert read_csr(tmp_path / "dense.npz") is None and "dense layout" in caplog.text
    assert read_csr(tmp_path / "absent.npz") is None


def load_scale_selection():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "experiments" / "scale_selection.py"
    spec = importlib.util.spec_from_file_location("scale_selection", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_kernel_is_knn_shaped_and_the_bench_prints_its_last_line(capsys):
    scale = load_scale_selection()
    s = scale.random_knn_kernel(500, 7, seed=2)
    assert s.shape == (500, 500) and s.nnz == 500 * 8 and s.dtype == np.float32 and s.data.min() >= 0
    for i in (0, 123, 499):
        row = s.indices[s.indptr[i]:s.indptr[i + 1]]
        assert len(set(row.tolist())) == 8 and i in row and np.all(np.diff(row) > 0)
    np.testing.assert_array_equal(scale.random_knn_kernel(500, 7, seed=2).toarray(), s.toarray())  # seeded
    rect = scale.random_rectangular(40, 300, 5, seed=1)
    assert rect.shape == (40, 300) and rect.nnz == 200 and all(len(set(rect[i].indices)) == 5 for i in range(40))
    scale.run_selection(300, 5, 0.3, aux=20)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("sparse n300 m5: ") and lines[-1].endswith("MB")
    assert [line.split()[:2] for line in lines[1:-1]] == [["FL", "LazyGreedy"], ["FL", "StochasticGreedy"],
                                                          ["FLMI", "LazyGreedy"], ["FLCG", "LazyGreedy"]]


def test_nuggets_reads_a_sparse_golden_kernel_with_unscored_pairs_as_losses():
    from delift.selection.nuggets import NuggetsSelector

    pool, query = make_examples(4, "c"), make_examples(3, "q")
    # UF = l_one - l_zero on the scored pairs only; unscored pairs are UF = 0, a tie, so a loss
    uf = sp.csr_matrix((np.array([1.0, -1.0, 0.5, 2.0, 0.0], dtype=np.float32), np.array([0, 2, 3, 1, 3]),
                        np.array([0, 2, 3, 5])), shape=(3, 4))

    class Golden:
        def utility(self, targets, candidates, aggregate="distance"):
            return UtilityKernel(uf=uf, d_zero=np.full(3, -5.0), d_one=None, target_ids=[t.id for t in targets],
                                 candidate_ids=[c.id for c in candidates], meta={"aggregate": aggregate})

    ctx = SelectionContext(pool=pool, seed=0, kernels=Golden(), query=query)
    selection = NuggetsSelector(NuggetsSelector.Config(golden="query")).select(ctx, 2)
    # wins per candidate: c0 1 (row 0), c1 1 (row 2), c2 0 (row 0 loses), c3 1 (row 1; row 2 ties) -> GS 1/3, 1/3, 0, 1/3
    assert selection.indices == [0, 1] and selection.gains == pytest.approx([1 / 3, 1 / 3])


def test_report_reads_a_sparse_kernel_file(tmp_path):
    from delift.report.kernel_figures import load_kernel

    uf = signed_sparse(5, 5, 2, seed=6)
    kernel = UtilityKernel(uf=uf, d_zero=np.zeros(5), d_one=None, target_ids=list("abcde"),
                           candidate_ids=list("abcde"))
    read, targets, candidates = load_kernel(KernelCache.write(tmp_path / "k.npz", kernel, "k", {}))
    assert sp.issparse(read) and targets == candidates == list("abcde")
    np.testing.assert_array_equal(read.toarray(), uf.toarray())


def test_the_cost_plan_counts_a_knn_kernels_stored_entries():
    from delift.kernel.approximations.knn import KnnConfig
    from delift.kernel.config import KernelConfig
    from delift.plan.kernel import kernel_bytes, stored_entries

    knn = KernelConfig(approximation="knn", knn=KnnConfig(neighbors=8))
    assert stored_entries(knn, 1000, 1000) == 9000 and stored_entries(knn, 10, 5) == 50
    assert stored_entries(KernelConfig(), 1000, 1000) == 10 ** 6
    # memory: float32 value + int32 column a stored entry, d_zero and the row pointers 8 bytes a row each
    assert kernel_bytes(knn, 1000, 1000, 0)[1] == 8 * 9000 + 16 * 1000
    assert kernel_bytes(KernelConfig(), 1000, 1000, 0)[1] == 16 * 10 ** 6 + 8 * 1000  # dense: unchanged
