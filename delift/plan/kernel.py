"""The work of a utility kernel, block by block, as the engine runs it (no model).

For each block of the kernel's tiling (:func:`delift.kernel.blocks.iter_blocks`, this shard's only) it
follows the engine's own schedule (:mod:`delift.kernel.schedule`): zero-shot sequences and truncated pairs
on the per-sequence path, every other pair through its candidate's prefix (run once per block and group)
and a continuation pass. The counts equal the engine's ``BlockStats`` (pairs, tokens, per-sequence pairs)
and its forward calls (tested against a real run). Approximations: ``learned`` is exact (its sample kernel,
zero-shot rows and self-pairs), ``knn`` an estimate (its neighbours need the embedder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from delift.kernel.blocks import block_size_for, iter_blocks, shard_of
from delift.kernel.schedule import (
    continuation_length,
    length_batches,
    one_shot_plan,
    prefix_chunks,
    resolve_workers,
    sequence_length,
)
from delift.kernel.settings import BaseKernelConfig, self_pairs
from delift.kernel.tokens import TokenizedExample
from delift.plan.work import Work

FLOAT = 8  # bytes of a float64: distances, UF
BLOCK_FILE = 560  # bytes of a block file beyond its distances: its 6 counts and the npz headers
MANIFEST = 900  # bytes of manifest.json beyond the ids: the payload (templates, identity) as indented JSON
NPZ_HEADERS = 1024  # the merged file's four array headers
META_CHARS = 1024  # the merged file's metadata beyond the ids: counts, key, payload


@dataclass(frozen=True)
class Schedule:
    """The engine settings a schedule reads (:class:`delift.kernel.schedule.EngineSettings`)."""

    eos_after_prompt: bool
    max_length: int
    batch_size: int
    tokens_per_batch: int
    workers: int

    @classmethod
    def of(cls, config: BaseKernelConfig, workers: int) -> Schedule:
        """``workers``: the engine's resolved count (``ScoringSetup``: CPU auto = min(torch threads, 4); GPU 1)."""
        return cls(config.eos_after_prompt, config.max_length, config.batch_size, config.tokens_per_batch, workers)


def engine_workers(config: BaseKernelConfig) -> int:
    """What :class:`delift.kernel.engine.ScoringSetup` resolves ``kernel.workers`` to on this machine."""
    import torch

    return resolve_workers(config.workers, not torch.cuda.is_available(), torch.get_num_threads())  # models load on CUDA when it exists


def _lengths(examples: Sequence[TokenizedExample], settings: Schedule) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    shown = np.array([len(e.shown) for e in examples], dtype=np.int64)
    cont = np.array([continuation_length(settings, len(e.query), len(e.response)) for e in examples], dtype=np.int64)
    scored = np.array([len(e.response) + 1 for e in examples], dtype=np.int64)
    return shown, cont, scored


def per_sequence(settings: Schedule, lengths: Sequence[int], scored: Sequence[int]) -> Work:
    """Sequences of ``lengths`` on the per-sequence path: ``batch_size`` a pass, sorted by length."""
    work = Work(sequences=len(lengths), passes=len(length_batches(list(lengths), settings.batch_size)))
    for length, count in zip(lengths, scored):
        work.sequence(int(length), int(count))
    return work


def zero_shot(settings: Schedule, cont: np.ndarray, scored: np.ndarray) -> Work:
    """The zero-shot sequences ``[query] EOS [response] EOS`` of these targets (one call of the engine)."""
    return per_sequence(settings, [sequence_length(settings, 0, int(c)) for c in cont], scored)


