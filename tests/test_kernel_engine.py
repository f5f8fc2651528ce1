"""The prefix-reuse engine against the naive per-pair computation (one full forward per pair)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_examples
from test_kernel import naive_kernel

from delift.data.prompts import PromptTemplate
from delift.kernel.blocks import BlockStore
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.engine import ScoringSetup, score_one_shot, score_zero_shot
from delift.kernel.probabilities import token_probabilities
from delift.kernel.provider import KernelProvider
from delift.kernel.schedule import CALL_COST, KEY_COST, prefix_groups
from delift.kernel.tokens import tokenize_examples

TEMPLATE = PromptTemplate()


def engine_kernel(model, tok, targets, candidates, settings: KernelConfig):
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
    settings = KernelConfig(max_length=max_length, eos_after_prompt=eos_after_prompt, batch_size=3,
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


@pytest.mark.parametrize("max_length", [1024, 185])  # all pairs on the prefix path; about half cut
def test_engine_with_a_wanted_mask_scores_only_those_pairs(trained_tiny_model, tiny_tokenizer, max_length):
    targets, candidates = make_examples(7), make_examples(9, "c")[2:]
    settings = KernelConfig(max_length=max_length, batch_size=3, tokens_per_batch=300, workers=2)
    tokens = lambda exs: tokenize_examples(exs, tiny_tokenizer, TEMPLATE, settings)  # noqa: E731
    setup = ScoringSetup(trained_tiny_model, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id,
                         settings.eos_after_prompt, settings.max_length, settings.batch_size,
                         settings.tokens_per_batch, workers=settings.workers)
    wanted = np.random.default_rng(3).random((7, 7)) < 0.3
    wanted[:, 4] = False  # a candidate nobody wants: its prefix is never run
    _, ref_one, _ = naive_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, max_length, True)
    one, stats = score_one_shot(setup, tokens(targets), tokens(candidates), wanted)
    np.testing.assert_allclose(one[wanted], ref_one[wanted], atol=1e-5, rtol=0)
    assert np.isnan(one[~wanted]).all() and stats.pairs == wanted.sum()
    _, full = score_one_shot(setup, tokens(targets), tokens(candidates))
    assert stats.tokens < full.tokens  # fewer continuations and prefixes than the whole block
    with pytest.raises(ValueError, match="wanted has shape"):
        score_one_shot(setup, tokens(targets), tokens(candidates), wanted[:3])


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
    shown = list(reversed(lengths))  # columns out of length order
    groups = prefix_groups(setup, list(range(len(shown))), shown, widths)
    expected = _brute_force_groups(lengths, widths, budget)
    assert [[shown[j] for j in g] for g in groups] == [[lengths[k] for k in g] for g in expected]
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
    settings = KernelConfig()
    _, _, stats = engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)
    toks = tokenize_examples(examples, tiny_tokenizer, TEMPLATE, settings)
    per_pair = sum(len(c.shown) + len(t.query) + len(t.response) + 2 for t in toks for c in toks)
    zero_shot = sum(len(t.query) + len(t.response) + 2 for t in toks)
    prefixes_once = sum(len(c.shown) for c in toks)
    assert stats.tokens == per_pair + zero_shot - (len(toks) - 1) * prefixes_once


def test_provider_kernel_equals_naive_and_orientation(tiny_spec, tiny_tokenizer, tmp_path):
    targets, candidates = make_examples(3, "t"), make_examples(5, "c")[1:]
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(tmp_path),
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
    settings = KernelConfig()
    zero, one, _ = engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)
    bf16 = copy.deepcopy(trained_tiny_model).to(torch.bfloat16)
    zero_b, one_b, _ = engine_kernel(bf16, tiny_tokenizer, examples, examples, settings)
    error = np.abs((zero_b[:, None] - one_b) - (zero[:, None] - one))
    assert error.max() < 0.02 and 0 < error.mean() < 0.005, (error.mean(), error.max())


def test_engine_names_the_example_whose_response_cannot_fit(trained_tiny_model, tiny_tokenizer):
    from delift.kernel.sequences import ResponseTooLongError

    examples = make_examples(4)
    settings = KernelConfig(max_length=12, workers=1)  # shorter than every response + EOS
    with pytest.raises(ResponseTooLongError, match="example 'ex0'"):
        engine_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, settings)


def test_engine_passes_its_cache_without_deprecated_arguments(trained_tiny_model, tiny_tokenizer):
    """No FutureWarning (``past_key_values`` renamed ``cache``) from the prefix and continuation passes."""
    import warnings

    targets, candidates = make_examples(3), make_examples(4, "c")
    settings = KernelConfig(workers=2, tokens_per_batch=300)  # threads, several groups and passes
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


# ------------------------------------------------------------------ the logprob_sum aggregate (Nuggets)
def naive_logprob_sum(model, tok, shown: str | None, query: str, response: str, max_length: int,
                      eos_after_prompt: bool = True) -> float:
    """One forward of one whole sequence; sum of the fp32 log-softmax at the response tokens and final EOS.

    Written apart from the engine: strings -> ids, shown example then query cut from the left.
    """
    import torch

    eos = tok.eos_token_id
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    shown_ids = enc(shown) if shown is not None else []
    query_ids, answer = enc(query), enc(response) + [eos]
    head = [eos] if eos_after_prompt else []
    while shown_ids and len(shown_ids) + len(query_ids) + len(head) + len(answer) > max_length:
        shown_ids = shown_ids[1:]
    while len(query_ids) + len(head) + len(answer) > max_length:
        query_ids = query_ids[1:]
    ids = shown_ids + query_ids + head + answer
    first = len(ids) - len(answer)
    with torch.no_grad():
        log_probs = torch.log_softmax(model(torch.tensor([ids], device=model.device)).logits[0].float(), dim=-1)
    return float(sum(log_probs[t - 1, ids[t]].double() for t in range(first, len(ids))))


def naive_logprob_kernel(model, tok, targets, candidates, max_length, eos_after_prompt=True):
    zero = np.array([naive_logprob_sum(model, tok, None, TEMPLATE.render(t), t.output, max_length, eos_after_prompt)
                     for t in targets])
    one = np.array([[naive_logprob_sum(model, tok, TEMPLATE.render(c) + c.output + "\n\n", TEMPLATE.render(t),
                                       t.output, max_length, eos_after_prompt) for c in candidates] for t in targets])
    return zero, one


@pytest.mark.parametrize("max_length,eos_after_prompt,tokens_per_batch,workers", [
    (1024, True, 8192, 1),  # nothing truncated: every pair through the cached prefixes
    (1024, True, 300, 2),  # several prefix groups and continuation passes, two workers
    (150, True, 8192, 2),  # every shown example cut: the per-sequence path
    (90, False, 500, 1),  # shown examples dropped, queries cut, no EOS after the prompt
])
def test_logprob_sum_engine_equals_naive_per_pair(trained_tiny_model, tiny_tokenizer, max_length, eos_after_prompt,
                                                  tokens_per_batch, workers):
    targets, candidates = make_examples(5), make_examples(8, "c")[1:]
    settings = KernelConfig(max_length=max_length, eos_after_prompt=eos_after_prompt, batch_size=3,
                              tokens_per_batch=tokens_per_batch, workers=workers)
    tokens = lambda exs: tokenize_examples(exs, tiny_tokenizer, TEMPLATE, settings)  # noqa: E731
    setup = ScoringSetup(trained_tiny_model, tiny_tokenizer.eos_token_id, tiny_tokenizer.pad_token_id,
                         eos_after_prompt, max_length, settings.batch_size, tokens_per_batch, workers=workers,
                         aggregate="logprob_sum")
    zero, _ = score_zero_shot(setup, tokens(targets))
    one, stats = score_one_shot(setup, tokens(targets), tokens(candidates))
    ref_zero, ref_one = naive_logprob_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, max_length,
                                             eos_after_prompt)
    np.testing.assert_allclose(zero, ref_zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(one, ref_one, atol=1e-5, rtol=0)
    gain = ref_one - ref_zero[:, None]
    assert np.all(ref_one < 0) and np.std(gain) > 1e-2  # real log-likelihoods, and far from vacuous at 1e-5
    if max_length == 1024:
        assert stats.per_sequence == 0 and (gain > 0).any() and (gain < 0).any()  # wins and losses both occur
    if max_length == 90:
        assert stats.shown_dropped > 0  # such a pair is the zero-shot sequence itself
        dropped = np.isclose(one, zero[:, None], atol=1e-5, rtol=0)
        assert dropped.any()


def test_logprob_sum_comes_from_log_softmax_not_log_of_p():
    """A token of p ~ e^-120 (0 in fp32): log p stays finite and exact; log(p) would be -inf."""
    import torch

    head = torch.nn.Linear(2, 3, bias=False)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[60.0, 0.0], [-60.0, 0.0], [0.0, 0.0]]))
    hidden, targets = torch.tensor([[1.0, 0.0]]), torch.tensor([1])
    with torch.no_grad():
        log_p = token_probabilities(head, None, hidden, targets, log=True)
        p = token_probabilities(head, None, hidden, targets)
    expected = -120.0 - np.log1p(np.exp(-60.0) + np.exp(-120.0))  # logits (60, -60, 0), target -60
    assert float(log_p[0]) == pytest.approx(expected, abs=1e-4)
    assert float(p[0]) == 0.0  # p underflows in fp32


def test_provider_logprob_kernel_orientation_key_and_cache(tiny_spec, trained_tiny_model, tiny_tokenizer, tmp_path):
    from delift.kernel.cache import kernel_cache_key

    targets, candidates = make_examples(3, "g"), make_examples(5, "c")
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(tmp_path),
                              progress=False)
    provider._model = trained_tiny_model  # the trained weights, so the numbers are not all alike
    kernel = provider.utility(targets, candidates, aggregate="logprob_sum")
    zero, one = naive_logprob_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, 1024)
    np.testing.assert_allclose(kernel.d_zero, zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(kernel.d_one, one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(kernel.uf, one - zero[:, None], atol=1e-5, rtol=0)  # UF = l_one - l_zero: gain
    assert kernel.meta["aggregate"] == "logprob_sum" and kernel.meta["blocks_computed"] == 2 * (1 + 3)
    distance_key = provider.block_store(targets, candidates).key
    payload = provider.cache_payload(targets, candidates)
    assert "aggregate" not in payload and kernel.meta["key"] == kernel_cache_key({**payload, "aggregate": "logprob_sum"})
    assert kernel.meta["key"] != distance_key
    again = provider.utility(targets, candidates, aggregate="logprob_sum")  # from the merged cache file
    assert again.meta["cached"] is True and again.meta["aggregate"] == "logprob_sum"
    np.testing.assert_array_equal(again.uf, kernel.uf)
    distance = provider.utility(targets, candidates)  # the distance kernel is its own file, unaffected
    assert distance.meta["cached"] is False and distance.meta["key"] == distance_key
    assert distance.meta["aggregate"] == "distance" and np.all(distance.d_one >= 0) and np.all(kernel.d_one < 0)
    with pytest.raises(ValueError, match="aggregate 'mean'"):
        provider.utility(targets, candidates, aggregate="mean")


def test_sharded_fill_of_a_logprob_kernel_request(tiny_spec, trained_tiny_model, tmp_path):
    """``provider.fill(*request)`` with a KernelRequest fills the logprob kernel's blocks, shard by shard."""
    from delift.kernel.settings import KernelRequest

    targets, candidates = make_examples(2, "g"), make_examples(3, "c")
    request = KernelRequest(targets, candidates, "logprob_sum")
    filled = []
    for shard in (0, 1):
        provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2, num_shards=2, shard=shard),
                                  KernelCache(tmp_path), progress=False)
        provider._model = trained_tiny_model
        filled.append(provider.fill(*request))
    assert [f["aggregate"] for f in filled] == ["logprob_sum"] * 2 and filled[1]["complete"] is True
    assert filled[0]["key"] == filled[1]["key"] == provider.block_store(*request).key
    assert filled[0]["blocks_computed"] + filled[1]["blocks_computed"] == 1 + 2  # zero-shot + 2 column tiles
    merged = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(block_size=2), KernelCache(tmp_path), progress=False)
    merged._model = trained_tiny_model
    kernel = merged.utility(*request)
    assert kernel.meta["blocks_computed"] == 0 and kernel.meta["aggregate"] == "logprob_sum"
    np.testing.assert_allclose(kernel.uf, kernel.d_one - kernel.d_zero[:, None])


