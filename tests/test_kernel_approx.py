"""Approximate utility kernels (kernel.approximation learned | knn): numbers, cache keys, config, selection."""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.approximations.knn import KnnConfig, nearest_candidates
from delift.kernel.approximations.learned import LearnedConfig, learned_sample
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.front import Kernels
from delift.kernel.pairnet import PairNetwork, fit_pair_network
from delift.kernel.provider import IncompleteKernelError, KernelProvider

TEMPLATE = PromptTemplate()


def fake_embeddings(examples, dim: int = 8) -> np.ndarray:
    """Deterministic unit vectors per example id (no sentence embedder to load)."""
    rows = []
    for e in examples:
        seed = int(hashlib.sha256(e.id.encode()).hexdigest()[:8], 16)
        v = np.random.default_rng(seed).normal(size=dim)
        rows.append(v / np.linalg.norm(v))
    return np.asarray(rows, dtype=np.float32)


def provider_for(tiny_spec, model, root, config: KernelConfig | None = None, block_size: int = 2, **changes) -> Kernels:
    """The front object over a provider with the trained tiny model and deterministic fake embeddings."""
    config = replace(config or KernelConfig(), block_size=block_size, **changes)
    provider = KernelProvider(tiny_spec, TEMPLATE, config, KernelCache(root), progress=False)
    provider._model = model
    return Kernels(provider, embed=fake_embeddings)


LEARNED = KernelConfig(approximation="learned", learned=LearnedConfig(sample_fraction=0.5, holdout_fraction=0.25,
                                                                      hidden=16, lr=1e-2, epochs=5))
KNN = KernelConfig(approximation="knn", knn=KnnConfig(neighbors=2))


def test_block_evaluated_network_equals_a_per_pair_loop():
    torch.manual_seed(0)
    net = PairNetwork(dim=5, hidden=16)
    rng = np.random.default_rng(0)
    e_t, e_c = rng.normal(size=(7, 5)).astype(np.float32), rng.normal(size=(9, 5)).astype(np.float32)
    blocked = net.predict_matrix(e_t, e_c, block_elements=50)  # several row and column blocks
    with torch.no_grad():
        naive = np.array([[float(net(torch.tensor(e_t[i]), torch.tensor(e_c[j]))) for j in range(9)]
                          for i in range(7)])
    np.testing.assert_allclose(blocked, naive, atol=1e-6, rtol=0)
    np.testing.assert_allclose(net.predict_matrix(e_t, e_c), blocked, atol=1e-6, rtol=0)  # one block
    rows, cols = np.array([0, 6, 3]), np.array([8, 0, 4])
    np.testing.assert_allclose(net.predict_pairs(e_t, e_c, rows, cols), naive[rows, cols], atol=1e-6, rtol=0)


