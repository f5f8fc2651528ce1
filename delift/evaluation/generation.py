"""Batched generation from rendered prompts, tokenised exactly as in training.

The prompts given here are the ``PromptTemplate.render`` texts (optionally preceded by in-context
examples). They are tokenised with ``add_special_tokens=False``, the same call that
``tokenize_for_training`` makes for the prompt part, so a fine-tuned model continues from the very
token sequence it was trained to continue.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from tqdm.auto import tqdm

log = logging.getLogger(__name__)


def _input_device(model: Any) -> torch.device:
    """Where the input ids must live: the embedding's device (also right for device_map'd models)."""
    try:
        return model.get_input_embeddings().weight.device
    except (AttributeError, NotImplementedError):
        return next(model.parameters()).device


def _eos_ids(model: Any, tokenizer: Any) -> list[int]:
    """The tokenizer's EOS (what training appends) first, then any extra end ids the model declares."""
    ids = [int(tokenizer.eos_token_id)]
    declared = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for extra in [declared] if isinstance(declared, int) else list(declared or []):
        if int(extra) not in ids:
            ids.append(int(extra))
    return ids


def left_pad(batch: Sequence[Sequence[int]], pad_token_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad token id lists into ``(input_ids, attention_mask)``.

    Decoder-only generation appends new tokens on the right, so every row's real text must end at
    the same column; padding on the left (masked out) achieves that. We pad by hand instead of
    flipping ``tokenizer.padding_side``, so the caller's tokenizer is never mutated.
    """
    width = max(len(ids) for ids in batch)
    input_ids = torch.full((len(batch), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(batch), width), dtype=torch.long)
    for row, ids in enumerate(batch):
        if ids:
            input_ids[row, width - len(ids):] = torch.as_tensor(list(ids), dtype=torch.long)
            attention_mask[row, width - len(ids):] = 1
    return input_ids, attention_mask


def generate(model: Any, tokenizer: Any, prompts: Sequence[str], max_new_tokens: int, batch_size: int = 8,
             do_sample: bool = False, temperature: float = 1.0, top_p: float = 1.0, seed: int = 0,
             max_prompt_length: int | None = None, progress: bool = True) -> list[str]:
    """Generate one completion per prompt; returns the new text only, stripped, in the input order.

    Greedy by default. Every decoding setting is passed explicitly, so the protocol does not depend
    on whatever ``generation_config.json`` a model repository ships (e.g. a sampling default).
    With ``do_sample`` the torch RNG is seeded with ``seed`` inside a forked RNG state: the result is
    reproducible for the same prompts, ``batch_size`` and seed, and the caller's RNG is untouched.
    Prompts are sorted by length (longest first, so memory trouble shows at once) to reduce padding.
    A prompt longer than ``max_prompt_length`` tokens loses tokens from the left, as in training.
    """
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not prompts:
        return []
    if tokenizer.eos_token_id is None:
        raise ValueError("the tokenizer has no EOS token; generation must stop at EOS")
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id

    encoded = [tokenizer(prompt, add_special_tokens=False)["input_ids"] for prompt in prompts]
    for index, ids in enumerate(encoded):
        if not ids:
            raise ValueError(f"prompt {index} is empty after tokenisation; nothing to condition on")
    if max_prompt_length is not None:
        too_long = sum(len(ids) > max_prompt_length for ids in encoded)
        if too_long:
            log.warning("%d of %d prompts were shortened from the left to %d tokens, as in training",
                        too_long, len(encoded), max_prompt_length)
            encoded = [ids[-max_prompt_length:] for ids in encoded]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)

    settings: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "num_beams": 1,
        "repetition_penalty": 1.0,
        "eos_token_id": _eos_ids(model, tokenizer),
        "pad_token_id": int(pad_id),
    }
    if do_sample:
        settings.update(temperature=temperature, top_p=top_p, top_k=0)  # top_k=0: no top-k cut, only top_p

    device = _input_device(model)
    results: list[str] = [""] * len(prompts)
    was_training = model.training
    model.eval()
    rng_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices, enabled=do_sample), torch.inference_mode():
            if do_sample:
                torch.manual_seed(seed)  # seeds the CPU and every CUDA generator
            batches = [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
            for batch in tqdm(batches, desc="generate", unit="batch", disable=not progress):
                input_ids, attention_mask = left_pad([encoded[i] for i in batch], int(pad_id))
                output = model.generate(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                                        **settings)
                new_tokens = output[:, input_ids.shape[1]:].cpu()
                for row, index in enumerate(batch):
                    text = tokenizer.decode(new_tokens[row].tolist(), skip_special_tokens=True)
                    results[index] = text.strip()
    finally:
        model.train(was_training)
    return results
