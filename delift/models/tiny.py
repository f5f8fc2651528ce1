"""Tiny random causal LMs with a byte-level tokenizer (or ``byte_pairs``: one with merges), built in code: the
project's test models.

One builder per model family (``model.tiny.family``; null is ``llama``), each showing what makes its
family differ from the others at the smallest size:

- ``llama``: the project's original test model (multi-head attention, as before this table existed).
- ``llama3``: Llama 3-style grouped-query attention (half as many key/value heads) and RoPE theta 500k.
- ``qwen2``: grouped-query attention with a bias on the q/k/v projections.
- ``phi3``: fused ``qkv_proj`` and ``gate_up_proj`` linears (grouped-query, so the fused split is uneven).
- ``mistral``: sliding-window attention on every layer (a 64-token window, so it bites on test sequences).
- ``gemma2``: alternating sliding (8 tokens) and full layers, soft-capped attention and final logits,
  tied input/output embeddings.

Torch-free at import (torch and transformers only inside the functions that build and fit): the model's
settings (:mod:`delift.models.config`) take their family and tokenizer choices from ``BUILDERS`` and ``TOKENIZERS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

DEFAULT_TINY_FAMILY = "llama"  # what a null model.tiny.family builds
EOS, PAD = "</s>", "<pad>"
# byte_pairs: frequent English and prompt-template pairs ("Ġ" is a space, "Ċ" a newline in byte-level symbols)
PAIR_MERGES = (("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("r", "e"), ("o", "n"), ("e", "s"),
               ("s", "t"), ("Ġ", "t"), ("Ġ", "a"), ("Ġ", "s"), ("#", "#"), ("##", "#"), ("Ċ", "Ċ"), (":", "Ċ"))
TOKENIZERS = {None: (), "byte_pairs": PAIR_MERGES}  # model.tiny.tokenizer -> BPE merges over the byte symbols
# Windows that bite on the test and smoke sequences (50-500 byte tokens). Mistral's 2 sliding layers see
# 2 x 63 tokens back, so a short query's response still reaches the shown example before it (with 16, the
# one-shot kernel of the test examples is exactly the zero-shot one); Gemma-2's full layers see everything.
MISTRAL_WINDOW = 64
GEMMA2_WINDOW = 8


def build_byte_tokenizer(merges: tuple[tuple[str, str], ...] = ()):
    """Byte-level tokenizer (256 byte symbols, then ``merges``' products) plus EOS and PAD; no download needed."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    for left, right in merges:
        vocab[left + right] = len(vocab)
    vocab[EOS] = len(vocab)
    vocab[PAD] = len(vocab)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=list(merges)))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    backend.decoder = decoders.ByteLevel()
    backend.add_special_tokens([EOS, PAD])
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token=EOS, pad_token=PAD)


def _llama(shape: dict[str, int], special: dict[str, Any]):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(num_key_value_heads=shape["num_attention_heads"], **shape, **special)


def _llama3(shape: dict[str, int], special: dict[str, Any]):
    from transformers import LlamaConfig, LlamaForCausalLM

    return LlamaForCausalLM, LlamaConfig(num_key_value_heads=_grouped(shape), rope_theta=500000.0, **shape, **special)


def _qwen2(shape: dict[str, int], special: dict[str, Any]):
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return Qwen2ForCausalLM, Qwen2Config(num_key_value_heads=_grouped(shape), use_sliding_window=False, **shape,
                                         **special)


def _phi3(shape: dict[str, int], special: dict[str, Any]):
    from transformers import Phi3Config, Phi3ForCausalLM

    return Phi3ForCausalLM, Phi3Config(num_key_value_heads=_grouped(shape), sliding_window=None,
                                       original_max_position_embeddings=shape["max_position_embeddings"], **shape,
                                       **special)


def _mistral(shape: dict[str, int], special: dict[str, Any]):
    from transformers import MistralConfig, MistralForCausalLM

    return MistralForCausalLM, MistralConfig(num_key_value_heads=_grouped(shape), sliding_window=MISTRAL_WINDOW,
                                             **shape, **special)


def _gemma2(shape: dict[str, int], special: dict[str, Any]):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    head_dim = shape["hidden_size"] // shape["num_attention_heads"]
    layer_types = ["sliding_attention" if n % 2 == 0 else "full_attention"
                   for n in range(shape["num_hidden_layers"])]
    config = Gemma2Config(num_key_value_heads=_grouped(shape), head_dim=head_dim, query_pre_attn_scalar=head_dim,
                          sliding_window=GEMMA2_WINDOW, layer_types=layer_types, attn_logit_softcapping=50.0,
                          final_logit_softcapping=30.0, **shape, **(special | {"tie_word_embeddings": True}))
    return Gemma2ForCausalLM, config


def _grouped(shape: dict[str, int]) -> int:
    """Half as many key/value heads as query heads (at least one): grouped-query attention."""
    return max(1, shape["num_attention_heads"] // 2)


# family -> (shape, special token ids) -> (model class, its config): model.tiny.family's choices
BUILDERS: dict[str, Callable[[dict[str, int], dict[str, Any]], tuple[type, Any]]] = {
    "llama": _llama, "llama3": _llama3, "qwen2": _qwen2, "phi3": _phi3, "mistral": _mistral, "gemma2": _gemma2,
}


def build_tiny_model(folder: Path, seed: int, family: str = DEFAULT_TINY_FAMILY, hidden_size: int = 64,
                     num_layers: int = 2, num_heads: int = 4, intermediate_size: int = 128,
                     max_positions: int = 2048, tokenizer: str | None = None) -> None:
    """Write a seeded random causal LM of ``family`` and its tokenizer (``TOKENIZERS``' name) to ``folder``."""
    if family not in BUILDERS:
        raise ValueError(f"model.tiny.family={family!r}: expected one of {', '.join(BUILDERS)}")
    if tokenizer not in TOKENIZERS:
        raise ValueError(f"model.tiny.tokenizer={tokenizer!r}: expected null (byte-level) or one of "
                         f"{', '.join(name for name in TOKENIZERS if name)}")
    tokenizer = build_byte_tokenizer(TOKENIZERS[tokenizer])
    shape = {"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": intermediate_size,
             "num_hidden_layers": num_layers, "num_attention_heads": num_heads,
             "max_position_embeddings": max_positions}
    special = {"eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id, "bos_token_id": None,
               "tie_word_embeddings": False}
    model_class, config = BUILDERS[family](shape, special)
    import torch

    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = model_class(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def fit_to_texts(model, tokenizer, texts: list[str], steps: int, lr: float = 5e-3):
    """``model`` after ``steps`` full-batch Adam steps of causal-LM loss on ``texts``, seeded (in eval mode): a
    tiny random model whose scores then depend on the context shown (tests and the family matrix)."""
    import torch

    model.train()
    torch.manual_seed(0)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    batch = tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(model.device)
    labels = batch.input_ids.masked_fill(batch.attention_mask == 0, -100)
    for _ in range(steps):
        model(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()

