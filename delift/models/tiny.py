"""A tiny random Llama with a byte-level tokenizer (or ``byte_pairs``: one with merges), built in code: the test model."""

from __future__ import annotations

from pathlib import Path

import torch

EOS, PAD = "</s>", "<pad>"
# byte_pairs: frequent English and prompt-template pairs ("Ġ" is a space, "Ċ" a newline in byte-level symbols)
PAIR_MERGES = (("t", "h"), ("h", "e"), ("i", "n"), ("e", "r"), ("a", "n"), ("r", "e"), ("o", "n"), ("e", "s"),
               ("s", "t"), ("Ġ", "t"), ("Ġ", "a"), ("Ġ", "s"), ("#", "#"), ("##", "#"), ("Ċ", "Ċ"), (":", "Ċ"))
TOKENIZERS = {None: (), "byte_pairs": PAIR_MERGES}  # model.tiny.tokenizer -> BPE merges over the byte symbols


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


def build_tiny_llama(folder: Path, seed: int, hidden_size: int = 64, num_layers: int = 2,
                     num_heads: int = 4, intermediate_size: int = 128, max_positions: int = 2048,
                     tokenizer: str | None = None) -> None:
    """Write a seeded random LlamaForCausalLM and its tokenizer (``TOKENIZERS``' name) to ``folder``."""
    from transformers import LlamaConfig, LlamaForCausalLM

    if tokenizer not in TOKENIZERS:
        raise ValueError(f"model.tiny.tokenizer={tokenizer!r}: expected null (byte-level) or one of "
                         f"{', '.join(name for name in TOKENIZERS if name)}")
    tokenizer = build_byte_tokenizer(TOKENIZERS[tokenizer])
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_heads,
        max_position_embeddings=max_positions,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=None,
        tie_word_embeddings=False,
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = LlamaForCausalLM(config)
    finally:
        torch.random.set_rng_state(generator_state)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
