"""The utility kernel against a deliberately naive per-pair computation (one full forward per pair)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from conftest import make_examples

from delift.data.prompts import PromptTemplate
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.config import KernelConfig
from delift.kernel.postprocess import postprocess_kernel
from delift.kernel.probabilities import check_head_matches_forward
from delift.kernel.provider import KernelProvider
from delift.kernel.sequences import ResponseTooLongError, build_sequence
from delift.kernel.tokens import overflowing_targets, tokenize_examples

TEMPLATE = PromptTemplate()


def naive_distance(model, tok, shown: str | None, query: str, response: str, max_length: int,
                   eos_after_prompt: bool = True) -> float:
    """Written independently of the engine: strings -> ids, cut shown then query from the left, one forward."""
    eos = tok.eos_token_id
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    shown_ids = enc(shown) if shown is not None else []
    separator = [eos] if eos_after_prompt else []
    query_ids, tail = enc(query), separator + enc(response) + [eos]
    while len(shown_ids) + len(query_ids) + len(tail) > max_length and shown_ids:
        shown_ids = shown_ids[1:]
    while len(query_ids) + len(tail) > max_length:
        query_ids = query_ids[1:]
    ids = shown_ids + query_ids + tail
    start = len(shown_ids) + len(query_ids) + len(separator)  # first response token
    with torch.no_grad():
        logits = model(torch.tensor([ids], device=model.device)).logits[0].float()
    probs = torch.softmax(logits, dim=-1)
    p = [probs[t - 1, ids[t]].item() for t in range(start, len(ids))]
    return math.sqrt(sum((1 - x) ** 2 for x in p) / len(p))


def naive_kernel(model, tok, targets, candidates, max_length, eos_after_prompt=True):
    zero = np.array([naive_distance(model, tok, None, TEMPLATE.render(t), t.output, max_length, eos_after_prompt)
                     for t in targets])
    one = np.array([[naive_distance(model, tok, TEMPLATE.render(c) + c.output + "\n\n", TEMPLATE.render(t), t.output,
                                    max_length, eos_after_prompt) for c in candidates] for t in targets])
    return zero, one, zero[:, None] - one


def test_response_that_cannot_fit_is_an_error_or_counted(tiny_spec, tiny_tokenizer, tmp_path):
    examples = make_examples(4)
    longest = max(len(tiny_tokenizer(e.output, add_special_tokens=False)["input_ids"]) for e in examples)
    settings = KernelConfig(max_length=longest + 2)  # response + 2 EOS fits, no room for a query token
    provider = KernelProvider(tiny_spec, TEMPLATE, settings, KernelCache(tmp_path), progress=False)
    with pytest.raises(ResponseTooLongError, match="kernel.max_length"):
        provider.utility(examples, examples)
    too_long = overflowing_targets(examples, tiny_tokenizer, TEMPLATE, settings)
    lengths = {e.id: len(tiny_tokenizer(e.output, add_special_tokens=False)["input_ids"]) for e in examples}
    assert too_long == [i for i, n in lengths.items() if n + 3 > longest + 2]


def test_postprocess_clip_minmax_and_self_pairs():
    uf = np.array([[0.5, -0.2], [0.1, 0.3]])
    np.testing.assert_allclose(postprocess_kernel(uf, "clip"), [[0.5, 0.0], [0.1, 0.3]])
    np.testing.assert_allclose(postprocess_kernel(uf, "minmax"), [[1.0, 0.0], [3 / 7, 5 / 7]])
    # excluding self-pairs: scale over the off-diagonal only (-0.2 .. 0.1), then zero the diagonal
    np.testing.assert_allclose(postprocess_kernel(uf, "minmax", exclude_self_pairs=True), [[0.0, 0.0], [1.0, 0.0]])
    with pytest.raises(ValueError, match="explicit self_pair_mask"):
        postprocess_kernel(np.zeros((2, 3)), "clip", exclude_self_pairs=True)
    with pytest.raises(ValueError, match="selector.postprocess"):
        postprocess_kernel(uf, "softmax")


def test_cache_reuses_and_keys_on_templates(tiny_spec, tmp_path, monkeypatch):
    examples = make_examples(3)
    cache = KernelCache(tmp_path / "kernels")
    provider = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), cache, progress=False)
    first = provider.utility(examples, examples)
    assert first.meta["cached"] is False and len(list(cache.root.glob("*.npz"))) == 1
    again = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), cache, progress=False)
    monkeypatch.setattr("delift.kernel.provider.load_model", lambda *a, **k: pytest.fail("cache miss"))
    second = again.utility(examples, examples)
    assert second.meta["cached"] is True
    np.testing.assert_array_equal(first.uf, second.uf)
    (next(cache.root.glob("*.npz"))).write_bytes(b"not an npz")  # a damaged file is a miss, then rewritten
    monkeypatch.undo()
    rebuilt = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), cache, progress=False).utility(examples, examples)
    assert rebuilt.meta["cached"] is False
    np.testing.assert_array_equal(rebuilt.uf, first.uf)


@pytest.mark.parametrize("change", ["shown_example", "eos_after_prompt", "max_length", "prompt", "dtype", "model_seed",
                                    "targets", "candidates"])
def test_cache_key_changes_with_everything_the_kernel_depends_on(tiny_spec, tmp_path, change):
    from dataclasses import replace

    examples, settings, template, spec = make_examples(3), KernelConfig(), TEMPLATE, tiny_spec
    key = lambda p, t=examples, c=examples: kernel_cache_key(p.cache_payload(t, c))  # noqa: E731
    base = key(KernelProvider(spec, template, settings, KernelCache(tmp_path)))
    targets = candidates = examples
    if change == "shown_example":
        settings = replace(settings, shown_example="Example:\n{prompt}{response}\n\n")
    elif change in ("eos_after_prompt", "max_length"):
        settings = replace(settings, **{change: {"eos_after_prompt": False, "max_length": 512}[change]})
    elif change == "prompt":
        template = PromptTemplate(without_input="Q: {instruction}\nA: ")
    elif change == "dtype":
        spec = replace(spec, dtype="bfloat16")
    elif change == "model_seed":
        spec = replace(spec, seed=1)
    elif change == "targets":
        targets = examples[:2]
    else:
        candidates = make_examples(4)[1:]
    assert key(KernelProvider(spec, template, settings, KernelCache(tmp_path)), targets, candidates) != base
    assert key(KernelProvider(tiny_spec, TEMPLATE, replace(KernelConfig(), batch_size=3), KernelCache(tmp_path))) \
        == base  # batch size does not change the numbers


def test_unsupported_logit_rescaling_is_refused(trained_tiny_model, tiny_tokenizer):
    import copy

    model = copy.deepcopy(trained_tiny_model)
    example = tokenize_examples(make_examples(1), tiny_tokenizer, TEMPLATE, KernelConfig())[0]
    sequence = build_sequence([], example.query, example.response, tiny_tokenizer.eos_token_id, True, 1024)
    check_head_matches_forward(model, sequence)  # Llama as it is passes
    model.config.final_logit_softcapping = 0.05  # our scorer would cap, Llama's own forward does not
    with pytest.raises(NotImplementedError, match="rescales its logits"):
        check_head_matches_forward(model, sequence)


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    from delift.kernel.settings import UtilityKernel

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


def _rewrite_cached(path, **changes) -> None:
    """Rewrite a cached ``<key>.npz`` with some of its arrays replaced."""
    with np.load(path) as data:
        arrays = {name: data[name] for name in data.files}
    arrays.update(changes)
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


@pytest.mark.parametrize("damage,reason", [
    (lambda a: {"uf": np.where(np.eye(*a["uf"].shape, dtype=bool), np.nan, a["uf"])}, "uf holds 3 non-finite"),
    (lambda a: {"d_zero": np.array([0.5, np.inf, 0.5])}, "d_zero holds 1 non-finite"),
    (lambda a: {"d_one": np.full((3, 3), -np.inf)}, "d_one holds 9 non-finite"),
    (lambda a: {"d_one": a["d_one"][:, :2]}, "d_one has shape (3, 2)"),
    (lambda a: {"uf": a["uf"].T[:2]}, "uf has shape (2, 3)"),
    (lambda a: {"d_zero": a["d_zero"].astype(np.int64)}, "d_zero has shape (3,) and dtype int64"),
])
def test_cached_kernel_with_non_finite_or_misshapen_arrays_is_a_miss(tiny_spec, tmp_path, caplog, damage, reason):
    examples = make_examples(3)
    cache = KernelCache(tmp_path / "kernels")
    first = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), cache, progress=False).utility(examples, examples)
    path = next(cache.root.glob("*.npz"))
    with np.load(path) as data:
        _rewrite_cached(path, **damage({name: data[name] for name in data.files}))
    with caplog.at_level("WARNING", logger="delift.kernel"):
        assert cache.load(path.stem) is None
    assert str(path) in caplog.text and reason in caplog.text, caplog.text

    rebuilt = KernelProvider(tiny_spec, TEMPLATE, KernelConfig(), cache, progress=False).utility(examples, examples)
    assert rebuilt.meta["cached"] is False
    np.testing.assert_array_equal(rebuilt.uf, first.uf)
    reloaded = cache.load(path.stem)  # the damaged file was overwritten with the sound kernel
    assert reloaded is not None and np.array_equal(reloaded.d_one, first.d_one)
