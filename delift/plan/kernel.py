"""The work of a utility kernel, block by block, as the engine runs it (no model).

For each block of the kernel's tiling (:func:`delift.kernel.blocks.iter_blocks`, this shard's only) it
follows the engine's own schedule (:mod:`delift.kernel.schedule`): zero-shot sequences and truncated pairs
on the per-sequence path, every other pair through its candidate's prefix (run once per block and group)
and a continuation pass. The counts equal the engine's ``BlockStats`` (pairs, tokens, per-sequence pairs)
and its forward calls (tested against a real run). An approximation counts its own work with these tools
(``Approximation.plan`` given a :class:`Planner`) and declares its layout and files: ``learned`` is exact (its
sample kernel, zero-shot rows and self-pairs), ``knn`` an estimate (its neighbours need the embedder).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from delift.kernel.blocks import block_size_for, iter_blocks, shard_of
from delift.kernel.cache import CSR
from delift.kernel.schedule import (
    EngineSettings,
    continuation_length,
    length_batches,
    one_shot_plan,
    prefix_chunks,
    resolve_workers,
    sequence_length,
)
from delift.kernel.settings import BaseKernelConfig
from delift.kernel.tokens import TokenizedExample
from delift.plan.work import Work

FLOAT = 8  # bytes of a float64: distances, UF
BLOCK_FILE = 560  # bytes of a block file beyond its distances: its 6 counts and the npz headers
MANIFEST = 900  # bytes of manifest.json beyond the ids: the payload (templates, identity) as indented JSON
NPZ_HEADERS = 1024  # the merged file's four array headers
META_CHARS = 1024  # the merged file's metadata beyond the ids: counts, key, payload


Schedule = EngineSettings  # the engine settings a schedule reads: the engine's own class, not a copy


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


@dataclass(frozen=True)
class FileSizes:
    """What the files of a kernel cost on disk, for an approximation's ``block_bytes``."""

    float: int = FLOAT  # bytes of a float64
    block_file: int = BLOCK_FILE  # bytes of a block file beyond its arrays


@dataclass(frozen=True)
class Planner:
    """The tools an approximation counts its work with (``Approximation.plan``), on one schedule."""

    settings: Schedule

    def lengths(self, examples: Sequence[TokenizedExample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _lengths(examples, self.settings)

    def exact(self, targets: Sequence[TokenizedExample], candidates: Sequence[TokenizedExample], block_size: int,
              num_shards: int = 1, shard: int = 0) -> Work:
        return exact_kernel(self.settings, targets, candidates, block_size, num_shards, shard)

    def zero_shot(self, cont: np.ndarray, scored: np.ndarray) -> Work:
        return zero_shot(self.settings, cont, scored)

    def one_shot(self, shown: np.ndarray, cont: np.ndarray, scored: np.ndarray, wanted: np.ndarray) -> Work:
        return one_shot(self.settings, shown, cont, scored, wanted)

    def per_sequence(self, lengths: Sequence[int], scored: Sequence[int]) -> Work:
        return per_sequence(self.settings, lengths, scored)

    def sequence_length(self, shown: int, continuation: int) -> int:
        return sequence_length(self.settings, shown, continuation)

    def empty(self) -> Work:
        return Work()


def kernel_work(settings: Schedule, config: BaseKernelConfig, targets: Sequence[TokenizedExample],
                candidates: Sequence[TokenizedExample]) -> tuple[Work, bool]:
    """The kernel's work under ``kernel.approximation`` (its ``plan``) and whether it is exact (not an estimate)."""
    strategy = config.strategy()
    return strategy.plan(Planner(settings), config, targets, candidates), strategy.planned_exactly


def stored_entries(config: BaseKernelConfig, n_targets: int, n_candidates: int) -> int:
    """Entries the kernel holds (its approximation's ``stored_entries``: every pair, or e.g. ``knn``'s m + 1 a target)."""
    return config.strategy().stored_entries(config, n_targets, n_candidates)


def sparse_layout(config: BaseKernelConfig) -> bool:
    """Whether the kernel is stored and held sparse (its approximation's ``layout`` is CSR)."""
    return config.strategy().layout == CSR


def kernel_bytes(config: BaseKernelConfig, n_targets: int, n_candidates: int, id_chars: int) -> tuple[int, int]:
    """(disk, memory) of one kernel. Disk: the block files (``d`` float64 and 6 counts each), the manifest
    (ids and payload as JSON) and the merged ``<key>.npz`` (UF, d_one, d_zero, and its metadata as a numpy
    unicode string, 4 bytes a character, ids included): about 24 bytes a pair. Memory: UF and d_one, 16 bytes a
    pair; a CSR kernel (``knn``) is a float32 CSR (8 bytes a stored entry, no d_one) in memory and in its merged
    file. The approximation declares its layout and its own intermediate files (``block_bytes``).
    ``id_chars``: the characters of the targets' and candidates' ids."""
    strategy = config.strategy()
    pairs = n_targets * n_candidates
    dense = 2 * FLOAT * pairs + FLOAT * n_targets
    if strategy.layout == CSR:
        dense = 8 * strategy.stored_entries(config, n_targets, n_candidates) + 2 * FLOAT * n_targets
    merged = dense + NPZ_HEADERS + 4 * (META_CHARS + id_chars + 4 * (n_targets + n_candidates))
    rows, cols = -(-n_targets // config.block_size), -(-n_candidates // config.block_size)
    blocks = strategy.block_bytes(FileSizes(), config, n_targets, n_candidates)
    if blocks is None:
        blocks = FLOAT * (pairs + n_targets) + (rows + rows * cols) * BLOCK_FILE
    manifest = MANIFEST + id_chars + 6 * (n_targets + n_candidates)
    return blocks + manifest + merged, dense
