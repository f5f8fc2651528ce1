"""How far an approximate kernel, and the subset selected on it, agree with the exact kernel's.

Torch-free numbers for ``experiments/bench_scale.py``, on a square pool kernel (rows targets, columns
candidates, the same examples in the same order) whose examples may carry task labels
(``data=structured``, :mod:`delift.data.structured`):

- :func:`coverage`: share of the tasks with at least one pick;
- :func:`fl_off`: facility location on the exact similarities with the self-pairs set to 0, of a subset as a
  share of the exact subset's (the diagonal, showing an example its own answer, dominates f otherwise);
- :func:`off_diagonal_spearman`, :func:`overlap`;
- :func:`block_means`: mean UF over off-diagonal pairs within one task and across two tasks;
- :func:`target_share`: the share of picks from one task (use case 2), to set against its base rate.
"""

from __future__ import annotations

from typing import Collection, Sequence

import numpy as np


def _square(s: np.ndarray) -> np.ndarray:
    s = np.asarray(s, dtype=np.float64)
    if s.ndim != 2 or s.shape[0] != s.shape[1]:
        raise ValueError(f"expected a square pool kernel, got shape {s.shape}")
    return s


def off_diagonal(m: np.ndarray) -> np.ndarray:
    """The entries of square ``m`` off its diagonal, row by row."""
    m = _square(m)
    return m[~np.eye(m.shape[0], dtype=bool)]


def coverage(picks: Sequence[int], labels: Sequence[str], tasks: Collection[str]) -> float:
    """|{tasks with >= 1 pick}| / |tasks|; picks of examples whose label is not in ``tasks`` count for nothing."""
    tasks = set(tasks)
    if not tasks:
        raise ValueError("coverage needs at least one task")
    return len({labels[p] for p in picks} & tasks) / len(tasks)


def fl_value_off(s: np.ndarray, picks: Sequence[int]) -> float:
    """sum_i max_{j in A, j != i} s[i, j] (0 for a row whose only pick is itself, or an empty A)."""
    s = _square(s).copy()
    np.fill_diagonal(s, 0.0)
    picks = list(picks)
    return float(np.max(s[:, picks], axis=1).sum()) if picks else 0.0


def fl_off(s: np.ndarray, picks: Sequence[int], reference: Sequence[int]) -> float:
    """:func:`fl_value_off` of ``picks`` over that of ``reference`` (NaN when the reference's is 0)."""
    best = fl_value_off(s, reference)
    return fl_value_off(s, picks) / best if best > 0 else float("nan")


def overlap(picks: Sequence[int], reference: Sequence[int]) -> float:
    """|picks ∩ reference| / |reference|."""
    return len(set(picks) & set(reference)) / len(set(reference)) if len(reference) else float("nan")


def spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation (None for fewer than 2 pairs or a constant side)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.size < 2 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def off_diagonal_spearman(a: np.ndarray, b: np.ndarray) -> float | None:
    """Spearman's rank correlation of the off-diagonal entries (None when a side is constant)."""
    return spearman(off_diagonal(a), off_diagonal(b))


def block_means(uf: np.ndarray, labels: Sequence[str], tasks: Collection[str] | None = None) -> tuple[float, float]:
    """(within, across): the mean of ``uf`` over off-diagonal pairs of one task, and of two different tasks.

    Only pairs whose two labels are in ``tasks`` count (default: every label); NaN when no pair does."""
    uf = _square(uf)
    labels = np.asarray(labels, dtype=object)
    if len(labels) != uf.shape[0]:
        raise ValueError(f"{len(labels)} labels for a {uf.shape[0]}-example kernel")
    keep = np.ones(len(labels), dtype=bool) if tasks is None else np.isin(labels, list(tasks))
    both = np.outer(keep, keep) & ~np.eye(len(labels), dtype=bool)
    same = np.equal.outer(labels, labels)
    within, across = uf[both & same], uf[both & ~same]
    return (float(within.mean()) if within.size else float("nan"),
            float(across.mean()) if across.size else float("nan"))


def target_share(picks: Sequence[int], labels: Sequence[str], task: str) -> float:
    """Share of ``picks`` labelled ``task``."""
    picks = list(picks)
    return sum(labels[p] == task for p in picks) / len(picks) if picks else float("nan")


def base_rate(labels: Sequence[str], task: str) -> float:
    """Share of the pool labelled ``task``: :func:`target_share` of a uniform random subset, in expectation."""
    return sum(label == task for label in labels) / len(labels)