def test_pair_network_fits_a_learnable_kernel():
    rng = np.random.default_rng(1)
    e = rng.normal(size=(30, 4)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    target = 0.05 * (e @ e.T) + 0.01  # small values, as UF's are: the standardisation must fold back
    rows, cols = (g.ravel() for g in np.meshgrid(np.arange(30), np.arange(30), indexing="ij"))
    net, report = fit_pair_network(e, e, rows, cols, target[rows, cols],
                                   LearnedConfig(hidden=32, lr=1e-2, epochs=30, seed=0))
    predicted = net.predict_matrix(e, e)
    assert report.train_pairs == 900
    assert np.mean((predicted - target) ** 2) < 0.1 * np.var(target)


def test_learned_sample_is_seeded_and_holds_out_examples():
    ids = [f"x{i}" for i in range(20)]
    a = learned_sample(ids, ids, LearnedConfig(sample_fraction=0.25, holdout_fraction=0.2, seed=3))
    b = learned_sample(ids, ids, LearnedConfig(sample_fraction=0.25, holdout_fraction=0.2, seed=3))
    c = learned_sample(ids, ids, LearnedConfig(sample_fraction=0.25, holdout_fraction=0.2, seed=4))
    assert a.square and len(a.rows) == 5 and np.array_equal(a.rows, a.cols) and len(a.held_rows) == 1
    assert np.array_equal(a.rows, b.rows) and np.array_equal(a.held_rows, b.held_rows)
    assert not np.array_equal(a.rows, c.rows)
    assert set(a.held_rows) <= set(a.rows)
    rect = learned_sample(ids[:4], ids, LearnedConfig(sample_fraction=0.1, holdout_fraction=0.0))
    assert not rect.square and len(rect.rows) == 2 and len(rect.cols) == 2 and len(rect.held_rows) == 0
    tiny = learned_sample(ids[:8], ids[:8], LearnedConfig(sample_fraction=0.1, holdout_fraction=0.1))
    assert len(tiny.rows) == 3 and len(tiny.held_rows) == 1  # two left to train on: 2 pairs, not 0


def test_learned_kernel_keeps_sampled_entries_exact_and_predicts_the_rest(tiny_spec, trained_tiny_model, tmp_path):
    pool = make_examples(8)
    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path, LEARNED)
    kernel = provider.utility(pool, pool)
    sample = learned_sample([e.id for e in pool], [e.id for e in pool], LEARNED.learned)
    sub = provider.provider.utility([pool[i] for i in sample.rows], [pool[i] for i in sample.rows])
    exact = provider.provider.utility(pool, pool)
    rows = sample.rows
    np.testing.assert_array_equal(kernel.uf[np.ix_(rows, rows)], sub.uf)  # bit for bit
    np.testing.assert_array_equal(kernel.d_one[np.ix_(rows, rows)], sub.d_one)
    np.testing.assert_allclose(kernel.d_zero, exact.d_zero, atol=1e-5, rtol=0)  # exact for every target
    np.testing.assert_allclose(np.diag(kernel.uf), np.diag(exact.uf), atol=1e-5, rtol=0)  # diagonal exact
    np.testing.assert_allclose(kernel.uf, kernel.d_zero[:, None] - kernel.d_one, atol=1e-12)
    predicted = np.ones((8, 8), dtype=bool)
    predicted[np.ix_(rows, rows)] = False
    np.fill_diagonal(predicted, False)
    assert np.all(np.isfinite(kernel.uf)) and not np.allclose(kernel.uf[predicted], exact.uf[predicted], atol=1e-9)
    meta = kernel.meta
    assert meta["approximation"] == "learned" and meta["sample_size"] == 4 and meta["cached"] is False
    assert meta["exact_pairs"] == 16 + 4 and meta["predicted_pairs"] == 64 - 20 and meta["diagonal_exact"] is True
    assert meta["holdout_examples"] == 1 and meta["holdout_pairs"] == 2 * 3  # one held example x 3 others, both ways
    assert meta["train_pairs"] == 3 * 2 and meta["holdout_mse"] >= 0 and meta["sample_key"] == sub.meta["key"]
    again = provider.utility(pool, pool)
    assert again.meta["cached"] is True and again.meta["holdout_mse"] == meta["holdout_mse"]
    assert provider.key(pool, pool) == meta["key"]  # the key without computing anything
    np.testing.assert_array_equal(again.uf, kernel.uf)


