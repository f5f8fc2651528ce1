"""Fast scoring of one kernel block: each candidate's prefix runs once, targets continue from its cache.

One-shot sequence of target i with candidate j (``delift.kernel.sequences``):
    [shown_j] [query_i] EOS [response_i] EOS
The prefix ``shown_j`` is the same for every target, so the engine

1. runs the prefixes of a group of candidates once (right-padded, sorted by length: causal
   attention means a real token never sees the padding after it) and keeps their key/value cache;
2. for each target i, feeds the continuation ``[query_i] EOS [response_i] EOS`` for many
   candidates at once as one batch on top of their caches. Every row of such a batch holds the
   *same* continuation, so the continuation tokens need no padding at all; only the cached
   prefixes differ in length, and their padding is masked out of attention (it costs attention
   work over a few keys, never a linear layer). Position ids start at each candidate's own
   prefix length, so RoPE positions equal those of the full sequence;
3. projects with the output head only at the positions that predict the scored tokens
   (response + final EOS), log-softmax in fp32, then d = sqrt(mean_t (1 - p_t)^2) in fp64.

Pairs whose shown example would be truncated (positions shift), and zero-shot sequences, go
through the per-sequence path ``score_sequences`` instead, batched by sorted length.
Compute runs in the model's dtype; probabilities and distances are accumulated in fp32/fp64.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from delift.kernel.sequences import ScoredSequence, build_sequence
from delift.kernel.utility import TokenizedExample, _decoder_and_head, score_sequences


@dataclass
class BlockStats:
    """Counts of one block: pairs scored, tokens run through the model, truncations."""

    pairs: int = 0
    tokens: int = 0
    shown_truncated: int = 0
    shown_dropped: int = 0
    query_truncated: int = 0
    per_sequence: int = 0  # pairs scored by the per-sequence (no prefix reuse) path

    def add(self, other: "BlockStats") -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in self.__dataclass_fields__}


@dataclass
class ScoringSetup:
    """What every block needs: the model, special ids and the sequence settings."""

    model: torch.nn.Module
    eos_id: int
    pad_id: int
    eos_after_prompt: bool
    max_length: int
    batch_size: int = 16  # sequences per pass on the per-sequence path
    tokens_per_batch: int = 8192  # token budget of one prefix pass / one continuation pass
    on_pairs: Callable[[int], None] | None = field(default=None, repr=False)  # progress callback

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device


def _probabilities(head, softcap, hidden: torch.Tensor, targets: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """p of ``targets`` (…, T) from ``hidden`` (…, T, H); logits and softmax in fp32, ``chunk``
    positions at a time (fp32 logits of 8192 positions x a 49k vocabulary would take 1.6 GB).

    In bf16 the logits come out rounded to bf16 (about 0.1 at |logit| ~ 20); the logit of the target
    token itself is recomputed as an fp32 dot product, which removes most of that error from p.
    """
    flat_hidden, flat_targets = hidden.reshape(-1, hidden.shape[-1]), targets.reshape(-1)
    out = torch.empty(flat_targets.shape, dtype=torch.float32, device=hidden.device)
    for start in range(0, len(flat_targets), chunk):
        h, t = flat_hidden[start:start + chunk], flat_targets[start:start + chunk]
        logits = head(h).float()
        if isinstance(head, torch.nn.Linear) and h.dtype != torch.float32:
            exact = (h.float() * head.weight[t].float()).sum(-1)
            if head.bias is not None:
                exact = exact + head.bias[t].float()
            logits.scatter_(-1, t[:, None], exact[:, None])
        if softcap:
            logits = torch.tanh(logits / softcap) * softcap
        out[start:start + chunk] = torch.log_softmax(logits, dim=-1).gather(-1, t[:, None]).squeeze(-1).exp()
    return out.reshape(targets.shape)


def _distance(p: torch.Tensor) -> torch.Tensor:
    """d = sqrt(mean_t (1 - p_t)^2) over the last axis, in fp64."""
    return torch.sqrt(((1.0 - p.double()) ** 2).mean(dim=-1))


def _score_per_sequence(setup: ScoringSetup, count: int, build: Callable[[int], ScoredSequence],
                        stats: BlockStats, pairs: bool) -> np.ndarray:
    """Distances of ``count`` sequences ``build(k)``, batches of ``batch_size`` sorted by length.

    Sequences are built batch by batch (only their lengths are kept for all), so memory holds one
    batch of token ids; truncations and tokens are added to ``stats``.
    """
    out = np.empty(count)
    lengths = [len(build(k).input_ids) for k in range(count)]
    order = sorted(range(count), key=lengths.__getitem__)
    for start in range(0, count, setup.batch_size):
        batch = order[start:start + setup.batch_size]
        seqs = [build(k) for k in batch]
        stats.shown_truncated += sum(s.shown_cut > 0 for s in seqs)
        stats.shown_dropped += sum(s.shown_dropped for s in seqs)
        stats.query_truncated += sum(s.query_cut > 0 for s in seqs)
        stats.per_sequence += len(seqs)
        stats.tokens += sum(len(s.input_ids) for s in seqs)
        out[batch] = score_sequences(setup.model, seqs, setup.pad_id)
        if pairs and setup.on_pairs is not None:
            setup.on_pairs(len(batch))
    return out


def score_zero_shot(setup: ScoringSetup, targets: Sequence[TokenizedExample]) -> tuple[np.ndarray, BlockStats]:
    """d_zero of each target: ``[query] EOS [response] EOS`` through the per-sequence path."""
    stats = BlockStats()
    d = _score_per_sequence(setup, len(targets), lambda k: build_sequence(
        [], targets[k].query, targets[k].response, setup.eos_id, setup.eos_after_prompt, setup.max_length),
        stats, pairs=False)
    return d, stats


def _continuation(setup: ScoringSetup, target: TokenizedExample) -> tuple[list[int], int]:
    """``[query] EOS [response] EOS`` and the index of its first scored token."""
    sep = [setup.eos_id] if setup.eos_after_prompt else []
    ids = target.query + sep + target.response + [setup.eos_id]
    return ids, len(target.query) + len(sep)


def _fits(setup: ScoringSetup, shown: list[int], target: TokenizedExample) -> bool:
    """True when the whole one-shot sequence fits untruncated, so the full-prefix cache applies."""
    length = len(shown) + len(target.query) + int(setup.eos_after_prompt) + len(target.response) + 1
    return bool(shown) and length <= setup.max_length


def _prefix_groups(setup: ScoringSetup, columns: list[int], shown: Sequence[list[int]]) -> list[list[int]]:
    """Columns sorted by prefix length, cut into groups whose padded prefixes fit the token budget."""
    groups: list[list[int]] = []
    for j in sorted(columns, key=lambda c: len(shown[c])):
        if groups and (len(groups[-1]) + 1) * len(shown[j]) <= setup.tokens_per_batch:
            groups[-1].append(j)
        else:
            groups.append([j])
    return groups


@torch.inference_mode()
def _prefix_cache(setup: ScoringSetup, prefixes: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of shape (G, kv_heads, P_max, head_dim) of prefixes sorted by length.

    Prefixes of similar length run together, right-padded (a new pass starts when the padding would
    exceed a quarter of the tokens); the caches are then zero-padded to P_max and stacked. Padded
    key slots are masked out by the caller.
    """
    body, _ = _decoder_and_head(setup.model)
    width = max(len(p) for p in prefixes)
    chunks: list[list[list[int]]] = []
    for prefix in prefixes:
        chunk = chunks[-1] if chunks else None
        if chunk and 4 * len(prefix) * (len(chunk) + 1) <= 5 * sum(map(len, chunk + [prefix])):
            chunk.append(prefix)
        else:
            chunks.append([prefix])
    parts = []
    for chunk in chunks:
        longest = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), longest), setup.pad_id, dtype=torch.long)
        for g, p in enumerate(chunk):
            ids[g, :len(p)] = torch.tensor(p)
        cache = DynamicCache(config=setup.model.config)
        body(input_ids=ids.to(setup.device), past_key_values=cache, use_cache=True)
        parts.append([(torch.nn.functional.pad(layer.keys, (0, 0, 0, width - longest)),
                       torch.nn.functional.pad(layer.values, (0, 0, 0, width - longest))) for layer in cache.layers])
    if len(parts) == 1:
        return parts[0]
    return [(torch.cat([part[n][0] for part in parts]), torch.cat([part[n][1] for part in parts]))
            for n in range(len(parts[0]))]