def one_shot(settings: Schedule, shown: np.ndarray, cont: np.ndarray, scored: np.ndarray,
             wanted: np.ndarray) -> Work:
    """One block's one-shot pairs (``score_one_shot``): truncated pairs whole, the rest on cached prefixes."""
    plan = one_shot_plan(settings, shown.tolist(), cont.tolist(), wanted)
    work = Work(pairs=int(wanted.sum()))
    if plan.cut:
        cut = per_sequence(settings, [sequence_length(settings, int(shown[j]), int(cont[i])) for i, j in plan.cut],
                           [scored[i] for i, _ in plan.cut])
        cut.per_sequence = cut.sequences
        work.add(cut)
    for group in plan.groups:
        prefixes = [int(shown[j]) for j in group.columns]
        work.passes += len(prefix_chunks(prefixes, settings.workers))
        for length in prefixes:
            work.sequence(length, 0)
        for i, rows in group.passes:
            work.passes += 1
            for g in rows:
                start = prefixes[g]
                work.sequence(start + int(cont[i]), int(scored[i]), start)
    work.sequences = work.pairs
    return work


def exact_kernel(settings: Schedule, targets: Sequence[TokenizedExample], candidates: Sequence[TokenizedExample],
                 block_size: int, num_shards: int = 1, shard: int = 0) -> Work:
    """Every block of this shard, as ``KernelProvider._fill`` computes them (a small sharded kernel tiled finer)."""
    t_shown, t_cont, t_scored = _lengths(targets, settings)
    c_shown = _lengths(candidates, settings)[0]
    block_size = block_size_for(block_size, len(targets), len(candidates), num_shards)
    work = Work()
    for block in iter_blocks(len(targets), len(candidates), block_size):
        if shard_of(block, num_shards) != shard:
            continue
        rows = slice(block.row * block_size, min(len(targets), (block.row + 1) * block_size))
        if block.col is None:
            work.add(zero_shot(settings, t_cont[rows], t_scored[rows]))
            continue
        cols = slice(block.col * block_size, min(len(candidates), (block.col + 1) * block_size))
        wanted = np.ones((rows.stop - rows.start, cols.stop - cols.start), dtype=bool)
        work.add(one_shot(settings, c_shown[cols], t_cont[rows], t_scored[rows], wanted))
    return work


def learned_kernel(settings: Schedule, config: BaseKernelConfig, targets: Sequence[TokenizedExample],
                   candidates: Sequence[TokenizedExample]) -> Work:
    """``kernel.approximation=learned``: the exact sample kernel, then the zero-shot passes of the other rows
    with an exact self-pair, then those self-pairs on the per-sequence path (``learned_kernel``)."""
    from delift.kernel.approximations.learned import learned_sample

    t_ids, c_ids = [e.id for e in targets], [e.id for e in candidates]
    sample = learned_sample(t_ids, c_ids, config.learned)
    work = exact_kernel(settings, [targets[i] for i in sample.rows], [candidates[j] for j in sample.cols],
                        config.block_size, config.num_shards, config.shard)
    if config.num_shards > 1 or not config.learned.exact_diagonal:
        return work  # a shard run fills only the sample kernel's blocks; no exact self-pairs
    rows, cols = self_pairs(t_ids, c_ids)
    outside = ~(np.isin(rows, sample.rows) & np.isin(cols, sample.cols))
    rows, cols = rows[outside], cols[outside]
    t_shown, t_cont, t_scored = _lengths(targets, settings)
    c_shown = _lengths(candidates, settings)[0]
    others = np.setdiff1d(rows, sample.rows)
    if len(others):
        work.add(zero_shot(settings, t_cont[others], t_scored[others]))
    if len(rows):
        pairs = per_sequence(settings, [sequence_length(settings, int(c_shown[j]), int(t_cont[i]))
                                        for i, j in zip(rows, cols)], t_scored[rows].tolist())
        pairs.pairs = pairs.per_sequence = pairs.sequences
        work.add(pairs)
    return work