def test_learned_kernel_without_exact_diagonal_runs_no_per_example_pass(tiny_spec, trained_tiny_model, tmp_path,
                                                                        monkeypatch):
    import delift.kernel.pairs as pairs_module  # what the learned strategy calls for per-example passes

    scored = []
    real_zero, real_pairs = pairs_module.score_zero, pairs_module.score_pairs
    monkeypatch.setattr(pairs_module, "score_zero", lambda setup, t, **kw: scored.append(len(t)) or real_zero(setup, t, **kw))
    monkeypatch.setattr(pairs_module, "score_pairs",
                        lambda setup, t, c, r, col: scored.append(len(r)) or real_pairs(setup, t, c, r, col))
    approx = KernelConfig(approximation="learned", learned=LearnedConfig(
        sample_fraction=0.5, holdout_fraction=0.25, hidden=16, lr=1e-2, epochs=5, exact_diagonal=False))
    pool = make_examples(8)
    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path, approx)
    kernel = provider.utility(pool, pool)
    assert scored == []  # no zero-shot and no self-pair pass outside the sample kernel (not even an empty call)
    rows = learned_sample([e.id for e in pool], [e.id for e in pool], approx.learned).rows
    exact = provider.provider.utility(pool, pool)
    others = np.setdiff1d(np.arange(8), rows)
    np.testing.assert_allclose(kernel.d_zero[rows], exact.d_zero[rows], atol=1e-5, rtol=0)
    assert np.isnan(kernel.d_zero[others]).all() and np.isnan(kernel.d_one[others]).all()
    assert np.isfinite(kernel.d_one[rows]).all() and np.isfinite(kernel.uf).all()
    meta = kernel.meta
    assert meta["d_zero_missing"] == 4 and meta["zero_shot_rows"] == 4 and meta["diagonal_exact"] is False
    assert meta["exact_pairs"] == 16 and list(meta["stage_seconds"])[-1] == "zero_shot"
    again = provider.utility(pool, pool)  # the NaN rows pass the cache's damage check
    assert again.meta["cached"] is True
    np.testing.assert_array_equal(again.uf, kernel.uf)
    # a query x pool kernel has no self-pairs: the sampled query rows only, whatever exact_diagonal says
    provider_diag = provider_for(tiny_spec, trained_tiny_model, tmp_path / "diag", LEARNED)
    scored.clear()
    query = provider_diag.utility(make_examples(4, "q"), pool)
    assert scored == [] and query.meta["d_zero_missing"] == 1  # 3 of the 4 queries sampled
    assert query.meta["diagonal_exact"] is False


def test_cache_damage_check_allows_only_the_declared_missing_rows():
    from delift.kernel.cache import kernel_problem
    from delift.kernel.settings import UtilityKernel

    def kernel(d_zero, d_one, missing=0):
        d_zero, d_one = np.array(d_zero, dtype=float), np.array(d_one, dtype=float)
        return UtilityKernel(uf=np.zeros((2, 2)), d_zero=d_zero, d_one=d_one, target_ids=["a", "b"],
                             candidate_ids=["a", "b"], meta={"d_zero_missing": missing})

    nan = np.nan
    assert kernel_problem(kernel([1, 2], [[1, 2], [3, 4]])) is None
    assert kernel_problem(kernel([1, nan], [[1, 2], [nan, nan]], missing=1)) is None
    assert "expected 0 NaN" in kernel_problem(kernel([1, nan], [[1, 2], [nan, nan]]))
    assert "outside the rows" in kernel_problem(kernel([1, nan], [[1, nan], [nan, nan]], missing=1))
    assert "outside the rows" in kernel_problem(kernel([1, nan], [[1, 2], [nan, 4]], missing=1))
    assert "d_zero holds" in kernel_problem(kernel([1, np.inf], [[1, 2], [3, 4]]))
    bad_uf = kernel([1, 2], [[1, 2], [3, 4]])
    bad_uf.uf[0, 1] = nan
    assert "uf holds 1 non-finite" in kernel_problem(bad_uf)


def test_learned_kernel_fill_computes_the_sample_kernel(tiny_spec, trained_tiny_model, tmp_path):
    pool = make_examples(6)
    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path, LEARNED)
    filled = provider.fill(pool, pool)
    assert filled["approximation"] == "learned" and filled["complete"] is True
    sample = learned_sample([e.id for e in pool], [e.id for e in pool], LEARNED.learned)
    assert filled["sample_key"] == provider.provider.block_store([pool[i] for i in sample.rows],
                                                                 [pool[i] for i in sample.rows]).key


