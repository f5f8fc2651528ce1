"""What the kernel engine runs for one block, from token counts alone: no model, no torch.

The engine (:mod:`delift.kernel.engine`) executes this schedule and the cost plan (:mod:`delift.plan`)
counts it, so both follow one piece of code:

- the per-sequence path (zero-shot sequences, pairs whose shown example would be truncated): sequences
  sorted by length, ``batch_size`` per pass (:func:`length_batches`);
- the prefix path: the candidates whose prefix some target of the block uses untruncated, sorted by
  prefix length and cut into groups (:func:`prefix_groups`); each group's prefixes run once, in chunks
  of similar length (:func:`prefix_chunks`); then each target's continuation runs on top of the group's
  caches, at most ``tokens_per_batch // continuation length`` rows a pass (:func:`one_shot_plan`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from delift.kernel.settings import BaseKernelConfig

# Cost model of one continuation pass, in units of one token through the linear layers (measured on
# a 2-core AVX512-BF16 CPU with SmolLM2-135M; the grouping is not sensitive to their exact values):
CALL_COST = 64.0  # fixed cost of one forward call: per-op overhead plus the matmuls' small-batch loss
KEY_COST = 0.002  # one (query, key) attention score, padded prefix slots included (SDPA does them all)


@dataclass
class EngineSettings:
    """The kernel settings the engine and the cost plan read, declared once: the engine's
    :class:`~delift.kernel.engine.ScoringSetup` is one (plus the model), the plan's ``Schedule`` is this class.
    Defaults are the kernel config's (:class:`~delift.kernel.settings.BaseKernelConfig`); :meth:`of` copies them
    from a config, ``workers`` as resolved (:func:`resolve_workers`)."""

    eos_after_prompt: bool = BaseKernelConfig.eos_after_prompt
    max_length: int = BaseKernelConfig.max_length
    batch_size: int = BaseKernelConfig.batch_size  # sequences per pass on the per-sequence path
    tokens_per_batch: int = BaseKernelConfig.tokens_per_batch  # token budget of one prefix / continuation pass
    workers: int = BaseKernelConfig.workers  # CPU: passes run at once, each on (threads // workers) threads; 0 = auto

    @classmethod
    def of(cls, config: BaseKernelConfig, workers: int) -> EngineSettings:
        """The settings of ``config`` with the engine's resolved ``workers`` (CPU auto = min(torch threads, 4); GPU 1)."""
        return EngineSettings(**{name: getattr(config, name) for name in ENGINE_FIELDS}, workers=workers)


ENGINE_FIELDS = ("eos_after_prompt", "max_length", "batch_size", "tokens_per_batch")  # read from the kernel config


def resolve_workers(requested: int, on_cpu: bool, threads: int) -> int:
    """``kernel.workers`` as the engine runs it: 1 pass at a time off the CPU; on it the setting, or (0 = auto)
    one single-threaded pass per torch thread, at most 4 (memory per pass)."""
    if not on_cpu:
        return 1
    return requested or min(threads, 4)


def continuation_length(settings: EngineSettings, query: int, response: int) -> int:
    """Tokens of ``[query] EOS [response] EOS`` (the first EOS only with ``eos_after_prompt``)."""
    return query + int(settings.eos_after_prompt) + response + 1


def sequence_length(settings: EngineSettings, shown: int, continuation: int) -> int:
    """Tokens of one sequence after :func:`delift.kernel.sequences.build_sequence` truncates it (the shown
    example, then the query, lose tokens; the response never does)."""
    return min(shown + continuation, settings.max_length)


def fits(settings: EngineSettings, shown: np.ndarray, continuations: np.ndarray) -> np.ndarray:
    """(targets x candidates) True where the whole one-shot sequence fits untruncated, so the prefix cache applies."""
    shown, continuations = np.asarray(shown), np.asarray(continuations)
    return (shown[None, :] > 0) & (shown[None, :] + continuations[:, None] <= settings.max_length)


def length_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Indices sorted by length (stable), ``batch_size`` a batch: the per-sequence path's passes."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[start:start + batch_size] for start in range(0, len(order), batch_size)]


