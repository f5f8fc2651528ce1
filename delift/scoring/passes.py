"""Batched forward passes that score many sequences: per-token log-probabilities, next-token probabilities.

Sequences are sorted by length, right-padded into batches of ``batch_size`` (right padding never
changes what a real token sees in a causal model), run through the decoder body once, and the output
head is applied only at the positions that predict scored tokens; log-softmax in fp32. A prefix
shared by every sequence (a rating prompt) runs once: its key/value cache is repeated over the batch
and each sequence continues from it with position ids starting after the prefix.
"""

from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from delift.kernel.engine import forward_cached
from delift.scoring.layout import ScoringItem


def decoder_and_head(model: Any) -> tuple[Any, Any, float | None]:
    """Body (hidden states), output head and logit soft-cap of a causal LM or a peft model around one."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    body = getattr(base, base.base_model_prefix, None)
    if body is None or body is base:
        raise TypeError(f"{type(base).__name__}: cannot find its decoder body via base_model_prefix")
    return body, base.get_output_embeddings(), getattr(base.config, "final_logit_softcapping", None)


def _log_softmax_rows(head: Any, softcap: float | None, hidden: torch.Tensor) -> torch.Tensor:
    logits = head(hidden).float()
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    return torch.log_softmax(logits, dim=-1)


def _prefix_cache(body: Any, prefix: Sequence[int], device: torch.device):
    from transformers import DynamicCache

    cache = DynamicCache()  # every slot of every layer: a config-built cache keeps a sliding layer's last window only
    forward_cached(body, cache, input_ids=torch.tensor([list(prefix)], device=device))
    return [(layer.keys, layer.values) for layer in cache.layers]


def _batch_forward(body: Any, config: Any, rows: Sequence[Sequence[int]], pad_id: int, prefix_layers,
                   prefix_length: int, device: torch.device) -> torch.Tensor:
    """Hidden states (B, T, H) of right-padded ``rows``, continuing after the shared prefix when given."""
    from transformers import DynamicCache

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), prefix_length + width), dtype=torch.long)
    mask[:, :prefix_length] = 1
    for b, row in enumerate(rows):
        ids[b, :len(row)] = torch.tensor(list(row))
        mask[b, prefix_length:prefix_length + len(row)] = 1
    positions = (torch.arange(width) + prefix_length).expand(len(rows), width)
    inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "position_ids": positions.to(device)}
    if prefix_layers is None:
        return body(**inputs).last_hidden_state
    cache = DynamicCache(ddp_cache_data=[(k.expand(len(rows), -1, -1, -1).contiguous(),
                                          v.expand(len(rows), -1, -1, -1).contiguous()) for k, v in prefix_layers])
    return forward_cached(body, cache, **inputs).last_hidden_state


def _run(model: Any, items: Sequence[ScoringItem], batch_size: int, progress: bool, what: str,
         prefix: Sequence[int], per_batch: Callable[[Any, float | None, torch.Tensor, list[int]], list]) -> list:
    """Call ``per_batch(head, softcap, hidden, batch_indices)`` on length-sorted batches; results in item order."""
    body, head, softcap = decoder_and_head(model)
    device = next(model.parameters()).device
    pad_id = getattr(model.config, "pad_token_id", None) or 0
    order = sorted(range(len(items)), key=lambda i: -(len(items[i].context) + len(items[i].scored)))
    results: list = [None] * len(items)
    bar = tqdm(total=len(items), desc=what, unit="ex", disable=not progress)
    started = time.perf_counter()
    with torch.inference_mode():
        prefix_layers = _prefix_cache(body, prefix, device) if prefix else None
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            rows = [items[i].context + items[i].scored for i in batch]
            hidden = _batch_forward(body, model.config, rows, pad_id, prefix_layers, len(prefix), device)
            for i, value in zip(batch, per_batch(head, softcap, hidden, batch)):
                results[i] = value
            bar.update(len(batch))
    bar.set_postfix_str(f"{len(items) / max(time.perf_counter() - started, 1e-9):.1f} ex/s")
    bar.close()
    return results


def scored_log_probs(model: Any, items: Sequence[ScoringItem], *, prefix: Sequence[int] = (), batch_size: int = 8,
                     progress: bool = False, what: str = "scoring") -> list[np.ndarray]:
    """log p of every scored token of every item (float64 arrays, one per item), in item order."""

    def per_batch(head, softcap, hidden, batch):
        out = []
        for b, i in enumerate(batch):
            item = items[i]
            start = len(item.context)
            if start == 0 and not prefix:
                raise ValueError(f"item {item.id!r}: no context token before its first scored token")
            positions = torch.arange(start - 1, start - 1 + len(item.scored), device=hidden.device)
            if start == 0:  # the prefix's last token predicts the first scored token: not in this batch's hidden
                raise ValueError(f"item {item.id!r}: give it at least one context token after the prefix")
            log_p = _log_softmax_rows(head, softcap, hidden[b, positions])
            targets = torch.tensor(item.scored, device=hidden.device)
            out.append(log_p.gather(-1, targets[:, None]).squeeze(-1).double().cpu().numpy())
        return out

    return _run(model, items, batch_size, progress, what, prefix, per_batch)


def next_token_probs(model: Any, items: Sequence[ScoringItem], token_ids: Sequence[int], *,
                     prefix: Sequence[int] = (), batch_size: int = 8, progress: bool = False,
                     what: str = "rating") -> np.ndarray:
    """(n_items, len(token_ids)) probabilities of ``token_ids`` as the token after each item's context.

    Items are scored on their context alone (``scored`` is ignored), softmax over the whole vocabulary.
    """
    ids = torch.tensor(list(token_ids))
    contexts = [ScoringItem(item.id, item.context, ()) for item in items]
    for item in contexts:
        if not item.context:
            raise ValueError(f"item {item.id!r}: empty context")

    def per_batch(head, softcap, hidden, batch):
        last = torch.tensor([len(contexts[i].context) - 1 for i in batch], device=hidden.device)
        rows = hidden[torch.arange(len(batch), device=hidden.device), last]
        probs = _log_softmax_rows(head, softcap, rows).exp()[:, ids.to(hidden.device)]
        return list(probs.double().cpu().numpy())

    return np.stack(_run(model, contexts, batch_size, progress, what, prefix, per_batch)) if items else \
        np.zeros((0, len(ids)))


def position_weights(n: int) -> np.ndarray:
    """SGPT's position weights over ``n`` tokens: ``w_t = t / sum_{s=1..n} s`` for t = 1..n (later tokens weigh more)."""
    if n < 1:
        raise ValueError("position weights need at least one token")
    steps = np.arange(1, n + 1, dtype=np.float64)
    return steps / steps.sum()


