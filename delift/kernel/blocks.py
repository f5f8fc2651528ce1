"""Kernels stored in blocks on disk: resumable, shardable across processes and machines, then merged.

Layout under the kernel cache root, one folder per kernel key and tiling:
    <root>/<key>/tiles<block_size>/manifest.json      shapes, ids, tiling, the cache payload
    <root>/<key>/tiles<block_size>/zero_r<R>.npz      d_zero of row tile R   (+ its counts and seconds)
    <root>/<key>/tiles<block_size>/one_r<R>_c<C>.npz  d_one of tile (R, C)   (+ its counts and seconds)
    <root>/<key>/.writers.lock                        held (shared) by whoever writes a block of the key
(d = distances, or sums of log-probabilities for a ``logprob_sum`` kernel: its own key and folder.)
Row tile R holds targets [R*b, (R+1)*b), column tile C candidates [C*b, (C+1)*b), b = block_size.
Every file is written atomically (temporary sibling + rename), so a killed run leaves only whole
blocks; a restart skips them. A block counts as done only when its file reads back whole, with the
shape of its tile and finite distances; a damaged one (a disk error, a copy cut short, a hand edit)
is reported with its path, removed and computed again. A damaged manifest is reported and rewritten.
Block k (in ``iter_blocks`` order) belongs to shard k % num_shards.
The block size and sharding never change the numbers, so they are not part of the key; so a run
continues in whichever ``tiles<b>/`` of its key holds the most of its blocks (``adopted_block_size``):
a merge at another ``kernel.block_size`` than its shards reuses their blocks. With ``num_shards`` > 1 a
kernel too small for every shard to own a one-shot block is tiled finer (``block_size_for``).
Each block records the seconds its computation took; the merged kernel's ``seconds`` is their sum.
Writers hold ``<key>/.writers.lock`` (``delift.kernel.cache.writing``), so a later run can remove the
temporary files a killed one left (``BlockStore.remove_stale_temporaries``).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from delift.fsutil import atomic_write
from delift.kernel.cache import WRITERS_LOCK, remove_stale_temporaries, writing
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


def _every_shard_scores_pairs(n_targets: int, n_candidates: int, block_size: int, num_shards: int) -> bool:
    """True when each of ``num_shards`` shards owns at least one one-shot block at this block size.

    One-shot block (r, c) has index r * (C + 1) + 1 + c (``iter_blocks``); its shard, that index mod num_shards,
    repeats after num_shards rows or columns, so at most num_shards^2 blocks are looked at."""
    rows, cols = num_tiles(n_targets, block_size), num_tiles(n_candidates, block_size)
    owners = {(r * (cols + 1) + 1 + c) % num_shards for r in range(min(rows, num_shards))
              for c in range(min(cols, num_shards))}
    return len(owners) == num_shards


def block_size_for(block_size: int, n_targets: int, n_candidates: int, num_shards: int) -> int:
    """The block size a run tiles a kernel with: ``kernel.block_size``, except that with ``num_shards`` > 1 a
    kernel too small for every shard to own a one-shot block at that size is tiled finer, at the largest
    ceil(max(n_targets, n_candidates) / t), t = 2, 3, ..., at which every shard does (1 when none does).
    E.g. 16 x 16 at block size 256: one one-shot block; with 2 shards, tiles of 8 (4 one-shot blocks)."""
    if num_shards <= 1 or _every_shard_scores_pairs(n_targets, n_candidates, block_size, num_shards):
        return block_size
    longest = max(n_targets, n_candidates)
    for tiles in range(2, longest + 1):
        size = -(-longest // tiles)
        if size < block_size and _every_shard_scores_pairs(n_targets, n_candidates, size, num_shards):
            return size
    return 1


TILES = re.compile(r"tiles([1-9][0-9]*)")


def adopted_block_size(root: str | Path, key: str, block_size: int, n_targets: int, n_candidates: int) -> int:
    """The block size whose ``<root>/<key>/tiles<b>/`` holds the largest share of its blocks on disk (files present;
    they are checked when read), ``block_size`` on a tie or when no folder holds any: blocks computed at another
    block size (by shards, by an earlier run) are reused instead of computed again."""
    best, best_share = block_size, 0.0
    folder = Path(root).expanduser() / key
    sizes = sorted(int(m.group(1)) for p in folder.glob("tiles*") if (m := TILES.fullmatch(p.name)) and p.is_dir())
    for size in sizes:
        files = {p.name for p in (folder / f"tiles{size}").glob("*.npz")}
        if not files:
            continue
        blocks = list(iter_blocks(n_targets, n_candidates, size))
        share = sum(f"{b.name}.npz" in files for b in blocks) / len(blocks)
        if share > best_share or (share == best_share and size == block_size):
            best, best_share = size, share
    if best != block_size:
        log.info("kernel %s: continuing in %s (%.0f %% of its blocks on disk) instead of tiles%d/ "
                 "(kernel.block_size does not change the numbers)", key[:12], folder / f"tiles{best}",
                 100 * best_share, block_size)
    return best


class IncompleteKernelError(RuntimeError):
    """Blocks of other shards are still missing."""


class CorruptBlockError(ValueError):
    """A block file that cannot be used: unreadable, or not the arrays its tile needs."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"kernel block {path} is damaged: {reason}")
        self.path, self.reason = path, reason