def test_default_distance_cache_keys_are_unchanged(tiny_spec, tmp_path):
    """The aggregate enters the key only when it is not the default: DELIFT's kernels keep their keys."""
    from delift.data.records import fingerprint
    from delift.kernel.cache import kernel_cache_key
    from delift.kernel.settings import KERNEL_CODE_VERSION
    from delift.models.loading import model_identity

    examples = make_examples(5)
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), KernelCache(tmp_path), progress=False)
    before = {  # the payload exactly as it was built before aggregates existed
        "model": model_identity(tiny_spec), "targets": fingerprint(examples[:2]), "candidates": fingerprint(examples),
        "prompt_template": [TEMPLATE.with_input, TEMPLATE.without_input],
        "kernel": {"shown_example": "{prompt}{response}\n\n", "eos_after_prompt": True, "max_length": 1024,
                   "code_version": KERNEL_CODE_VERSION}}
    key = provider.block_store(examples[:2], examples).key
    assert key == provider.block_store(examples[:2], examples, "distance").key == kernel_cache_key(before)
    # computed with the code before the aggregate was added; changes only with KERNEL_CODE_VERSION (3 then)
    # or the tiny model's identity
    if KERNEL_CODE_VERSION == 3:
        assert key == "71035faedd2da3f45536b0b4cc4f6ab5188b947c5c6c2969ec9725aed2c92077"
    assert provider.block_store(examples[:2], examples, "logprob_sum").key != key
