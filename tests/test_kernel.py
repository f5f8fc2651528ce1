"""The utility kernel against a deliberately naive per-pair computation (one full forward per pair)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from conftest import make_examples
from delift.data.prompts import PromptTemplate
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.postprocess import postprocess_kernel
from delift.kernel.provider import KernelProvider
from delift.kernel.sequences import ResponseTooLongError
from delift.kernel.utility import KernelSettings, compute_utility_kernel, overflowing_targets

TEMPLATE = PromptTemplate()


def naive_distance(model, tok, shown: str | None, query: str, response: str, max_length: int) -> float:
    """Written independently of the engine: strings -> ids, cut shown then query from the left, one forward."""
    eos = tok.eos_token_id
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    shown_ids = enc(shown) if shown is not None else []
    query_ids, tail = enc(query), [eos] + enc(response) + [eos]
    while len(shown_ids) + len(query_ids) + len(tail) > max_length and shown_ids:
        shown_ids = shown_ids[1:]
    while len(query_ids) + len(tail) > max_length:
        query_ids = query_ids[1:]
    ids = shown_ids + query_ids + tail
    start = len(shown_ids) + len(query_ids) + 1  # first response token
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0].float()
    probs = torch.softmax(logits, dim=-1)
    p = [probs[t - 1, ids[t]].item() for t in range(start, len(ids))]
    return math.sqrt(sum((1 - x) ** 2 for x in p) / len(p))


def naive_kernel(model, tok, targets, candidates, max_length):
    zero = np.array([naive_distance(model, tok, None, TEMPLATE.render(t), t.output, max_length) for t in targets])
    one = np.array([[naive_distance(model, tok, TEMPLATE.render(c) + c.output + "\n\n", TEMPLATE.render(t), t.output,
                                    max_length) for c in candidates] for t in targets])
    return zero, one, zero[:, None] - one


@pytest.mark.parametrize("max_length", [1024, 150, 90])
def test_kernel_matches_naive_per_pair(trained_tiny_model, tiny_tokenizer, max_length):
    # 1024: nothing truncated; 150: shown examples cut; 90: shown examples gone and queries cut.
    examples = make_examples(7)
    settings = KernelSettings(max_length=max_length, batch_size=5)
    kernel = compute_utility_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, TEMPLATE, settings,
                                    progress=False)
    zero, one, uf = naive_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, max_length)
    assert kernel.uf.shape == (7, 7)
    np.testing.assert_allclose(kernel.d_zero, zero, atol=1e-5, rtol=0)
    np.testing.assert_allclose(kernel.d_one, one, atol=1e-5, rtol=0)
    np.testing.assert_allclose(kernel.uf, uf, atol=1e-5, rtol=0)
    assert np.std(kernel.uf) > 1e-3  # 100x the tolerance: the comparison is not vacuous


def test_kernel_orientation_rows_targets_columns_candidates(trained_tiny_model, tiny_tokenizer):
    targets, candidates = make_examples(3, "t"), make_examples(5, "c")[1:]
    kernel = compute_utility_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, TEMPLATE,
                                    KernelSettings(batch_size=4), progress=False)
    _, _, uf = naive_kernel(trained_tiny_model, tiny_tokenizer, targets, candidates, 1024)
    assert kernel.uf.shape == (3, 4)
    assert kernel.target_ids == ["t0", "t1", "t2"] and kernel.candidate_ids == ["c1", "c2", "c3", "c4"]
    np.testing.assert_allclose(kernel.uf, uf, atol=1e-5, rtol=0)


def test_response_that_cannot_fit_is_an_error_or_counted(trained_tiny_model, tiny_tokenizer):
    examples = make_examples(4)
    longest = max(len(tiny_tokenizer(e.output, add_special_tokens=False)["input_ids"]) for e in examples)
    settings = KernelSettings(max_length=longest + 2)  # response + 2 EOS fits, no room for a query token
    with pytest.raises(ResponseTooLongError, match="kernel.max_length"):
        compute_utility_kernel(trained_tiny_model, tiny_tokenizer, examples, examples, TEMPLATE, settings, progress=False)
    too_long = overflowing_targets(examples, tiny_tokenizer, TEMPLATE, settings)
    lengths = {e.id: len(tiny_tokenizer(e.output, add_special_tokens=False)["input_ids"]) for e in examples}
    assert too_long == [i for i, n in lengths.items() if n + 3 > longest + 2]


def test_postprocess_clip_minmax_and_self_pairs():
    uf = np.array([[0.5, -0.2], [0.1, 0.3]])
    np.testing.assert_allclose(postprocess_kernel(uf, "clip"), [[0.5, 0.0], [0.1, 0.3]])
    np.testing.assert_allclose(postprocess_kernel(uf, "minmax"), [[1.0, 0.0], [3 / 7, 5 / 7]])
    # excluding self-pairs: scale over the off-diagonal only (-0.2 .. 0.1), then zero the diagonal
    np.testing.assert_allclose(postprocess_kernel(uf, "minmax", exclude_self_pairs=True), [[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="selector.postprocess"):
        postprocess_kernel(uf, "softmax")


def test_cache_reuses_and_keys_on_templates(tiny_spec, tmp_path, monkeypatch):
    examples = make_examples(3)
    cache = KernelCache(tmp_path / "kernels")
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelSettings(), cache, progress=False)
    first = provider.utility(examples, examples)
    assert first.meta["cached"] is False and len(list(cache.root.glob("*.npz"))) == 1
    again = KernelProvider(tiny_spec, TEMPLATE, KernelSettings(), cache, progress=False)
    monkeypatch.setattr("delift.kernel.provider.load_model", lambda *a, **k: pytest.fail("cache miss"))
    second = again.utility(examples, examples)
    assert second.meta["cached"] is True
    np.testing.assert_array_equal(first.uf, second.uf)
    changed = KernelSettings(shown_example="Example:\n{prompt}{response}\n\n")
    assert kernel_cache_key(again.cache_payload(examples, examples)) != kernel_cache_key(
        KernelProvider(tiny_spec, TEMPLATE, changed, cache).cache_payload(examples, examples))
    other_data = make_examples(4)[1:]
    assert kernel_cache_key(again.cache_payload(examples, examples)) != kernel_cache_key(
        again.cache_payload(other_data, other_data))


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    from delift.kernel.utility import UtilityKernel

    cache = KernelCache(tmp_path)
    kernel = UtilityKernel(np.zeros((2, 2)), np.zeros(2), np.zeros((2, 2)), ["a", "b"], ["a", "b"])

    def broken_savez(handle, **arrays):
        handle.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", broken_savez)
    with pytest.raises(OSError, match="disk full"):
        cache.save("k", kernel, {})
    assert list(tmp_path.iterdir()) == []
    assert cache.load("k") is None