def test_sharded_knn_fills_its_row_blocks_and_merges_to_the_unsharded_kernel(tiny_spec, trained_tiny_model,
                                                                             tmp_path):

    pool = make_examples(5)  # block_size 2: row blocks 0, 1, 2 -> shard 0 owns 0 and 2, shard 1 owns 1
    whole = provider_for(tiny_spec, trained_tiny_model, tmp_path / "whole", KNN).utility(pool, pool)
    shards = [provider_for(tiny_spec, trained_tiny_model, tmp_path / "sharded", KNN, num_shards=2, shard=k)
              for k in range(2)]
    first = shards[0].fill(pool, pool)
    assert (first["approximation"], first["complete"], first["blocks_computed"]) == ("knn", False, 2)
    assert first["pairs"] == 3 * 3  # targets 0, 1 and 4, each x (2 neighbours + itself)
    with pytest.raises(IncompleteKernelError, match=r"1 row blocks of other shards are missing \(\['rows2.npz'\]"):
        shards[0].utility(pool, pool)
    second = shards[1].fill(pool, pool)
    assert (second["complete"], second["blocks_computed"], second["pairs"]) == (True, 1, 2 * 3)
    again = shards[0].fill(pool, pool)
    assert (again["blocks_computed"], again["blocks_skipped"], again["pairs"]) == (0, 2, 0)
    merged = shards[1].utility(pool, pool)
    assert merged.meta["blocks_resumed"] == 3 and merged.meta["pairs"] == 0
    np.testing.assert_array_equal(merged.uf.toarray(), whole.uf.toarray())
    np.testing.assert_array_equal(merged.d_zero, whole.d_zero)


def test_nearest_candidates_with_ties_and_self():
    e = np.array([[1, 0], [1, 0], [0, 1], [1, 0], [-1, 0]], dtype=np.float32)
    ids = list("abcde")
    chosen = nearest_candidates(e, e, ids, ids, neighbors=1)
    assert [c.tolist() for c in chosen] == [[0, 1], [0, 1], [0, 2], [0, 3], [2, 4]]  # ties to the lower index
    wide = nearest_candidates(e, e, ids, ids, neighbors=10)
    assert all(c.tolist() == list(range(5)) for c in wide)
    rect = nearest_candidates(e[:2], e[2:], ids[:2], ids[2:], neighbors=2)
    assert [c.tolist() for c in rect] == [[0, 1], [0, 1]]  # candidates c, d: no self


@pytest.mark.parametrize("rectangular", [False, True])
def test_knn_kernel_equals_exact_on_its_pairs_and_zero_elsewhere(tiny_spec, trained_tiny_model, tmp_path,
                                                                rectangular):
    pool = make_examples(6)
    targets, candidates = (make_examples(3, "t"), pool) if rectangular else (pool, pool)
    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path, KNN, block_size=4)
    kernel = provider.utility(targets, candidates)
    exact = provider.provider.utility(targets, candidates)
    chosen = nearest_candidates(fake_embeddings(targets), fake_embeddings(candidates), [e.id for e in targets],
                                [e.id for e in candidates], 2)
    scored = np.zeros(kernel.uf.shape, dtype=bool)
    for i, cols in enumerate(chosen):
        scored[i, cols] = True
    # sparse: a float32 CSR storing exactly the scored pairs, no d_one
    assert sp.isspmatrix_csr(kernel.uf) and kernel.uf.dtype == np.float32 and kernel.d_one is None
    assert [kernel.uf.indices[a:b].tolist() for a, b in zip(kernel.uf.indptr, kernel.uf.indptr[1:])] == \
        [c.tolist() for c in chosen]
    uf = kernel.uf.toarray()
    np.testing.assert_allclose(uf[scored], exact.uf[scored], atol=1e-5, rtol=0)
    np.testing.assert_allclose(kernel.d_zero, exact.d_zero, atol=1e-5, rtol=0)
    assert np.all(uf[~scored] == 0.0)
    per_target = 2 if rectangular else 3  # neighbours, plus itself in the pool x pool kernel
    assert scored.sum() == len(targets) * per_target == kernel.meta["scored_pairs"] == kernel.uf.nnz
    assert kernel.meta["approximation"] == "knn" and kernel.meta["neighbors"] == 2
    # the cache file holds the CSR, and is read back as it was written
    path = provider.provider.cache.path(kernel.meta["key"])
    with np.load(path) as data:
        assert "uf" not in data.files and "d_one" not in data.files and data["uf_data"].dtype == np.float32
    cached = provider.utility(targets, candidates)
    assert cached.meta["cached"] is True and sp.isspmatrix_csr(cached.uf)
    np.testing.assert_array_equal(cached.uf.toarray(), uf)
    # resume: the per-block files are reused when the merged kernel is gone
    path.unlink()
    resumed = provider.utility(targets, candidates)
    assert resumed.meta["blocks_resumed"] == (1 if rectangular else 2)
    np.testing.assert_array_equal(resumed.uf.toarray(), uf)


