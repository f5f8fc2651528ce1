"""DELIFT's selection on a sparse kernel at scale (no model): ``bench_scale.py --selection-only``.

    python experiments/bench_scale.py --selection-only [--n 100000] [--neighbors 32] [--budget-fraction 0.3]
    python experiments/scale_selection.py --submodlib-sizes 2000,4000     # submodlib's sparse mode, for reference

A seeded random kernel shaped like a ``knn`` one: every row stores itself and ``m`` other distinct random
columns (n (m + 1) float32 entries), values clip(UF) with UF ~ N(0.01, 0.05) off the diagonal and U(0.2, 0.5)
on it (a diagonal-dominated kernel, as the exact ones on Alpaca). The selection runs as the delift selector
runs it (``DeliftSelector.select`` on a CSR kernel: clip, self-pair bookkeeping, facility location), with
``LazyGreedy`` (exact), then ``StochasticGreedy`` for the value ratio f(A_stochastic) / f(A_lazy).

Peak memory: ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of this process. The last line:
``sparse n<n> m<m>: <seconds>s rss <MB>MB``, seconds = building the kernel + the LazyGreedy selection.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import scipy.sparse as sp

from delift.data.records import Example
from delift.kernel.settings import UtilityKernel
from delift.selection.base import SelectionContext
from delift.selection.delift import DeliftSelector
from delift.selection.sparse_submodular import maximize_sparse, sparse_value

OVERDRAW = 8  # extra columns drawn per row, so that m distinct ones remain after dropping repeats


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def random_knn_kernel(n: int, m: int, seed: int = 0) -> sp.csr_matrix:
    """n x n float32 CSR, row i storing column i and m distinct other random columns (sorted), clip(UF) values."""
    rng = np.random.default_rng(seed)
    m = min(m, n - 1)
    drawn = rng.integers(0, n - 1, size=(n, m + OVERDRAW))
    drawn += drawn >= np.arange(n)[:, None]  # skip the row's own column
    drawn.sort(axis=1)
    repeat = np.zeros_like(drawn, dtype=bool)
    repeat[:, 1:] = drawn[:, 1:] == drawn[:, :-1]
    drawn[repeat] = n  # repeats last after sorting again
    drawn.sort(axis=1)
    if np.any(drawn[:, m - 1] >= n):
        raise RuntimeError("fewer than m distinct columns in a row: raise OVERDRAW")
    columns = np.sort(np.concatenate([drawn[:, :m], np.arange(n)[:, None]], axis=1), axis=1)
    values = np.maximum(rng.normal(0.01, 0.05, size=columns.shape), 0.0)
    values[columns == np.arange(n)[:, None]] = rng.uniform(0.2, 0.5, size=n)
    indptr = np.arange(0, n * (m + 1) + 1, m + 1, dtype=np.int64)
    return sp.csr_matrix((values.ravel().astype(np.float32), columns.ravel().astype(np.int32), indptr), shape=(n, n))


class GivenKernel:
    """The kernels front for one pool x pool kernel (what ``Kernels.utility`` returns for knn)."""

    def __init__(self, kernel: UtilityKernel):
        self.kernel = kernel

    def utility(self, targets, candidates):
        return self.kernel


def select(pool, kernel: UtilityKernel, budget: int, optimizer: str, seed: int):
    ctx = SelectionContext(pool=pool, seed=seed, kernels=GivenKernel(kernel), progress=False)
    started = time.perf_counter()
    selection = DeliftSelector(optimizer=optimizer).select(ctx, budget)
    return selection, time.perf_counter() - started


def run_selection(n: int, m: int, budget_fraction: float = 0.3, seed: int = 0) -> None:
    started = time.perf_counter()
    uf = random_knn_kernel(n, m, seed)
    ids = [f"ex{i}" for i in range(n)]
    kernel = UtilityKernel(uf=uf, d_zero=np.zeros(n), d_one=None, target_ids=ids, candidate_ids=ids,
                           meta={"approximation": "knn", "neighbors": m})
    pool = [Example(i, "", "", "", "random") for i in ids]
    build = time.perf_counter() - started
    budget = int(budget_fraction * n)
    print(f"kernel: {n} x {n}, {uf.nnz:,} stored float32 entries ({(uf.data.nbytes + uf.indices.nbytes + uf.indptr.nbytes) / 2**20:.0f} MiB), "
          f"built in {build:.1f} s; budget {budget} ({budget_fraction:.0%})")
    lazy, lazy_seconds = select(pool, kernel, budget, "LazyGreedy", seed)
    lazy_value = sparse_value("facility_location", uf, lazy.indices)
    print(f"LazyGreedy        {lazy_seconds:7.1f} s  f = {lazy_value:.2f}  value ratio 1.0000  "
          f"rss {rss_mb():.0f} MB")
    for optimizer in ("StochasticGreedy",):  # LazierThanLazyGreedy: the same picks (sparse_submodular's doc)
        picked, seconds = select(pool, kernel, budget, optimizer, seed)
        value = sparse_value("facility_location", uf, picked.indices)
        overlap = len(set(picked.indices) & set(lazy.indices)) / budget
        print(f"{optimizer:<17} {seconds:7.1f} s  f = {value:.2f}  value ratio {value / lazy_value:.4f}  "
              f"overlap {overlap:.3f}")
    print(f"sparse n{n} m{m}: {build + lazy_seconds:.1f}s rss {rss_mb():.0f}MB")


def submodlib_reference(sizes: list[int], m: int, budget_fraction: float, seed: int = 0) -> None:
    """submodlib's sparse FacilityLocationFunction on a symmetric kernel (its SparseSim reads an unstored s[i, j]
    as s[j, i], so only a symmetric kernel means what it says): seconds and value ratios of its optimizers against
    our exact lazy greedy on the same kernel."""
    from submodlib import FacilityLocationFunction

    for n in sizes:
        half = random_knn_kernel(n, m // 2, seed)
        s = sp.csr_matrix(half.maximum(half.T), dtype=np.float32)
        s.sort_indices()
        budget = int(budget_fraction * n)
        started = time.perf_counter()
        ours = maximize_sparse("facility_location", s, None, budget)[0]
        print(f"ours      sparse n{n} ~m{m} {'LazyGreedy':<21} {time.perf_counter() - started:7.1f} s  value ratio 1.0000")
        reference = sparse_value("facility_location", s, ours)
        for optimizer in ("LazyGreedy", "StochasticGreedy", "LazierThanLazyGreedy"):
            function = FacilityLocationFunction(n=n, mode="sparse", sijs=s, num_neighbors=int(np.diff(s.indptr).max()))
            started = time.perf_counter()
            picks = function.maximize(budget=budget, optimizer=optimizer, stopIfZeroGain=False,
                                      stopIfNegativeGain=False, verbose=False, show_progress=False)
            seconds = time.perf_counter() - started
            value = sparse_value("facility_location", s, [int(j) for j, _ in picks])
            print(f"submodlib sparse n{n} ~m{m} {optimizer:<21} {seconds:7.1f} s  value ratio {value / reference:.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--neighbors", type=int, default=32)
    parser.add_argument("--budget-fraction", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--submodlib-sizes", default="", help="instead: submodlib's sparse mode at these n")
    args = parser.parse_args()
    if args.submodlib_sizes:
        submodlib_reference([int(n) for n in args.submodlib_sizes.split(",")], args.neighbors, args.budget_fraction,
                            args.seed)
    else:
        run_selection(args.n, args.neighbors, args.budget_fraction, args.seed)


if __name__ == "__main__":
    main()