@torch.inference_mode()
def score_one_shot(setup: ScoringSetup, targets: Sequence[TokenizedExample],
                   candidates: Sequence[TokenizedExample]) -> tuple[np.ndarray, BlockStats]:
    """d_one (len(targets) x len(candidates)) of every (target, candidate) pair of a block."""
    body, head = _decoder_and_head(setup.model)
    softcap = getattr(setup.model.config, "final_logit_softcapping", None)
    device = setup.device
    shown = [c.shown for c in candidates]
    d = np.full((len(targets), len(candidates)), np.nan)
    stats = BlockStats(pairs=len(targets) * len(candidates))

    # Pairs that would be truncated lose the shared prefix: score them one sequence at a time.
    cut = [(i, j) for i, t in enumerate(targets) for j in range(len(candidates)) if not _fits(setup, shown[j], t)]
    if cut:
        values = _score_per_sequence(setup, len(cut), lambda k: build_sequence(
            shown[cut[k][1]], targets[cut[k][0]].query, targets[cut[k][0]].response, setup.eos_id,
            setup.eos_after_prompt, setup.max_length), stats, pairs=True)
        for (i, j), value in zip(cut, values):
            d[i, j] = value

    continuations = [_continuation(setup, t) for t in targets]
    columns = [j for j in range(len(candidates)) if any(_fits(setup, shown[j], t) for t in targets)]
    for group in _prefix_groups(setup, columns, shown):
        layers = _prefix_cache(setup, [shown[j] for j in group])
        stats.tokens += sum(len(shown[j]) for j in group)
        lengths = torch.tensor([len(shown[j]) for j in group], device=device)
        width = layers[0][0].shape[2]
        prefix_valid = torch.arange(width, device=device)[None, :] < lengths[:, None]  # (G, P_max)
        for i, target in enumerate(targets):
            rows = [g for g, j in enumerate(group) if _fits(setup, shown[j], target)]
            ids, start = continuations[i]
            step = max(1, setup.tokens_per_batch // len(ids))
            for first in range(0, len(rows), step):
                chosen = torch.tensor(rows[first:first + step], device=device)
                p = _continuation_probabilities(body, head, softcap, layers, chosen, lengths, prefix_valid,
                                                ids, start, device)
                d[i, [group[g] for g in chosen.tolist()]] = _distance(p).cpu().numpy()
                stats.tokens += len(ids) * len(chosen)
                if setup.on_pairs is not None:
                    setup.on_pairs(len(chosen))
        del layers
    return d, stats


def _continuation_probabilities(body, head, softcap, layers, chosen: torch.Tensor, lengths: torch.Tensor,
                                prefix_valid: torch.Tensor, ids: list[int], start: int,
                                device: torch.device) -> torch.Tensor:
    """p_t (B, T) of the scored tokens of one continuation after the cached prefixes ``chosen``."""
    batch, length = len(chosen), len(ids)
    cache = DynamicCache(ddp_cache_data=[(k.index_select(0, chosen), v.index_select(0, chosen)) for k, v in layers])
    tokens = torch.tensor(ids, device=device)
    mask = torch.cat([prefix_valid.index_select(0, chosen),
                      torch.ones((batch, length), dtype=torch.bool, device=device)], dim=1)
    positions = lengths.index_select(0, chosen)[:, None] + torch.arange(length, device=device)[None, :]
    hidden = body(input_ids=tokens.expand(batch, length), attention_mask=mask.long(), position_ids=positions,
                  past_key_values=cache, use_cache=True).last_hidden_state
    scored = hidden[:, start - 1:length - 1]  # position t-1 predicts token t
    return _probabilities(head, softcap, scored, tokens[start:].expand(batch, -1))
