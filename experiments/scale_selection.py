"""DELIFT's selection on a sparse kernel at scale (no model): ``bench_scale.py --selection-only``.

    python experiments/bench_scale.py --selection-only [--n 100000] [--neighbors 32] [--budget-fraction 0.3]
    python experiments/scale_selection.py --submodlib-sizes 2000,4000     # submodlib's sparse mode, for reference

A seeded random kernel shaped like a ``knn`` one: every row stores itself and ``m`` other distinct random
columns (n (m + 1) float32 entries), values clip(UF) with UF ~ N(0.01, 0.05) off the diagonal and U(0.2, 0.5)
on it (a diagonal-dominated kernel, as the exact ones on Alpaca). The selection runs as the delift selector
runs it (``DeliftSelector.select`` on a CSR kernel: clip, self-pair bookkeeping, facility location), with
``LazyGreedy`` (exact), then ``StochasticGreedy`` for the value ratio f(A_stochastic) / f(A_lazy); then FLMI
and FLCG (LazyGreedy) against random knn-shaped Q x pool and pool x P kernels (|Q| = |P| = ``--aux``).

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


def distinct_columns(rng: np.random.Generator, rows: int, cols: int, m: int, skip_own: bool) -> np.ndarray:
    """(rows, m) sorted distinct random columns per row (never the row's own index when ``skip_own``)."""
    drawn = rng.integers(0, cols - skip_own, size=(rows, m + OVERDRAW))
    if skip_own:
        drawn += drawn >= np.arange(rows)[:, None]
    drawn.sort(axis=1)
    repeat = np.zeros_like(drawn, dtype=bool)
    repeat[:, 1:] = drawn[:, 1:] == drawn[:, :-1]
    drawn[repeat] = cols  # repeats last after sorting again
    drawn.sort(axis=1)
    if np.any(drawn[:, m - 1] >= cols):
        raise RuntimeError("fewer than m distinct columns in a row: raise OVERDRAW")
    return drawn[:, :m]


def uf_values(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.maximum(rng.normal(0.01, 0.05, size=shape), 0.0)


def random_knn_kernel(n: int, m: int, seed: int = 0) -> sp.csr_matrix:
    """n x n float32 CSR, row i storing column i and m distinct other random columns (sorted), clip(UF) values."""
    rng = np.random.default_rng(seed)
    m = min(m, n - 1)
    columns = np.sort(np.concatenate([distinct_columns(rng, n, n, m, True), np.arange(n)[:, None]], axis=1), axis=1)
    values = uf_values(rng, columns.shape)
    values[columns == np.arange(n)[:, None]] = rng.uniform(0.2, 0.5, size=n)
    indptr = np.arange(0, n * (m + 1) + 1, m + 1, dtype=np.int64)
    return sp.csr_matrix((values.ravel().astype(np.float32), columns.ravel().astype(np.int32), indptr), shape=(n, n))


def random_rectangular(rows: int, cols: int, m: int, seed: int) -> sp.csr_matrix:
    """rows x cols float32 CSR, m distinct random columns a row: a knn kernel between two different sets."""
    rng = np.random.default_rng(seed)
    m = min(m, cols)
    columns = distinct_columns(rng, rows, cols, m, False)
    indptr = np.arange(0, rows * m + 1, m, dtype=np.int64)
    return sp.csr_matrix((uf_values(rng, columns.shape).ravel().astype(np.float32), columns.ravel().astype(np.int32),
                          indptr), shape=(rows, cols))


class GivenKernels:
    """The kernels front over given UF matrices (what ``Kernels.utility`` returns for knn), by (targets, candidates)."""

    def __init__(self, matrices: dict[tuple[str, str], sp.csr_matrix]):
        self.matrices = matrices

    def utility(self, targets, candidates):
        uf = self.matrices[(targets[0].id, candidates[0].id)]
        return UtilityKernel(uf=uf, d_zero=np.zeros(len(targets)), d_one=None, target_ids=[e.id for e in targets],
                             candidate_ids=[e.id for e in candidates], meta={"approximation": "knn"})


def examples(prefix: str, n: int) -> list[Example]:
    return [Example(f"{prefix}{i}", "", "", "", "random") for i in range(n)]


def select(ctx: SelectionContext, budget: int, optimizer: str):
    """The selection, its wall seconds, and its CPU seconds (a shared machine stretches the wall time)."""
    started, cpu = time.perf_counter(), time.process_time()
    selection = DeliftSelector(DeliftSelector.Config(optimizer=optimizer)).select(ctx, budget)
    return selection, time.perf_counter() - started, time.process_time() - cpu


def run_selection(n: int, m: int, budget_fraction: float = 0.3, seed: int = 0, aux: int = 1000) -> None:
    """FL with LazyGreedy and StochasticGreedy, then FLMI (|Q| = ``aux``) and FLCG (|P| = ``aux``) with LazyGreedy."""
    started = time.perf_counter()
    uf = random_knn_kernel(n, m, seed)
    pool = examples("ex", n)
    build = time.perf_counter() - started
    budget = int(budget_fraction * n)
    print(f"kernel: {n} x {n}, {uf.nnz:,} stored float32 entries "
          f"({(uf.data.nbytes + uf.indices.nbytes + uf.indptr.nbytes) / 2**20:.0f} MiB), built in {build:.1f} s; "
          f"budget {budget} ({budget_fraction:.0%})")
    kernels = GivenKernels({("ex0", "ex0"): uf})
    ctx = SelectionContext(pool=pool, seed=seed, kernels=kernels, progress=False)
    lazy, lazy_seconds, cpu = select(ctx, budget, "LazyGreedy")
    lazy_value = sparse_value("facility_location", uf, lazy.indices)
    print(f"FL   LazyGreedy        {lazy_seconds:7.1f} s (cpu {cpu:6.1f} s)  f = {lazy_value:.2f}  value ratio 1.0000  "
          f"rss {rss_mb():.0f} MB")
    for optimizer in ("StochasticGreedy",):  # LazierThanLazyGreedy: the same picks (sparse_submodular's doc)
        picked, seconds, cpu = select(ctx, budget, optimizer)
        value = sparse_value("facility_location", uf, picked.indices)
        overlap = len(set(picked.indices) & set(lazy.indices)) / budget
        print(f"FL   {optimizer:<17} {seconds:7.1f} s (cpu {cpu:6.1f} s)  f = {value:.2f}  value ratio "
              f"{value / lazy_value:.4f}  overlap {overlap:.3f}")
    if aux:
        query, existing = examples("q", aux), examples("p", aux)
        kernels.matrices[("q0", "ex0")] = random_rectangular(aux, n, m, seed + 1)  # Q x pool
        kernels.matrices[("ex0", "p0")] = random_rectangular(n, aux, m, seed + 2)  # pool x P
        for objective, extra in (("FLMI", {"query": query}), ("FLCG", {"existing": existing})):
            picked, seconds, cpu = select(SelectionContext(pool=pool, seed=seed, kernels=kernels, progress=False,
                                                           **extra), budget, "LazyGreedy")
            print(f"{objective} LazyGreedy        {seconds:7.1f} s (cpu {cpu:6.1f} s)  |aux| {aux}  positive-gain "
                  f"picks {picked.info['positive_gain_picks']}")
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
    parser.add_argument("--aux", type=int, default=1000, help="|Q| and |P| of the FLMI / FLCG rows (0: none)")
    parser.add_argument("--submodlib-sizes", default="", help="instead: submodlib's sparse mode at these n")
    args = parser.parse_args()
    if args.submodlib_sizes:
        submodlib_reference([int(n) for n in args.submodlib_sizes.split(",")], args.neighbors, args.budget_fraction,
                            args.seed)
    else:
        run_selection(args.n, args.neighbors, args.budget_fraction, args.seed, args.aux)


if __name__ == "__main__":
    main()