def weighted_mean_states(model: Any, items: Sequence[ScoringItem], *, batch_size: int = 8, progress: bool = False,
                         what: str = "hidden states") -> list[np.ndarray]:
    """Position-weighted mean of the final hidden states over every token of ``context + scored`` (float64, one
    vector per item, item order). The final hidden state is the decoder body's output (after its last norm),
    what ``output_hidden_states[-1]`` returns; no prefix, so each item is pooled over its own tokens only."""
    for item in items:
        if not item.context and not item.scored:
            raise ValueError(f"item {item.id!r}: no tokens to pool")

    def per_batch(head, softcap, hidden, batch):
        out = []
        for b, i in enumerate(batch):
            n = len(items[i].context) + len(items[i].scored)
            weights = torch.tensor(position_weights(n), dtype=torch.float64, device=hidden.device)
            out.append((hidden[b, :n].double() * weights[:, None]).sum(0).cpu().numpy())
        return out

    return _run(model, items, batch_size, progress, what, (), per_batch)


def mean_nll(log_probs: Sequence[np.ndarray]) -> np.ndarray:
    """Masked mean negative log-likelihood per item: ``-(1/|y|) sum_t log p(y_t | ...)``."""
    return np.array([-float(lp.mean()) if len(lp) else math.nan for lp in log_probs])
