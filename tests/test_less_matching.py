"""LESS matching by hand: checkpoint weights, influence, max over subtask means."""

from __future__ import annotations

import numpy as np
import pytest

from delift.data.records import Example
from delift.selection.less.matching import (
    best_subtask,
    checkpoint_weights,
    influence,
    scores_from_influence,
    subtask_groups,
    subtask_means,
)


def example(i: int, **metadata) -> Example:
    return Example(id=f"t{i}", instruction="q", input="", output="a", source="test", metadata=metadata)


def test_weights_are_normalised_mean_learning_rates():
    np.testing.assert_allclose(checkpoint_weights([3, 1]), [0.75, 0.25])
    np.testing.assert_allclose(checkpoint_weights([2e-5, 2e-5, 1e-5]), [0.4, 0.4, 0.2])
    with pytest.raises(ValueError, match="positive sum"):
        checkpoint_weights([0.0, 0.0])


def test_influence_and_max_over_subtask_means_by_hand():
    # two checkpoints, 2-d features; cosines are easy to read off
    train = [np.array([[1.0, 0.0], [0.0, 2.0]]), np.array([[1.0, 1.0], [1.0, 0.0]])]
    target = [np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]), np.array([[1.0, 0.0], [0.0, 3.0], [1.0, 1.0]])]
    w = checkpoint_weights([3, 1])
    s = 1 / np.sqrt(2)
    # checkpoint 1: row 0 -> (1, 0, s), row 1 -> (0, 1, s); checkpoint 2: row 0 -> (s, s, 1), row 1 -> (1, 0, s)
    expected = np.array([[.75 * 1 + .25 * s, .75 * 0 + .25 * s, .75 * s + .25 * 1],
                         [.75 * 0 + .25 * 1, .75 * 1 + .25 * 0, .75 * s + .25 * s]])
    matrix = influence(train, target, w)
    np.testing.assert_allclose(matrix, expected)
    groups = [("a", [0, 1]), ("b", [2])]
    by_hand = [max((expected[0, 0] + expected[0, 1]) / 2, expected[0, 2]),
               max((expected[1, 0] + expected[1, 1]) / 2, expected[1, 2])]
    np.testing.assert_allclose(scores_from_influence(matrix, groups), by_hand)
    # the selector's route: products with each checkpoint's subtask means of normalised target rows
    per_subtask = sum(wi * (a / np.linalg.norm(a, axis=1, keepdims=True)) @ subtask_means(b, groups).T
                      for wi, a, b in zip(w, train, target))
    score, best = best_subtask(per_subtask)
    np.testing.assert_allclose(score, by_hand)
    assert list(best) == [1, 1]  # a: (.75 + .25 s + .25 s) / 2 < .75 s + .25; (.25 + .75) / 2 < s


def test_a_duplicated_training_row_scores_like_its_original():
    rng = np.random.default_rng(0)
    train = [rng.standard_normal((4, 6)) for _ in range(3)]
    train = [np.vstack([t, t[1:2]]) for t in train]  # row 4 duplicates row 1 at every checkpoint
    target = [rng.standard_normal((5, 6)) for _ in range(3)]
    scores = scores_from_influence(influence(train, target, checkpoint_weights([1, 2, 3])), [("x", [0, 1, 2]),
                                                                                             ("y", [3, 4])])
    assert scores[4] == pytest.approx(scores[1], abs=1e-12)


def test_subtask_groups_from_metadata():
    targets = [example(0, subject="law"), example(1, subject="math"), example(2, subject="law")]
    assert subtask_groups(targets, "subject") == [("law", [0, 2]), ("math", [1])]
    assert subtask_groups(targets, None) == [("all", [0, 1, 2])]
    with pytest.raises(ValueError, match="selector.subtask_field='topic'.*t0"):
        subtask_groups(targets, "topic")
    with pytest.raises(ValueError, match="target set is empty"):
        subtask_groups([], None)
