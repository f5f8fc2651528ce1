"""Kernels stored in blocks on disk: resumable, shardable across processes and machines, then merged.

Layout under the kernel cache root, one folder per kernel key and tiling:
    <root>/<key>/tiles<block_size>/manifest.json      shapes, ids, tiling, the cache payload
    <root>/<key>/tiles<block_size>/zero_r<R>.npz      d_zero of row tile R   (+ its counts)
    <root>/<key>/tiles<block_size>/one_r<R>_c<C>.npz  d_one of tile (R, C)   (+ its counts)
(d = distances, or sums of log-probabilities for a ``logprob_sum`` kernel: its own key and folder.)
Row tile R holds targets [R*b, (R+1)*b), column tile C candidates [C*b, (C+1)*b), b = block_size.
Every file is written atomically (temporary sibling + rename), so a killed run leaves only whole
blocks; a restart skips them. A block counts as done only when its file reads back whole, with the
shape of its tile and finite distances; a damaged one (a disk error, a copy cut short, a hand edit)
is reported with its path, removed and computed again. A damaged manifest is reported and rewritten.
Block k (in ``iter_blocks`` order) belongs to shard k % num_shards.
The block size and sharding never change the numbers, so they are not part of the key.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from delift.fsutil import atomic_write
from delift.kernel.settings import DEFAULT_AGGREGATE, UtilityKernel, check_aggregate, utility_matrix

log = logging.getLogger(__name__)

COUNT_KEYS = ("pairs", "tokens", "shown_truncated", "shown_dropped", "query_truncated", "per_sequence")


@dataclass(frozen=True)
class Block:
    """One unit of work: the zero-shot distances of a row tile, or the one-shot tile (row, col)."""

    index: int
    row: int
    col: int | None = None  # None: the zero-shot block of the row tile

    @property
    def name(self) -> str:
        return f"zero_r{self.row}" if self.col is None else f"one_r{self.row}_c{self.col}"


def num_tiles(n: int, block_size: int) -> int:
    return max(1, -(-n // block_size))


def iter_blocks(n_targets: int, n_candidates: int, block_size: int) -> Iterator[Block]:
    """Every block, lazily: per row tile its zero-shot block, then its one-shot tiles."""
    index = 0
    for row in range(num_tiles(n_targets, block_size)):
        yield Block(index, row)
        index += 1
        for col in range(num_tiles(n_candidates, block_size)):
            yield Block(index, row, col)
            index += 1


def shard_of(block: Block, num_shards: int) -> int:
    return block.index % num_shards


class IncompleteKernelError(RuntimeError):
    """Blocks of other shards are still missing."""


class CorruptBlockError(ValueError):
    """A block file that cannot be used: unreadable, or not the arrays its tile needs."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"kernel block {path} is damaged: {reason}")
        self.path, self.reason = path, reason