def prefix_groups(settings: EngineSettings, columns: list[int], shown: Sequence[int],
                  widths: Sequence[int]) -> list[list[int]]:
    """Columns sorted by prefix length ``shown[c]``, cut into the contiguous groups of least modelled cost.

    Every target runs once per group, with one row per candidate of the group; each row's attention
    covers the group's longest prefix, padding included. So one big group pays for padding in
    attention (a 241-token prefix beside 26-token ones), many small groups pay per call; an exact
    dynamic programme over the sorted lengths picks the cut points. ``widths`` are the targets'
    continuation lengths; a group's padded prefixes must fit ``tokens_per_batch``.
    """
    order = sorted(columns, key=lambda c: shown[c])
    if not order:
        return []
    budget = settings.tokens_per_batch
    sum_w, sum_w2 = float(sum(widths)), float(sum(w * w for w in widths))
    mean_w = sum_w / max(len(widths), 1)

    def cost(size: int, longest: int) -> float:
        calls = len(widths) * -(-int(size * mean_w) // budget)
        return calls * CALL_COST + size * (sum_w + KEY_COST * (longest * sum_w + sum_w2))

    best, cut = [0.0] + [float("inf")] * len(order), [0] * (len(order) + 1)
    for end in range(1, len(order) + 1):  # best[end]: cheapest grouping of order[:end]
        longest = shown[order[end - 1]]
        for begin in range(end - 1, -1, -1):
            if (end - begin) * longest > budget and begin < end - 1:
                break
            total = best[begin] + cost(end - begin, longest)
            if total < best[end]:
                best[end], cut[end] = total, begin
    groups, end = [], len(order)
    while end:
        groups.append(order[cut[end]:end])
        end = cut[end]
    return groups[::-1]


def prefix_chunks(lengths: Sequence[int], workers: int) -> list[list[int]]:
    """Indices of a group's prefixes (sorted by length) cut into the passes that build their caches.

    A new pass starts when the padding would exceed a quarter of the tokens, or to give every worker a pass.
    """
    most = -(-len(lengths) // max(1, workers))
    chunks: list[list[int]] = []
    for k, length in enumerate(lengths):
        chunk = chunks[-1] if chunks else None
        if chunk and len(chunk) < most and 4 * length * (len(chunk) + 1) <= 5 * (sum(lengths[c] for c in chunk) + length):
            chunk.append(k)
        else:
            chunks.append([k])
    return chunks


@dataclass
class GroupPlan:
    """One prefix group: its candidate columns (sorted by prefix length) and its continuation passes,
    each (target, positions in ``columns``)."""

    columns: list[int]
    passes: list[tuple[int, list[int]]]


@dataclass
class OneShotPlan:
    """A block's one-shot work: pairs on the per-sequence path (row-major), then the prefix groups."""

    cut: list[tuple[int, int]]
    groups: list[GroupPlan]


def one_shot_plan(settings: EngineSettings, shown: Sequence[int], continuations: Sequence[int],
                  wanted: np.ndarray) -> OneShotPlan:
    """The schedule of one block of ``len(continuations)`` targets x ``len(shown)`` candidates: ``shown`` are
    the candidates' prefix lengths, ``continuations`` the targets' continuation lengths, ``wanted`` the
    (targets x candidates) pairs to score."""
    shown, widths = list(shown), list(continuations)
    fit = fits(settings, np.asarray(shown, dtype=np.int64), np.asarray(widths, dtype=np.int64))
    ok = wanted & fit
    cut = [(int(i), int(j)) for i, j in np.argwhere(wanted & ~fit)]
    columns = np.flatnonzero(ok.any(axis=0)).tolist()
    groups = []
    for group in prefix_groups(settings, columns, shown, widths):
        passes = []
        for i, width in enumerate(widths):
            rows = np.flatnonzero(ok[i, group]).tolist()
            step = max(1, settings.tokens_per_batch // width)
            passes += [(i, rows[first:first + step]) for first in range(0, len(rows), step)]
        groups.append(GroupPlan(group, passes))
    return OneShotPlan(cut, groups)
