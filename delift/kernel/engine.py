"""Fast scoring of one kernel block: each candidate's prefix runs once, targets continue from its cache.

One-shot sequence of target i with candidate j (``delift.kernel.sequences``):
    [shown_j] [query_i] EOS [response_i] EOS
The prefix ``shown_j`` is the same for every target, so the engine

1. sorts the candidates by prefix length and cuts them into groups (``schedule.prefix_groups``: the
   cheapest contiguous split under a small cost model of passes versus padded attention);
2. runs the prefixes of a group once (right-padded, sorted by length: causal attention means a
   real token never sees the padding after it) and keeps their key/value cache (for a sliding-window
   model, moved to end together, so that cache slot distances are token distances);
3. for each target i, feeds the continuation ``[query_i] EOS [response_i] EOS`` for the group's
   candidates at once as one batch on top of their caches. Every row of such a batch holds the
   *same* continuation, so the continuation tokens need no padding at all; only the cached
   prefixes differ in length, and their padding is masked out of attention (it costs attention
   work over a few keys, never a linear layer). Position ids start at each candidate's own
   prefix length, so RoPE positions equal those of the full sequence;
4. projects with the output head only at the positions that predict the scored tokens
   (response + final EOS), log-softmax in fp32, then reduces the tokens of each sequence with the
   setup's ``aggregate``: d = sqrt(mean_t (1 - p_t)^2) (``distance``, DELIFT) or sum_t log p_t
   (``logprob_sum``, from the fp32 log-softmax values themselves), in fp64.

Pairs whose shown example would be truncated (positions shift), and zero-shot sequences, go
through the per-sequence path ``score_sequences`` instead, batched by sorted length.
Compute runs in the model's dtype; probabilities / log-probabilities in fp32, their reduction in fp64.
On a CPU, passes run side by side on ``workers`` threads, freed buffers are reused
(``host_memory``) and grouped-query attention stays grouped (``attention``).
"""

from __future__ import annotations

import inspect
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from transformers import DynamicCache

from delift.kernel.attention import grouped_sdpa, sliding_window
from delift.kernel.host_memory import heap_reuse
from delift.kernel.probabilities import decoder_and_head, score_sequences, token_probabilities
from delift.kernel.schedule import (
    ENGINE_FIELDS,
    EngineSettings,
    length_batches,
    one_shot_plan,
    prefix_chunks,
    resolve_workers,
)
from delift.kernel.sequences import ScoredSequence, build_sequence
from delift.kernel.settings import DEFAULT_AGGREGATE, check_aggregate
from delift.kernel.tokens import TokenizedExample


@dataclass
class BlockStats:
    """Counts of one block: pairs scored, tokens run through the model, truncations."""

    pairs: int = 0
    tokens: int = 0
    shown_truncated: int = 0
    shown_dropped: int = 0
    query_truncated: int = 0
    per_sequence: int = 0  # pairs scored by the per-sequence (no prefix reuse) path

    def add(self, other: BlockStats) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))

    def as_dict(self) -> dict[str, int]:
        return {name: int(getattr(self, name)) for name in self.__dataclass_fields__}


@dataclass
class _Model:
    model: torch.nn.Module
    eos_id: int
    pad_id: int


