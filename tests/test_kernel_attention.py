"""The grouped SDPA used by the engine's CPU passes against transformers' own sdpa attention."""

from __future__ import annotations

import torch
from transformers import LlamaConfig, LlamaForCausalLM
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from delift.kernel.attention import NAME, _sdpa_grouped, grouped_sdpa


def _gqa_model() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=64, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         attn_implementation="sdpa")
    return LlamaForCausalLM(config).eval()


def test_grouped_attention_equals_repeated_heads_with_a_mask():
    module = _gqa_model().model.layers[0].self_attn
    q, k, v = torch.randn(3, 4, 5, 8), torch.randn(3, 2, 9, 8), torch.randn(3, 2, 9, 8)
    mask = torch.rand(3, 1, 5, 9) > 0.3
    mask[..., 0] = True  # every query sees at least one key
    grouped, _ = _sdpa_grouped(module, q, k, v, mask, scaling=0.35)
    repeated, _ = sdpa_attention_forward(module, q, k, v, mask, scaling=0.35)
    assert grouped.shape == (3, 5, 4, 8)
    torch.testing.assert_close(grouped, repeated, atol=1e-6, rtol=0)


def test_engine_attention_switch_keeps_the_model_output_and_is_undone(monkeypatch):
    sdpa, grouped_calls = torch.nn.functional.scaled_dot_product_attention, []

    def spy(*args, **kwargs):
        grouped_calls.append(kwargs.get("enable_gqa", False))
        return sdpa(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", spy)
    model = _gqa_model()
    ids = torch.randint(0, 64, (2, 7))
    mask = torch.ones(2, 7, dtype=torch.long)
    mask[1, 5:] = 0  # right padding: a real mask reaches the attention
    with torch.inference_mode():
        expected = model(input_ids=ids, attention_mask=mask).logits
        with grouped_sdpa(model):
            assert model.config._attn_implementation == NAME
            got = model(input_ids=ids, attention_mask=mask).logits
    assert model.config._attn_implementation == "sdpa"
    assert grouped_calls == [False, False, True, True]  # 2 layers plain, then 2 layers grouped
    torch.testing.assert_close(got[0], expected[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(got[1, :5], expected[1, :5], atol=1e-5, rtol=0)


def test_other_attention_implementations_are_left_alone():
    model = _gqa_model()
    model.config._attn_implementation = "eager"
    with grouped_sdpa(model):
        assert model.config._attn_implementation == "eager"
