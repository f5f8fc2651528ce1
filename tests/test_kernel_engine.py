"""The prefix-reuse engine against the naive per-pair computation (one full forward per pair)."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import make_examples
from delift.data.prompts import PromptTemplate
from delift.kernel.blocks import BlockStore
from delift.kernel.cache import KernelCache
from delift.kernel.engine import CALL_COST, KEY_COST, ScoringSetup, _prefix_groups, score_one_shot, score_zero_shot
from delift.kernel.provider import KernelProvider
from delift.kernel.utility import KernelSettings, token_probabilities, tokenize_examples
from test_kernel import naive_kernel

TEMPLATE = PromptTemplate()


def engine_kernel(model, tok, targets, candidates, settings: KernelSettings):
    tokens = lambda exs: tokenize_examples(exs, tok, TEMPLATE, settings)  # noqa: E731
    setup = ScoringSetup(model, tok.eos_token_id, tok.pad_token_id, settings.eos_after_prompt, settings.max_length,
                         settings.batch_size, settings.tokens_per_batch, workers=settings.workers)
    zero, zero_stats = score_zero_shot(setup, tokens(targets))
    one, stats = score_one_shot(setup, tokens(targets), tokens(candidates))
    stats.add(zero_stats)
    return zero, one, stats


@pytest.mark.parametrize("max_length,eos_after_prompt,tokens_per_batch,workers", [
    (1024, True, 8192, 1),  # nothing truncated, one worker
    (1024, True, 8192, 3),  # the same on three workers side by side
    (1024, True, 300, 2),  # several prefix groups and continuation batches split by the token budget
    (185, True, 8192, 2),  # about half the shown examples cut: those pairs take the per-sequence path
    (150, True, 8192, 1),  # every shown example cut
    (90, True, 8192, 2),  # shown examples dropped and queries cut
    (120, False, 500, 3),  # no EOS after the prompt, mixed
    (1024, False, 8192, 2),  # no EOS after the prompt, nothing truncated
])
def test_engine_equals_naive_per_pair(trained_tiny_model, tiny_tokenizer, max_length, eos_after_prompt,
                                      tokens_per_batch, workers):
    import torch

    threads = torch.get_num_threads()
    targets, candidates = make_examples(7), make_examples(9, "c")[2:]  # non-square, mixed lengths
    settings = KernelSettings(max_length=max_length, eos_after_prompt=eos_after_prompt, batch_size=3,
                              tokens_per_batch=tokens_per_batch, workers=workers)
    zero, one, stats = engine_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, settings)
    ref_zero, ref_one, ref_uf = naive_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, max_length,
                                             eos_after_prompt)
    np.testing.assert_allclose(zero, ref_zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, ref_one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(zero[:, None] - one, ref_uf, atol=1e-5, rtol=0)
    assert np.std(ref_uf) > 1e-3  # 100x the tolerance: the comparison is not vacuous
    assert stats.pairs == 7 * 7
    if max_length == 1024:
        assert stats.per_sequence == 7 and stats.shown_truncated == stats.query_truncated == 0  # zero-shot only
    if max_length == 185:
        assert 10 < stats.shown_truncated == stats.per_sequence - 7 < 40  # the rest reuse the prefix
    if max_length == 90:
        assert stats.shown_dropped > 0 and stats.query_truncated > 0
    assert torch.get_num_threads() == threads  # the workers' thread setting is undone


def _brute_force_groups(lengths, widths, budget):
    """Cheapest split of the sorted lengths into contiguous groups, by trying every split."""
    n, best = len(lengths), None
    for mask in range(2 ** (n - 1)):
        bounds = [0] + [k + 1 for k in range(n - 1) if mask >> k & 1] + [n]
        groups = [list(range(a, b)) for a, b in zip(bounds, bounds[1:])]
        if any(len(g) * lengths[g[-1]] > budget and len(g) > 1 for g in groups):
            continue
        total = 0.0
        for g in groups:
            calls = len(widths) * -(-int(len(g) * sum(widths) / len(widths)) // budget)
            total += calls * CALL_COST + sum(len(g) * w * (1 + KEY_COST * (lengths[g[-1]] + w)) for w in widths)
        if best is None or total < best[0] - 1e-9:
            best = (total, groups)
    return best[1]


@pytest.mark.parametrize("lengths,widths,budget", [
    ([26, 26, 31, 41, 48, 69, 78, 112, 125, 241], [30, 80, 120], 8192),  # Alpaca-like spread
    ([20, 20, 21, 22, 22, 23], [50, 60], 8192),  # near-equal: one group
    ([10, 11, 12, 500, 510, 900, 1000], [400, 600], 4096),  # long prefixes: the token budget binds
    ([5, 300, 301, 302, 303, 304, 305, 306, 307], [100] * 40, 8192),  # many targets: calls are dear
])
def test_prefix_groups_are_the_cheapest_contiguous_split(lengths, widths, budget):
    """The dynamic programme against trying every split of the sorted prefixes (same cost model)."""
    setup = ScoringSetup.__new__(ScoringSetup)
    setup.tokens_per_batch = budget
    shown = [[0] * n for n in reversed(lengths)]  # columns out of length order
    groups = _prefix_groups(setup, list(range(len(shown))), shown, widths)
    expected = _brute_force_groups(lengths, widths, budget)
    assert [[len(shown[j]) for j in g] for g in groups] == [[lengths[k] for k in g] for g in expected]
    if lengths[0] == 20:
        assert len(groups) == 1
    if lengths[-1] == 241:
        assert 1 < len(groups) < len(lengths)  # neither extreme: the split is a real trade-off


def test_token_probabilities_in_chunks_equal_one_log_softmax():
    """Equal head chunks and 32-row softmax slices against one fp32 log-softmax of all logits."""
    import torch

    torch.manual_seed(0)
    head = torch.nn.Linear(16, 50, bias=True)
    hidden, targets = torch.randn(75, 16), torch.randint(0, 50, (75,))
    expected = torch.log_softmax(head(hidden), dim=-1).gather(-1, targets[:, None]).squeeze(-1).exp()
    for rows in (7, 40, 256):  # 11 chunks of 7 (last 5), 2 of 38, one of 75 with 32-row slices
        got = token_probabilities(head, None, hidden, targets, rows=rows)
        torch.testing.assert_close(got, expected, atol=1e-6, rtol=0)
    capped = token_probabilities(head, 2.0, hidden, targets, rows=16)
    logits = torch.tanh(head(hidden) / 2.0) * 2.0
    torch.testing.assert_close(capped, torch.log_softmax(logits, -1).gather(-1, targets[:, None]).squeeze(-1).exp(),
                               atol=1e-6, rtol=0)


def test_engine_does_less_work_than_per_pair(trained_tiny_model, tiny_tokenizer):
    examples = make_examples(6)
    settings = KernelSettings()
    _, _, stats = engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)
    toks = tokenize_examples(examples, tiny_tokenizer, TEMPLATE, settings)
    per_pair = sum(len(c.shown) + len(t.query) + len(t.response) + 2 for t in toks for c in toks)
    zero_shot = sum(len(t.query) + len(t.response) + 2 for t in toks)
    prefixes_once = sum(len(c.shown) for c in toks)
    assert stats.tokens == per_pair + zero_shot - (len(toks) - 1) * prefixes_once


def test_provider_kernel_equals_naive_and_orientation(tiny_spec, tiny_tokenizer, tmp_path):
    targets, candidates = make_examples(3, "t"), make_examples(5, "c")[1:]
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelSettings(block_size=2), KernelCache(tmp_path),
                              progress=False)
    kernel = provider.utility(targets, candidates)
    _, _, uf = naive_kernel(provider.model, tiny_tokenizer, targets, candidates, 1024)
    assert kernel.uf.shape == (3, 4) and kernel.candidate_ids == ["c1", "c2", "c3", "c4"]
    assert kernel.target_ids == ["t0", "t1", "t2"]
    np.testing.assert_allclose(kernel.uf, uf, atol=1e-5, rtol=0)
    assert kernel.meta["blocks_computed"] == 2 * (1 + 2)  # 2 row tiles x (zero-shot + 2 column tiles)
    store = provider.block_store(targets, candidates)
    assert sorted(p.name for p in store.folder.iterdir()) == sorted(
        ["manifest.json"] + [f"{b.name}.npz" for b in store.blocks()])


def test_block_iteration_is_lazy_and_per_block():
    store = BlockStore("/nonexistent", "k", 1000, [str(i) for i in range(10**6)], [str(i) for i in range(10**6)])
    blocks = store.blocks()
    assert iter(blocks) is blocks  # a generator, not an n^2 job list
    first = [next(blocks) for _ in range(3)]
    assert [b.name for b in first] == ["zero_r0", "one_r0_c0", "one_r0_c1"]
    assert len(store.rows(first[1])) * len(store.cols(first[1])) == 10**6  # work unit: one 1000 x 1000 tile


def test_engine_in_bf16_stays_close_to_fp32(trained_tiny_model, tiny_tokenizer):
    """bf16 compute (fp32 target logit and softmax, fp64 distances) against the fp32 engine."""
    import copy

    import torch

    examples = make_examples(5)
    settings = KernelSettings()
    zero, one, _ = engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)
    bf16 = copy.deepcopy(trained_tiny_model).to(torch.bfloat16)
    zero_b, one_b, _ = engine_kernel(bf16, tiny_tokenizer, examples, examples, settings)
    error = np.abs((zero_b[:, None] - one_b) - (zero[:, None] - one))
    assert error.max() < 0.02 and 0 < error.mean() < 0.005, (error.mean(), error.max())


def test_engine_names_the_example_whose_response_cannot_fit(trained_tiny_model, tiny_tokenizer):
    from delift.kernel.sequences import ResponseTooLongError

    examples = make_examples(4)
    settings = KernelSettings(max_length=12, workers=1)  # shorter than every response + EOS
    with pytest.raises(ResponseTooLongError, match="example 'ex0'"):
        engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)


def test_engine_passes_its_cache_without_deprecated_arguments(trained_tiny_model, tiny_tokenizer):
    """No FutureWarning (``past_key_values`` renamed ``cache``) from the prefix and continuation passes."""
    import warnings

    targets, candidates = make_examples(3), make_examples(4, "c")
    settings = KernelSettings(workers=2, tokens_per_batch=300)  # threads, several groups and passes
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        zero, one, stats = engine_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, settings)
    assert stats.per_sequence == 3  # every one-shot pair went through the cached prefixes
    ref_zero, ref_one, _ = naive_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, 1024)
    np.testing.assert_allclose(zero, ref_zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, ref_one, atol=1e-5, rtol=0)


def test_cache_keyword_follows_the_forward_signature(trained_tiny_model):
    """``cache`` where the forward takes it (this transformers), else the older ``past_key_values``."""
    import inspect

    import torch

    from delift.kernel.engine import _cache_keyword

    class Older(torch.nn.Module):
        def forward(self, input_ids=None, past_key_values=None, use_cache=None, **kwargs):
            return past_key_values

    class Newer(torch.nn.Module):
        def forward(self, input_ids=None, cache=None, use_cache=None, **kwargs):
            return cache

    assert _cache_keyword(Older) == "past_key_values" and _cache_keyword(Newer) == "cache"
    body = trained_tiny_model.base_model
    assert _cache_keyword(type(body)) in inspect.signature(body.forward).parameters