def _read_block(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The arrays ``d``, ``counts`` and ``seconds`` (0 in blocks written before it was recorded) of a block file;
    a missing file raises FileNotFoundError."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return data["d"], data["counts"], data["seconds"] if "seconds" in data.files else np.float64(0.0)
    except FileNotFoundError:
        raise
    except Exception as exc:  # truncated or empty zip, bad CRC, missing array, not an npz at all
        raise CorruptBlockError(path, f"unreadable ({type(exc).__name__}: {exc})") from exc


def _block_problem(d: np.ndarray, counts: np.ndarray, seconds: np.ndarray, shape: tuple[int, ...]) -> str | None:
    """Why the arrays of a block do not fit a tile of ``shape``, or None when they do."""
    if d.dtype.kind != "f" or d.shape != shape:
        return f"distances of shape {d.shape} and dtype {d.dtype}, expected float of shape {shape}"
    if counts.dtype.kind not in "iu" or counts.shape != (len(COUNT_KEYS),):
        return f"counts of shape {counts.shape} and dtype {counts.dtype}, expected {len(COUNT_KEYS)} integers"
    if seconds.shape != () or seconds.dtype.kind != "f" or not np.isfinite(seconds) or seconds < 0:
        return f"seconds {seconds!r}, expected one finite non-negative float"
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
        self.lock = self.folder.parent / WRITERS_LOCK  # held by every writer of this key's blocks
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
        with writing(self.lock):
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

    def save(self, block: Block, d: np.ndarray, counts: dict[str, int], seconds: float = 0.0) -> Path:
        """Write a block atomically, with the seconds its computation took, under the folder's writers lock."""
        counts_array = np.array([counts.get(k, 0) for k in COUNT_KEYS], dtype=np.int64)
        with writing(self.lock):
            return atomic_write(self.path(block), lambda handle: np.savez(
                handle, d=np.asarray(d, dtype=np.float64), counts=counts_array, seconds=np.float64(seconds)))

    def load(self, block: Block) -> tuple[np.ndarray, dict[str, Any]]:
        """Distances and counts of a block (``seconds``: its compute time); CorruptBlockError (naming the file)
        when it is damaged."""
        path = self.path(block)
        d, counts, seconds = _read_block(path)
        problem = _block_problem(d, counts, seconds, self.tile_shape(block))
        if problem is not None:
            raise CorruptBlockError(path, problem)
        return d, {**dict(zip(COUNT_KEYS, (int(c) for c in counts))), "seconds": float(seconds)}

    def remove_stale_temporaries(self) -> list[Path]:
        """Remove the temporary block files of killed runs (``delift.kernel.cache.remove_stale_temporaries``)."""
        return remove_stale_temporaries(self.folder, self.lock)

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
        seconds = 0.0
        for block in self.blocks():
            d, counts = self.load(block)
            seconds += counts["seconds"]
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
                                   "block_size": self.block_size, "aggregate": self.aggregate, "seconds": seconds})
