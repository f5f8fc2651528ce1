"""LESS's matching: checkpoint weights, influence, and the score of each training example.

- weights: ``w_i = mean learning rate of epoch i / sum_j (mean learning rate of epoch j)``;
- influence: ``Inf(z, z') = sum_i w_i cos(G_i(z), g_i(z'))`` with ``G_i`` the Adam feature of training
  example z and ``g_i`` the plain gradient of target example z' at checkpoint i (both L2-normalised);
- score: ``score(z) = max over target subtasks s of mean_{z' in s} Inf(z, z')``.

Because a cosine of normalised rows is linear in the target row, the mean over a subtask equals the
cosine-style product with the subtask's mean normalised row: :func:`subtask_means` lets the selector
score chunk by chunk against (subtasks x dim) matrices instead of every target example.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from delift.data.records import Example


def checkpoint_weights(mean_lrs: Sequence[float]) -> np.ndarray:
    """The epochs' mean learning rates, normalised to sum to 1."""
    lrs = np.asarray(mean_lrs, dtype=np.float64)
    if lrs.ndim != 1 or not len(lrs) or (lrs < 0).any() or lrs.sum() <= 0:
        raise ValueError(f"checkpoint weights need non-negative learning rates with a positive sum; got {list(lrs)}")
    return lrs / lrs.sum()


def subtask_groups(targets: Sequence[Example], field: str | None) -> list[tuple[str, list[int]]]:
    """``(name, target indices)`` per subtask, in order of first appearance; one task when ``field`` is None."""
    if not targets:
        raise ValueError("LESS: the target set is empty")
    if field is None:
        return [("all", list(range(len(targets))))]
    groups: dict[str, list[int]] = {}
    missing = [ex.id for ex in targets if field not in ex.metadata]
    if missing:
        raise ValueError(f"selector.subtask_field={field!r}: {len(missing)} target examples have no metadata "
                         f"field {field!r} (first: {missing[:5]}); set selector.subtask_field=null for one task")
    for index, ex in enumerate(targets):
        groups.setdefault(str(ex.metadata[field]), []).append(index)
    return list(groups.items())


def influence(train: Sequence[np.ndarray], target: Sequence[np.ndarray], weights: Sequence[float]) -> np.ndarray:
    """(n_train, n_target) ``sum_i w_i cos(train_i, target_i)`` from per-checkpoint feature rows (any scale)."""
    total = 0.0
    for a, b, w in zip(train, target, weights, strict=True):
        a, b = _unit(np.asarray(a, np.float64)), _unit(np.asarray(b, np.float64))
        total = total + w * (a @ b.T)
    return np.asarray(total)


def scores_from_influence(matrix: np.ndarray, groups: Sequence[tuple[str, Sequence[int]]]) -> np.ndarray:
    """Max over subtasks of the mean influence over the subtask's targets, per training example (row)."""
    means = np.stack([matrix[:, list(indices)].mean(axis=1) for _, indices in groups], axis=1)
    return means.max(axis=1)


def subtask_means(rows: np.ndarray, groups: Sequence[tuple[str, Sequence[int]]]) -> np.ndarray:
    """(subtasks, dim): the mean of each subtask's L2-normalised rows."""
    unit = _unit(np.asarray(rows, np.float64))
    return np.stack([unit[list(indices)].mean(axis=0) for _, indices in groups])


def best_subtask(per_subtask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(score, index of the subtask that gives it) per row of a (n, subtasks) matrix of weighted mean cosines."""
    per_subtask = np.asarray(per_subtask, np.float64)
    return per_subtask.max(axis=1), per_subtask.argmax(axis=1)


def _unit(rows: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(rows, axis=-1, keepdims=True)
    return rows / np.where(norms > 0, norms, 1.0)