def test_cache_keys_differ_by_settings_and_the_exact_key_is_unchanged(tiny_spec, tmp_path):
    from delift.kernel.approximations.base import CachedApproximation
    from delift.kernel.cache import kernel_cache_key

    pool = make_examples(5)
    plain = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), KernelCache(tmp_path), progress=False)
    exact_key = plain.block_store(pool, pool).key
    keys = {}
    for name, approx in {
        "learned": LEARNED, "knn": KNN,
        "learned_seed": KernelConfig(approximation="learned", learned=LearnedConfig(sample_fraction=0.5, seed=1)),
        "learned_fraction": KernelConfig(approximation="learned", learned=LearnedConfig(sample_fraction=0.3)),
        "knn_m": KernelConfig(approximation="knn", knn=KnnConfig(neighbors=3)),
        "knn_embedder": KernelConfig(approximation="knn", embedder="BAAI/bge-large-en-v1.5", knn=KnnConfig(neighbors=2)),
    }.items():
        kernels = Kernels(KernelProvider(tiny_spec, TEMPLATE, approx, KernelCache(tmp_path), progress=False))
        assert kernels.provider.block_store(pool, pool).key == exact_key  # the exact kernel keeps its key
        assert kernels.provider.cache_payload(pool, pool) == plain.cache_payload(pool, pool)
        keys[name] = kernel_cache_key(CachedApproximation.payload(kernels.context, pool, pool, "distance"))
        assert kernels.key(pool, pool) == keys[name]  # what the cost plan asks for
    assert len(set(keys.values())) == len(keys) and exact_key not in keys.values()
    assert Kernels(plain).key(pool, pool) == exact_key
    # the knn key ignores the learned settings (and vice versa)
    knn_other = KernelConfig(approximation="knn", learned=LearnedConfig(seed=9), knn=KnnConfig(neighbors=2))
    assert knn_other.approximation_identity() == KNN.approximation_identity()


@pytest.mark.parametrize("overrides,message", [
    (["kernel.learned.sample_fraction=0"], "kernel.learned.sample_fraction: 0.0: must be in (0, 1]"),
    (["kernel.learned.holdout_fraction=1"], "kernel.learned.holdout_fraction"),
    (["kernel.learned.epochs=0"], "kernel.learned.epochs: 0: must be >= 1"),
    (["kernel.learned.lr=0"], "kernel.learned.lr"),
    (["kernel.knn.neighbors=0"], "kernel.knn.neighbors: 0: must be >= 1"),
    (["kernel.approximation=sketch"], "kernel.approximation: 'sketch': expected one of exact, knn, learned"),
    (["+kernel.knn.typo=1"], "kernel.knn.typo"),
])
def test_typed_config_rejects_bad_approximation_values(overrides, message):
    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config

    with pytest.raises(ConfigError) as caught:
        compose_config(["experiment=smoke", *overrides])
    assert message in f"{caught.value} {caught.value.__cause__}"


def test_typed_config_reaches_the_approximation_settings():
    from delift.config.loader import compose_config

    cfg = compose_config(["experiment=smoke", "kernel.approximation=knn", "kernel.knn.neighbors=7",
                          "kernel.learned.seed=3"])
    approx = cfg.kernel
    assert isinstance(approx, KernelConfig)  # the schema is the runtime settings class
    assert approx.approximation == "knn" and approx.knn.neighbors == 7 and approx.learned.seed == 3
    assert Kernels(KernelProvider(None, TEMPLATE, approx, KernelCache("unused"))).strategy.name == "knn"
    assert compose_config(["experiment=smoke"]).kernel.approximation == "exact"
    with pytest.raises(ValueError, match=r"kernel.learned.sample_fraction: 0: must be in \(0, 1\]"):
        Kernels(KernelProvider(None, TEMPLATE, KernelConfig(approximation="learned",
                                                            learned=LearnedConfig(sample_fraction=0)), KernelCache("x")))
    with pytest.raises(ValueError, match="kernel.knn.neighbors: 0: must be >= 1"):
        Kernels(KernelProvider(None, TEMPLATE, KernelConfig(approximation="knn", knn=KnnConfig(neighbors=0)),
                               KernelCache("x")))