@dataclass
class ScoringSetup(EngineSettings, _Model):
    """What every block needs: the model and its special ids (first), then the engine's settings
    (:class:`~delift.kernel.schedule.EngineSettings`, declared there once), a progress callback and the aggregate.
    Built from a kernel config by :meth:`for_config`."""

    on_pairs: Callable[[int], None] | None = field(default=None, repr=False)  # progress callback
    aggregate: str = DEFAULT_AGGREGATE  # distance | logprob_sum: what one sequence's scored tokens reduce to

    @classmethod
    def for_config(cls, model: torch.nn.Module, eos_id: int, pad_id: int, config, aggregate: str = DEFAULT_AGGREGATE,
                   on_pairs: Callable[[int], None] | None = None) -> ScoringSetup:
        """The setup of ``config`` (a kernel config; its ``workers`` resolved here)."""
        return cls(model, eos_id, pad_id, **{name: getattr(config, name) for name in ENGINE_FIELDS},
                   workers=config.workers, on_pairs=on_pairs, aggregate=aggregate)

    def __post_init__(self) -> None:
        check_aggregate(self.aggregate)
        if self.workers < 0:
            raise ValueError(f"kernel.workers={self.workers}: must be 0 (auto) or more")
        self.workers = resolve_workers(self.workers, self.device.type == "cpu", torch.get_num_threads())

    @contextmanager
    def pool(self) -> Iterator[Callable]:
        """A ``map`` that runs passes on ``workers`` threads at once (results in submission order).

        On a CPU, several single-threaded passes side by side use the cores better than one pass
        split across them: attention, norms and activations on small tensors scale poorly with
        intra-op threads, matmuls scale either way. The torch thread count is restored afterwards.
        On a CPU, freed buffers are also kept for reuse meanwhile (``host_memory.heap_reuse``).
        """
        if self.device.type != "cpu":
            yield map
            return
        with heap_reuse(), self._threads() as run:
            yield run

    @contextmanager
    def _threads(self) -> Iterator[Callable]:
        if self.workers <= 1:
            yield map
            return
        threads = torch.get_num_threads()
        torch.set_num_threads(max(1, threads // self.workers))
        executor = ThreadPoolExecutor(self.workers, thread_name_prefix="delift-kernel")
        try:
            yield executor.map
        finally:  # after an error (or Ctrl-C) the passes not yet started are dropped, not run
            executor.shutdown(wait=True, cancel_futures=True)
            torch.set_num_threads(threads)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def left_aligned(self) -> bool:
        """True for a sliding-window model: its cached prefixes end together (``_prefix_cache``)."""
        return sliding_window(self.model.config) is not None


@cache
def _cache_keyword(body_type: type) -> str:
    """The name the decoder body's forward gives its key/value cache argument.

    Recent transformers releases call it ``cache`` (``past_key_values`` still works there but warns
    that it goes away in 5.40); older ones only know ``past_key_values``. Read from the signature,
    once per class, so the engine runs on both.
    """
    parameters = inspect.signature(body_type.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def forward_cached(body: torch.nn.Module, cache: DynamicCache, **inputs):
    """``body(**inputs)`` on top of ``cache``, which it extends in place."""
    return body(**inputs, **{_cache_keyword(type(body)): cache}, use_cache=True)


def _distance(p: torch.Tensor) -> torch.Tensor:
    """d = sqrt(mean_t (1 - p_t)^2) over the last axis, in fp64."""
    return torch.sqrt(((1.0 - p.double()) ** 2).mean(dim=-1))


def _logprob_sum(log_p: torch.Tensor) -> torch.Tensor:
    """sum_t log p_t over the last axis, in fp64."""
    return log_p.double().sum(dim=-1)


def score_per_sequence(setup: ScoringSetup, count: int, build: Callable[[int], ScoredSequence],
                        stats: BlockStats, pairs: bool, run: Callable = map,
                        on_batch: Callable[[int], None] | None = None) -> np.ndarray:
    """Values (``setup.aggregate``) of ``count`` sequences ``build(k)``, batches of ``batch_size`` sorted by length.

    Sequences are built batch by batch (only their lengths are kept for all), so memory holds the
    token ids of the batches in flight; truncations and tokens are added to ``stats``.
    """
    out = np.empty(count)
    batches = length_batches([len(build(k).input_ids) for k in range(count)], setup.batch_size)

    def score(batch: list[int]) -> tuple[list[int], list[ScoredSequence], np.ndarray]:
        seqs = [build(k) for k in batch]
        return batch, seqs, score_sequences(setup.model, seqs, setup.pad_id, setup.aggregate)

    for batch, seqs, values in run(score, batches):
        stats.shown_truncated += sum(s.shown_cut > 0 for s in seqs)
        stats.shown_dropped += sum(s.shown_dropped for s in seqs)
        stats.query_truncated += sum(s.query_cut > 0 for s in seqs)
        stats.per_sequence += len(seqs)
        stats.tokens += sum(len(s.input_ids) for s in seqs)
        out[batch] = values
        if pairs and setup.on_pairs is not None:
            setup.on_pairs(len(batch))
        if on_batch is not None:  # progress of non-pair sequences (zero-shot)
            on_batch(len(batch))
    return out


def score_zero_shot(setup: ScoringSetup, targets: Sequence[TokenizedExample],
                    on_batch: Callable[[int], None] | None = None) -> tuple[np.ndarray, BlockStats]:
    """d_zero (or l_zero) of each target: ``[query] EOS [response] EOS`` through the per-sequence path
    (``on_batch(count)`` after each batch, for progress)."""
    stats = BlockStats()
    with grouped_sdpa(setup.model), setup.pool() as run:  # passes finish before attention is reset
        d = score_per_sequence(setup, len(targets), lambda k: build_sequence(
            [], targets[k].query, targets[k].response, setup.eos_id, setup.eos_after_prompt, setup.max_length,
            targets[k].id),
            stats, pairs=False, run=run, on_batch=on_batch)
    return d, stats


def _continuation(setup: ScoringSetup, target: TokenizedExample) -> tuple[list[int], int]:
    """``[query] EOS [response] EOS`` and the index of its first scored token."""
    sep = [setup.eos_id] if setup.eos_after_prompt else []
    ids = target.query + sep + target.response + [setup.eos_id]
    return ids, len(target.query) + len(sep)


def _prefix_cache(setup: ScoringSetup, prefixes: list[list[int]],
                  run: Callable = map) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Per layer (keys, values) of shape (G, kv_heads, P_max, head_dim) of prefixes sorted by length.

    Prefixes of similar length run together, right-padded (:func:`~delift.kernel.schedule.prefix_chunks`);
    the caches are then zero-padded to P_max and stacked (left-padded for a sliding-window model: transformers
    windows cache slot distances, which are token distances only when every prefix ends at P_max). Padded slots
    are masked out by the caller. Every layer keeps every slot (a config-built cache keeps a sliding layer's
    last window only: padding).
    """
    body, _ = decoder_and_head(setup.model)
    width = max(len(p) for p in prefixes)
    chunks = [[prefixes[k] for k in chunk] for chunk in prefix_chunks([len(p) for p in prefixes], setup.workers)]

    @torch.inference_mode()
    def run_chunk(chunk: list[list[int]]) -> list[tuple[torch.Tensor, torch.Tensor]]:
        longest = max(len(p) for p in chunk)
        ids = torch.full((len(chunk), longest), setup.pad_id, dtype=torch.long)
        for g, p in enumerate(chunk):
            ids[g, :len(p)] = torch.tensor(p)
        cache = DynamicCache()
        forward_cached(body, cache, input_ids=ids.to(setup.device))
        left = setup.left_aligned
        return [(_widen(layer.keys, chunk, width, left), _widen(layer.values, chunk, width, left))
                for layer in cache.layers]

    parts = list(run(run_chunk, chunks))
    if len(parts) == 1:
        return parts[0]
    return [(torch.cat([part[n][0] for part in parts]), torch.cat([part[n][1] for part in parts]))
            for n in range(len(parts[0]))]


def _widen(states: torch.Tensor, chunk: list[list[int]], width: int, left: bool) -> torch.Tensor:
    """(G, heads, width, dim) from the right-padded ``states`` of ``chunk``: zero-padded on the right, or
    (``left``) with row g's len(chunk[g]) real slots moved to the end."""
    if not left:
        return torch.nn.functional.pad(states, (0, 0, 0, width - states.shape[2]))
    out = states.new_zeros((*states.shape[:2], width, states.shape[3]))
    for g, prefix in enumerate(chunk):
        out[g, :, width - len(prefix):] = states[g, :, :len(prefix)]
    return out


@torch.inference_mode()
def score_one_shot(setup: ScoringSetup, targets: Sequence[TokenizedExample],
                   candidates: Sequence[TokenizedExample],
                   wanted: np.ndarray | None = None) -> tuple[np.ndarray, BlockStats]:
    """d_one (or l_one, ``setup.aggregate``) (len(targets) x len(candidates)) of every pair of a block, or
    only of the pairs where the boolean mask ``wanted`` is True (the others stay NaN): each candidate's
    prefix is still run once, for all the targets that want it."""
    with grouped_sdpa(setup.model), setup.pool() as run:  # passes finish before attention is reset
        return _score_one_shot(setup, targets, candidates, run, wanted)


def _score_one_shot(setup: ScoringSetup, targets: Sequence[TokenizedExample],
                    candidates: Sequence[TokenizedExample], run: Callable,
                    wanted: np.ndarray | None = None) -> tuple[np.ndarray, BlockStats]:
    body, head = decoder_and_head(setup.model)
    softcap = getattr(setup.model.config, "final_logit_softcapping", None)
    device = setup.device
    shown = [c.shown for c in candidates]
    d = np.full((len(targets), len(candidates)), np.nan)
    if wanted is None:
        wanted = np.ones((len(targets), len(candidates)), dtype=bool)
    wanted = np.asarray(wanted, dtype=bool)
    if wanted.shape != d.shape:
        raise ValueError(f"wanted has shape {wanted.shape}, expected {d.shape} (targets x candidates)")
    stats = BlockStats(pairs=int(wanted.sum()))
    continuations = [_continuation(setup, t) for t in targets]
    plan = one_shot_plan(setup, [len(s) for s in shown], [len(ids) for ids, _ in continuations], wanted)

    # Pairs that would be truncated lose the shared prefix: score them one sequence at a time.
    cut = plan.cut
    if cut:
        values = score_per_sequence(setup, len(cut), lambda k: build_sequence(
            shown[cut[k][1]], targets[cut[k][0]].query, targets[cut[k][0]].response, setup.eos_id,
            setup.eos_after_prompt, setup.max_length, targets[cut[k][0]].id), stats, pairs=True, run=run)
        for (i, j), value in zip(cut, values):
            d[i, j] = value

    for scheduled in plan.groups:
        group, passes = scheduled.columns, scheduled.passes  # passes: (target, rows of the group)
        layers = _prefix_cache(setup, [shown[j] for j in group], run)
        stats.tokens += sum(len(shown[j]) for j in group)
        lengths = torch.tensor([len(shown[j]) for j in group], device=device)
        width = layers[0][0].shape[2]
        slots = torch.arange(width, device=device)[None, :]  # the real prefix slots of ``_prefix_cache``:
        prefix_valid = slots >= width - lengths[:, None] if setup.left_aligned else slots < lengths[:, None]
        score = partial(_pass_values, setup.aggregate, body, head, softcap, layers, lengths, prefix_valid,
                        continuations, device)
        for (i, chosen), values in zip(passes, run(score, passes)):
            d[i, [group[g] for g in chosen]] = values
            stats.tokens += len(continuations[i][0]) * len(chosen)
            if setup.on_pairs is not None:
                setup.on_pairs(len(chosen))
        del layers, score  # free this group's cache before the next group's is built
    return d, stats


def _pass_values(aggregate, body, head, softcap, layers, lengths, prefix_valid, continuations, device,
                 task: tuple[int, list[int]]) -> np.ndarray:
    """d (or sum log p) of one continuation pass: target ``task[0]`` after the group's prefixes ``task[1]``."""
    ids, start = continuations[task[0]]
    log = aggregate == "logprob_sum"
    values = _continuation_probabilities(body, head, softcap, layers, task[1], lengths, prefix_valid, ids, start,
                                         device, log=log)
    return (_logprob_sum(values) if log else _distance(values)).cpu().numpy()


@torch.inference_mode()
def _continuation_probabilities(body, head, softcap, layers, chosen: list[int], lengths: torch.Tensor,
                                prefix_valid: torch.Tensor, ids: list[int], start: int,
                                device: torch.device, log: bool = False) -> torch.Tensor:
    """p_t (B, T) of the scored tokens of one continuation after the cached prefixes ``chosen``
    (``log=True``: log p_t, straight from the fp32 log-softmax).

    When every prefix of the group is chosen, its cache is used as it is (the cache's update
    concatenates into new tensors, so the group's cache stays intact for the next target).
    """
    batch, length = len(chosen), len(ids)
    if batch == len(lengths):
        cache = DynamicCache(ddp_cache_data=list(layers))
        valid, starts = prefix_valid, lengths
    else:
        index = torch.tensor(chosen, device=device)
        cache = DynamicCache(ddp_cache_data=[(k.index_select(0, index), v.index_select(0, index)) for k, v in layers])
        valid, starts = prefix_valid.index_select(0, index), lengths.index_select(0, index)
    tokens = torch.tensor(ids, device=device)
    mask = torch.cat([valid, torch.ones((batch, length), dtype=torch.bool, device=device)], dim=1)
    positions = starts[:, None] + torch.arange(length, device=device)[None, :]
    hidden = forward_cached(body, cache, input_ids=tokens.expand(batch, length), attention_mask=mask.long(),
                             position_ids=positions).last_hidden_state
    scored = hidden[:, start - 1:length - 1].reshape(-1, hidden.shape[-1])  # position t-1 predicts token t
    targets = tokens[start:].repeat(batch)
    return token_probabilities(head, softcap, scored, targets, log=log).reshape(batch, -1)