def knn_kernel(settings: Schedule, config: BaseKernelConfig, targets: Sequence[TokenizedExample],
               candidates: Sequence[TokenizedExample]) -> Work:
    """``kernel.approximation=knn``, estimated: which neighbours a target gets needs the embedder, so every
    target is taken with the ``neighbors`` candidates after it in pool order (and itself); each candidate's
    prefix runs once per row block, for the targets that want it."""
    t_shown, t_cont, t_scored = _lengths(targets, settings)
    c_shown = _lengths(candidates, settings)[0]
    where = {e.id: j for j, e in enumerate(candidates)}
    m = config.knn.neighbors
    work = Work()
    for number, start in enumerate(range(0, len(targets), config.block_size)):
        if number % config.num_shards != config.shard:
            continue
        rows = np.arange(start, min(start + config.block_size, len(targets)))
        wanted = np.zeros((len(rows), len(candidates)), dtype=bool)
        for k, i in enumerate(rows):
            own = where.get(targets[i].id)
            base = int(i) if own is None else own
            wanted[k, [(base + 1 + t) % len(candidates) for t in range(min(m, len(candidates) - (own is not None)))]] = True
            if own is not None:
                wanted[k, own] = True
        work.add(zero_shot(settings, t_cont[rows], t_scored[rows]))
        used = np.flatnonzero(wanted.any(axis=0))
        work.add(one_shot(settings, c_shown[used], t_cont[rows], t_scored[rows], wanted[:, used]))
    return work


def kernel_work(settings: Schedule, config: BaseKernelConfig, targets: Sequence[TokenizedExample],
                candidates: Sequence[TokenizedExample]) -> tuple[Work, bool]:
    """The kernel's work under ``kernel.approximation`` and whether it is exact (not an estimate)."""
    if config.approximation == "learned":
        return learned_kernel(settings, config, targets, candidates), True
    if config.approximation == "knn":
        return knn_kernel(settings, config, targets, candidates), False
    if config.approximation != "exact":
        raise ValueError(f"kernel.approximation={config.approximation!r}: the cost plan knows exact, learned, knn")
    return exact_kernel(settings, targets, candidates, config.block_size, config.num_shards, config.shard), True


def stored_entries(config: BaseKernelConfig, n_targets: int, n_candidates: int) -> int:
    """Entries the kernel holds: every pair, or for ``knn`` (a sparse kernel) at most m + 1 a target."""
    if config.approximation == "knn":
        return n_targets * min(config.knn.neighbors + 1, n_candidates)
    return n_targets * n_candidates


def kernel_bytes(config: BaseKernelConfig, n_targets: int, n_candidates: int, id_chars: int) -> tuple[int, int]:
    """(disk, memory) of one kernel. Disk: the block files (``d`` float64 and 6 counts each), the manifest
    (ids and payload as JSON) and the merged ``<key>.npz`` (UF, d_one, d_zero, and its metadata as a numpy
    unicode string, 4 bytes a character, ids included): about 24 bytes a pair. Memory: UF and d_one, 16 bytes a
    pair; a ``knn`` kernel is a float32 CSR (8 bytes a stored entry, no d_one) in memory and in its merged file.
    ``id_chars``: the characters of the targets' and candidates' ids."""
    pairs = n_targets * n_candidates
    dense = 2 * FLOAT * pairs + FLOAT * n_targets
    if config.approximation == "knn":
        dense = 8 * stored_entries(config, n_targets, n_candidates) + 2 * FLOAT * n_targets
    merged = dense + NPZ_HEADERS + 4 * (META_CHARS + id_chars + 4 * (n_targets + n_candidates))
    rows, cols = -(-n_targets // config.block_size), -(-n_candidates // config.block_size)
    blocks = FLOAT * (pairs + n_targets) + (rows + rows * cols) * BLOCK_FILE
    manifest = MANIFEST + id_chars + 6 * (n_targets + n_candidates)
    if config.approximation == "learned":  # the sample kernel's files, then the whole (dense) kernel
        sample = config.learned.sample_fraction
        blocks = round(3 * FLOAT * sample ** 2 * pairs) + BLOCK_FILE
    elif config.approximation == "knn":  # one file a row block: cols (int64), d_one, d_zero
        blocks = 2 * FLOAT * n_targets * (config.knn.neighbors + 1) + FLOAT * n_targets + rows * BLOCK_FILE
    return blocks + manifest + merged, dense