@pytest.mark.parametrize("approx", [LEARNED, KNN], ids=["learned", "knn"])
def test_delift_selector_end_to_end_with_an_approximate_kernel(tiny_spec, trained_tiny_model, tmp_path, approx):
    from delift.selection.base import SelectionContext
    from delift.selection.delift import DeliftSelector

    pool = make_examples(8)
    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path, approx)
    selection = DeliftSelector().select(SelectionContext(pool=pool, seed=0, kernels=provider), 3)
    assert len(selection.indices) == 3 and len(set(selection.indices)) == 3
    info = selection.info
    assert info["approximation"] == approx.approximation
    recorded = info["kernel_approximation"]["pool_pool"]
    if approx.approximation == "learned":
        assert recorded["sample_size"] == 4 and "holdout_mse" in recorded and "holdout_spearman" in recorded
        assert recorded["zero_shot_rows"] == 8 and recorded["d_zero_missing"] == 0  # exact diagonal: every row
        stages = recorded["stage_seconds"]
        assert list(stages) == ["sample_kernel", "embed", "fit", "predict", "zero_shot", "diagonal"]
        assert all(value >= 0 for value in stages.values())
    else:
        assert recorded["neighbors"] == 2 and recorded["zero_pairs"] == 64 - 8 * 3
    # FLMI: the query x pool kernel is approximated too, and recorded under its role
    query = make_examples(3, "q")
    flmi = DeliftSelector().select(SelectionContext(pool=pool, seed=0, kernels=provider, query=query), 2)
    assert set(flmi.info["kernel_approximation"]) == {"pool_pool", "query_pool"}


def test_exact_selection_info_is_unchanged(tiny_spec, trained_tiny_model, tmp_path):
    from delift.selection.base import SelectionContext
    from delift.selection.delift import DeliftSelector

    provider = provider_for(tiny_spec, trained_tiny_model, tmp_path)
    info = DeliftSelector().select(SelectionContext(pool=make_examples(5), seed=0, kernels=provider), 2).info
    assert "approximation" not in info and "kernel_approximation" not in info


@pytest.mark.parametrize("aggregate", ["distance", "logprob_sum"])
def test_entry_helpers_invert_utility_matrix(aggregate):
    from delift.kernel.settings import d_one_of, uf_of_entries, utility_matrix

    rng = np.random.default_rng(0)
    d_zero, d_one = rng.random(3), rng.random((3, 4))
    uf = utility_matrix(d_zero, d_one, aggregate)
    np.testing.assert_allclose(d_one_of(uf, d_zero, aggregate), d_one, atol=1e-12)
    rows, cols = np.array([0, 2, 1]), np.array([3, 0, 1])
    np.testing.assert_allclose(uf_of_entries(d_zero[rows], d_one[rows, cols], aggregate), uf[rows, cols], atol=1e-12)


def test_learned_warns_naming_the_key_when_the_sample_leaves_few_training_pairs(tiny_spec, trained_tiny_model,
                                                                                tmp_path, caplog, monkeypatch):
    """Issue 22.11: a tiny sample (here 4 examples, 1 held out: 3 x 2 training pairs) must not run silently."""
    import logging

    import delift.kernel.approximations.learned as learned_module

    pool = make_examples(8)
    with caplog.at_level(logging.WARNING, logger=learned_module.__name__):
        provider_for(tiny_spec, trained_tiny_model, tmp_path / "few", LEARNED).utility(pool, pool)
    (message,) = [r.getMessage() for r in caplog.records if "training pairs" in r.getMessage()]
    assert "kernel.learned.sample_fraction=0.5 samples 4 x 4 examples" in message
    assert "leaves 6 training pairs (fewer than 100) and 6 hold-out pairs" in message
    caplog.clear()
    monkeypatch.setattr(learned_module, "MIN_TRAIN_PAIRS", 6)  # exactly at the minimum: no warning
    with caplog.at_level(logging.WARNING, logger=learned_module.__name__):
        provider_for(tiny_spec, trained_tiny_model, tmp_path / "enough", LEARNED).utility(pool, pool)
    assert not [r for r in caplog.records if "training pairs" in r.getMessage()]