def _read_block(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The arrays ``d`` and ``counts`` of a block file; a missing file raises FileNotFoundError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["d"], data["counts"]
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated or empty zip, bad CRC, missing array, not an npz at all
        raise CorruptBlockError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc


def _block_problem(d: np.ndarray, counts: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """Why the arrays of a block do not fit a tile of ``shape``, or None when they do."""
    if d.dtype.kind != "f" or d.shape != shape:
        return f"distances of shape {d.shape} and dtype {d.dtype}, expected float of shape {shape}"
    if counts.dtype.kind not in "iu" or counts.shape != (len(COUNT_KEYS),):
        return f"counts of shape {counts.shape} and dtype {counts.dtype}, expected {len(COUNT_KEYS)} integers"
    bad = int(d.size - np.count_nonzero(np.isfinite(d)))
    return f"{bad} non-finite distances (NaN or inf)" if bad else None


def _read_manifest(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """The manifest at ``path`` and None, or None and why it cannot be used."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    fields = ("shape", "target_ids", "candidate_ids")
    if not isinstance(manifest, dict) or any(name not in manifest for name in fields):
        return None, f"not a JSON object with the fields {list(fields)}"
    return manifest, None


class BlockStore:
    """The block files of one kernel (one key, one tiling)."""

    def __init__(self, root: str | Path, key: str, block_size: int, target_ids: Sequence[str],
                 candidate_ids: Sequence[str], payload: dict[str, Any] | None = None,
                 aggregate: str = DEFAULT_AGGREGATE):
        if block_size < 1:
            raise ValueError(f"kernel.block_size={block_size}: must be at least 1")
        self.aggregate = check_aggregate(aggregate)  # what the blocks hold; decides UF's formula in merge
        self.key = key
        self.block_size = block_size
        self.folder = Path(root).expanduser() / key / f"tiles{block_size}"
        self.target_ids, self.candidate_ids = list(target_ids), list(candidate_ids)
        self.payload = payload or {}
        self._checked: dict[int, tuple[int, int]] = {}  # block index -> (mtime_ns, size) of a file read whole

    @property
    def shape(self) -> tuple[int, int]:
        return len(self.target_ids), len(self.candidate_ids)

    def blocks(self) -> Iterator[Block]:
        return iter_blocks(*self.shape, self.block_size)

    def rows(self, block: Block) -> range:
        return range(block.row * self.block_size, min(self.shape[0], (block.row + 1) * self.block_size))

    def cols(self, block: Block) -> range:
        if block.col is None:
            raise ValueError("a zero-shot block has no column range")
        return range(block.col * self.block_size, min(self.shape[1], (block.col + 1) * self.block_size))

    def path(self, block: Block) -> Path:
        return self.folder / f"{block.name}.npz"

    def tile_shape(self, block: Block) -> tuple[int, ...]:
        """Shape of the distances a block holds: (rows,) zero-shot, (rows, cols) one-shot."""
        rows = len(self.rows(block))
        return (rows,) if block.col is None else (rows, len(self.cols(block)))

    def ensure_manifest(self) -> None:
        """Write manifest.json unless a readable one is there; an existing one must describe the same kernel.

        A damaged manifest is reported and rewritten: it only describes the folder, and every block
        is checked against the tiling on its own when it is read.
        """
        path = self.folder / "manifest.json"
        manifest = {"key": self.key, "block_size": self.block_size, "shape": list(self.shape),
                    "aggregate": self.aggregate, "target_ids": self.target_ids, "candidate_ids": self.candidate_ids,
                    "payload": self.payload}
        if path.exists():
            old, problem = _read_manifest(path)
            if old is not None:
                if (old["shape"], old["target_ids"], old["candidate_ids"]) != (manifest["shape"], self.target_ids,
                                                                              self.candidate_ids):
                    raise ValueError(f"{path} describes a different kernel; delete {self.folder} to recompute")
                return
            log.warning("kernel manifest %s is damaged: %s; writing it again", path, problem)
        text = json.dumps(manifest, indent=1, default=str).encode()
        atomic_write(path, lambda handle: handle.write(text))

    def has(self, block: Block) -> bool:
        """True when the block's file is on disk and sound; a damaged one is reported and removed.

        A file once read whole is not read again while its size and modification time stay the same.
        """
        path = self.path(block)
        try:
            stat = path.stat()
            if self._checked.get(block.index) == (stat.st_mtime_ns, stat.st_size):
                return True
            self.load(block)
        except FileNotFoundError:
            return False
        except CorruptBlockError as exc:
            log.warning("%s; removing it, the block will be computed again", exc)
            path.unlink(missing_ok=True)
            return False
        self._checked[block.index] = (stat.st_mtime_ns, stat.st_size)
        return True

    def save(self, block: Block, d: np.ndarray, counts: dict[str, int]) -> Path:
        counts_array = np.array([counts.get(k, 0) for k in COUNT_KEYS], dtype=np.int64)
        return atomic_write(self.path(block), lambda handle: np.savez(handle, d=np.asarray(d, dtype=np.float64),
                                                                      counts=counts_array))

    def load(self, block: Block) -> tuple[np.ndarray, dict[str, int]]:
        """Distances and counts of a block; CorruptBlockError (naming the file) when it is damaged."""
        path = self.path(block)
        d, counts = _read_block(path)
        problem = _block_problem(d, counts, self.tile_shape(block))
        if problem is not None:
            raise CorruptBlockError(path, problem)
        return d, dict(zip(COUNT_KEYS, (int(c) for c in counts)))

    def missing(self) -> Iterator[Block]:
        """Blocks not on disk yet (damaged ones are removed and count as missing)."""
        return (block for block in self.blocks() if not self.has(block))

    def merge(self) -> UtilityKernel:
        """Assemble the full kernel, reading one block at a time; every block must exist and be sound.

        A block damaged since ``has`` checked it raises CorruptBlockError naming its file (the next
        run's ``has`` removes it, and it is computed again).
        """
        d_zero = np.full(self.shape[0], np.nan)
        d_one = np.full(self.shape, np.nan)
        totals = dict.fromkeys(COUNT_KEYS, 0)
        for block in self.blocks():
            d, counts = self.load(block)
            if block.col is None:
                d_zero[self.rows(block).start:self.rows(block).stop] = d
                totals["query_truncated"] += counts["query_truncated"]  # zero-shot cuts count too
                totals["tokens"] += counts["tokens"]
            else:
                rows, cols = self.rows(block), self.cols(block)
                d_one[rows.start:rows.stop, cols.start:cols.stop] = d
                for name in COUNT_KEYS:
                    totals[name] += counts[name]
        return UtilityKernel(uf=utility_matrix(d_zero, d_one, self.aggregate), d_zero=d_zero, d_one=d_one,
                             target_ids=self.target_ids, candidate_ids=self.candidate_ids,
                             meta={"sequences": self.shape[0] * (self.shape[1] + 1), **totals,
                                   "block_size": self.block_size, "aggregate": self.aggregate})
