"""The per-example scoring layer against a naive one-forward-per-example HF computation (fp32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from delift.data.prompts import PromptTemplate
from delift.scoring import ExampleScorer, training_items
from delift.scoring.cache import ScoreCache
from tests.conftest import make_examples

TEMPLATE = PromptTemplate()


def naive_log_probs(model, ids: list[int], start: int) -> np.ndarray:
    """log p(ids[t] | ids[:t]) for t >= start, from the model's own full forward on one sequence."""
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    log_p = torch.log_softmax(logits, dim=-1)
    return np.array([float(log_p[t - 1, ids[t]]) for t in range(start, len(ids))])


@pytest.fixture(scope="module")
def adapter_dir(tiny_spec, tmp_path_factory):
    """A LoRA adapter on the tiny model with non-zero B, so it changes every score."""
    from peft import LoraConfig, get_peft_model

    from delift.models.loading import load_model

    torch.manual_seed(0)
    model = get_peft_model(load_model(tiny_spec), LoraConfig(r=4, lora_alpha=8, target_modules="all-linear"))
    for name, param in model.named_parameters():
        if "lora_B" in name:
            param.data.normal_(0, 0.2)
    folder = tmp_path_factory.mktemp("adapter")
    model.save_pretrained(folder)
    return folder


@pytest.mark.parametrize("prefix", ["", "Rate this example.\n"])
@pytest.mark.parametrize("mode", ["base", "adapter", "adapter_off"])
def test_response_log_probs_equal_a_naive_forward(tiny_spec, tiny_tokenizer, adapter_dir, tmp_path, prefix, mode):
    from peft import PeftModel

    from delift.models.loading import load_model

    examples = make_examples(7)
    scorer = ExampleScorer(tiny_spec, TEMPLATE, tmp_path, batch_size=3, progress=False)
    prefix_ids = list(tiny_tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []
    items = training_items(examples, tiny_tokenizer, TEMPLATE, max_length=1024)
    adapter = None if mode == "base" else adapter_dir
    got = scorer.token_log_probs(items, prefix=prefix_ids, adapter=adapter, adapter_enabled=mode != "adapter_off")

    base = load_model(tiny_spec)
    reference = PeftModel.from_pretrained(base, str(adapter_dir)).eval() if mode == "adapter" else base
    for item, values in zip(items, got):
        ids = prefix_ids + list(item.context) + list(item.scored)
        expected = naive_log_probs(reference, ids, len(prefix_ids) + len(item.context))
        np.testing.assert_allclose(values, expected, atol=1e-6, rtol=0)
    if mode == "adapter":  # the adapter really changes the numbers (the test is not vacuous)
        plain = scorer.token_log_probs(items, prefix=prefix_ids)
        assert max(float(np.abs(a - b).max()) for a, b in zip(got, plain)) > 1e-3


def test_response_nll_is_the_masked_mean_and_is_cached_per_example(tiny_spec, tiny_tokenizer, tmp_path):
    from delift.models.loading import load_model

    examples = make_examples(6)
    scorer = ExampleScorer(tiny_spec, TEMPLATE, tmp_path, batch_size=4, progress=False)
    nll = scorer.response_nll(examples[:4])
    model = load_model(tiny_spec)
    for value, item in zip(nll, training_items(examples[:4], tiny_tokenizer, TEMPLATE, 1024)):
        ids = list(item.context) + list(item.scored)
        assert value == pytest.approx(-naive_log_probs(model, ids, len(item.context)).mean(), abs=1e-6)
    assert (scorer.computed, scorer.cache_hits) == (4, 0)
    later = scorer.response_nll(examples[3:])  # 3 from the cache, 4-5 scored
    assert (scorer.computed, scorer.cache_hits) == (6, 1)
    again = ExampleScorer(tiny_spec, TEMPLATE, tmp_path, batch_size=2, progress=False)
    np.testing.assert_allclose(again.response_nll(examples[2:]), np.r_[nll[2:3], later])
    assert again.computed == 0 and again.cache_hits == 4  # examples 2-5: two earlier calls stored them


def test_next_token_probabilities_after_a_shared_prefix(tiny_spec, tiny_tokenizer, tmp_path):
    from delift.models.loading import load_model

    scorer = ExampleScorer(tiny_spec, TEMPLATE, tmp_path, batch_size=2, progress=False)
    token_ids = [ord(d) for d in "12345"]
    contexts = [("a", "The answer is: "), ("b", "Some longer text here. The answer is: "), ("c", "x")]
    got = scorer.next_token_probs(contexts, token_ids, prefix="Rate 1-5.\n")
    model = load_model(tiny_spec)
    prefix_ids = list(tiny_tokenizer("Rate 1-5.\n", add_special_tokens=False)["input_ids"])
    for row, (_, text) in zip(got, contexts):
        ids = prefix_ids + list(tiny_tokenizer(text, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            probs = torch.softmax(model(input_ids=torch.tensor([ids])).logits[0, -1].double(), dim=-1)
        np.testing.assert_allclose(row, probs[token_ids].numpy(), atol=1e-6, rtol=0)


def test_a_damaged_cache_file_is_a_miss(tmp_path, caplog):
    cache = ScoreCache(tmp_path)
    family = {"kind": "x"}
    path = cache.store(family, ["k1", "k2"], [np.array([1.0, 2.0]), np.array([3.0])])
    assert {k: list(v) for k, v in cache.lookup(family, ["k1", "k2", "k3"]).items()} == {"k1": [1.0, 2.0], "k2": [3.0]}
    path.write_bytes(path.read_bytes()[:20])
    with caplog.at_level("WARNING"):
        assert cache.lookup(family, ["k1"]) == {}
    assert str(path) in caplog.text
