"""SDPA that keeps grouped-query attention grouped when a mask is given, for the engine's CPU passes.

transformers' ``sdpa`` attention repeats the key/value heads up to the query heads whenever an
attention mask is present (on CUDA a masked GQA call would leave the fast kernels). Every
continuation pass of the engine has a mask (the padded prefix slots), and torch's CPU flash kernel
takes ``enable_gqa=True`` with a mask directly: no repeated copy of the keys and values, about 9 %
less attention time on SmolLM2 (9 query / 3 key-value heads). The numbers are the same: the
repeat only copies. Anything else (no mask, equal head counts, position biases, soft-capping)
goes to transformers' own ``sdpa`` function. :func:`sliding_window` tells the engine whether a model's
attention is windowed (its cached prefixes must then end together).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from transformers import AttentionInterface, AttentionMaskInterface
from transformers.integrations.sdpa_attention import sdpa_attention_forward
from transformers.masking_utils import sdpa_mask

NAME = "delift_sdpa_gqa"


def _sdpa_grouped(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                  is_causal=None, **kwargs):
    plain = (attention_mask is None or query.shape[1] == key.shape[1] or kwargs.get("position_bias") is not None
             or kwargs.get("softcap") is not None or kwargs.get("cache") is not None)
    if plain:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      is_causal=is_causal, **kwargs)
    out = torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=attention_mask,
                                                           dropout_p=dropout, scale=scaling, enable_gqa=True)
    return out.transpose(1, 2).contiguous(), None


def sliding_window(config) -> int | None:
    """The sliding-window width of a model config (Mistral, Gemma-2, Phi-3), or None when no layer slides."""
    text = config.get_text_config() if hasattr(config, "get_text_config") else config
    window = getattr(text, "sliding_window", None)
    layer_types = getattr(text, "layer_types", None)
    if window is None or (layer_types is not None and "sliding_attention" not in layer_types):
        return None
    return int(window)


AttentionInterface.register(NAME, _sdpa_grouped)
AttentionMaskInterface.register(NAME, sdpa_mask)


@contextmanager
def grouped_sdpa(model: torch.nn.Module) -> Iterator[None]:
    """Use the grouped SDPA while the block runs, on a CPU model whose attention is ``sdpa``."""
    config = model.config
    device = next(model.parameters()).device
    if getattr(config, "_attn_implementation", None) != "sdpa" or device.type != "cpu":
        yield
        return
    config._attn_implementation = NAME
    try:
        yield
    finally:
        config._attn_implementation = "sdpa"
