"""A seeded Rademacher projection that is never materialised, and a gradient scratch file read block by block.

The projection matrix R (``dim_in x dim_out``, entries +-1) is defined unit by unit: rows
``[u * UNIT_ROWS, (u + 1) * UNIT_ROWS)`` are the first ``UNIT_ROWS * dim_out`` bits of numpy's
counter-based Philox generator keyed by ``(seed, u)``, bit ``b`` giving ``1 - 2 b`` (row-major,
least significant bit of each byte first). Any block of rows is therefore reproducible on its own,
on any machine, and the matrix does not depend on the block size used to compute with it (the block
size only bounds memory). ``x R`` is then summed block by block: ``sum_b x[:, block b] R[block b]``.

:class:`BlockedScratch` holds a chunk of gradient rows on disk, stored block-column by block-column,
so that the projection reads each block of every row with one call and host memory stays at one
gradient batch (while writing) plus one projection block (while projecting).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np
import torch

UNIT_ROWS = 128  # rows of R per Philox key; a projection block is a whole number of units
MASK64 = (1 << 64) - 1


def unit_bits(seed: int, unit: int, dim_out: int) -> np.ndarray:
    """The packed bits (uint8, little bit order) of rows ``[unit * UNIT_ROWS, (unit + 1) * UNIT_ROWS)``."""
    generator = np.random.Philox(key=np.array([seed & MASK64, unit], dtype=np.uint64))
    return generator.random_raw(UNIT_ROWS * dim_out // 64).view(np.uint8)  # UNIT_ROWS is a multiple of 64


def signs_from_bits(packed: np.ndarray, rows: int, dim_out: int, device: torch.device, dtype: torch.dtype,
                    use_numpy: bool | None = None) -> torch.Tensor:
    """+-1 matrix (rows, dim_out) from packed bits: numpy's unpackbits on the CPU (faster there), bit shifts
    on the device elsewhere (``use_numpy`` forces either; both give the same matrix)."""
    if device.type == "cpu" if use_numpy is None else use_numpy:
        bits = torch.from_numpy(np.unpackbits(packed, bitorder="little"))
    else:
        raw = torch.from_numpy(packed).to(device)
        bits = (raw.unsqueeze(-1) >> torch.arange(8, device=device, dtype=torch.uint8)) & 1
    return bits.reshape(rows, dim_out).to(dtype).mul_(-2).add_(1)


class RademacherProjection:
    """R in {-1, +1}^(dim_in x dim_out), generated in blocks of ``block_rows`` rows (a multiple of UNIT_ROWS)."""

    def __init__(self, dim_in: int, dim_out: int, seed: int, block_rows: int = 1024,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        if dim_in < 1 or dim_out < 1:
            raise ValueError(f"projection {dim_in} -> {dim_out}: both dimensions must be >= 1")
        if block_rows < UNIT_ROWS or block_rows % UNIT_ROWS:
            raise ValueError(f"selector.proj_block={block_rows}: must be a positive multiple of {UNIT_ROWS}")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self.block_rows, self.device, self.dtype = int(block_rows), torch.device(device), dtype

    @property
    def n_blocks(self) -> int:
        return -(-self.dim_in // self.block_rows)

    def block_range(self, index: int) -> tuple[int, int]:
        start = index * self.block_rows
        return start, min(start + self.block_rows, self.dim_in)

    def block(self, index: int) -> torch.Tensor:
        """Rows ``block_range(index)`` of R, on the projection's device."""
        start, stop = self.block_range(index)
        units = range(start // UNIT_ROWS, -(-stop // UNIT_ROWS))
        packed = np.concatenate([unit_bits(self.seed, u, self.dim_out) for u in units])
        first = start - units[0] * UNIT_ROWS
        signs = signs_from_bits(packed, len(units) * UNIT_ROWS, self.dim_out, self.device, self.dtype)
        return signs[first:first + stop - start]

    def materialise(self) -> torch.Tensor:
        """The whole matrix (small sizes only: tests)."""
        return torch.cat([self.block(b) for b in range(self.n_blocks)])

    def project(self, read_block: Callable[[int, int], torch.Tensor], n_rows: int,
                on_block: Callable[[int], None] | None = None) -> torch.Tensor:
        """``X R`` for an ``n_rows x dim_in`` matrix X given by ``read_block(start, stop) -> X[:, start:stop]``."""
        out = torch.zeros(n_rows, self.dim_out, dtype=self.dtype, device=self.device)
        for index in range(self.n_blocks):
            start, stop = self.block_range(index)
            part = read_block(start, stop).to(device=self.device, dtype=self.dtype)
            out.addmm_(part, self.block(index))
            if on_block is not None:
                on_block(index)
        return out

    def project_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """``rows R`` for rows already in memory."""
        if rows.shape[-1] != self.dim_in:
            raise ValueError(f"rows of width {rows.shape[-1]}; the projection expects {self.dim_in}")
        return self.project(lambda start, stop: rows[:, start:stop], rows.shape[0])


def normalise_rows(rows: torch.Tensor) -> torch.Tensor:
    """Each row divided by its L2 norm (an all-zero row stays zero)."""
    norms = rows.norm(dim=-1, keepdim=True)
    return rows / torch.where(norms > 0, norms, torch.ones_like(norms))


class BlockedScratch:
    """An ``n_rows x n_cols`` float32 matrix in a file, stored block-column by block-column.

    Block b (columns ``[b * block_cols, ...)``) occupies one contiguous region, row-major, so writing
    a batch of rows costs one write per block and reading a block for every row costs one read.
    Plain positional reads and writes (no memory map), so the file never counts towards resident memory.
    """

    ITEM = 4  # float32

    def __init__(self, path: str | Path, n_rows: int, n_cols: int, block_cols: int):
        self.path, self.n_rows, self.n_cols, self.block_cols = Path(path), int(n_rows), int(n_cols), int(block_cols)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        os.ftruncate(self.fd, self.n_rows * self.n_cols * self.ITEM)

    def _region(self, start_col: int) -> int:
        return start_col * self.n_rows * self.ITEM  # every earlier block is block_cols wide

    def write_rows(self, first_row: int, rows: np.ndarray) -> None:
        """Store ``rows`` (float32, shape ``(k, n_cols)``) as rows ``first_row .. first_row + k - 1``."""
        rows = np.asarray(rows, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_cols or first_row + len(rows) > self.n_rows:
            raise ValueError(f"scratch: rows {first_row}+{rows.shape} do not fit {self.n_rows}x{self.n_cols}")
        for start in range(0, self.n_cols, self.block_cols):
            stop = min(start + self.block_cols, self.n_cols)
            data = np.ascontiguousarray(rows[:, start:stop]).tobytes()
            offset = self._region(start) + first_row * (stop - start) * self.ITEM
            written = 0
            while written < len(data):
                written += os.pwrite(self.fd, data[written:], offset + written)

    def read_cols(self, start: int, stop: int) -> np.ndarray:
        """Columns ``[start, stop)`` of every row; ``start`` must begin a block and ``stop`` end it."""
        if start % self.block_cols or stop != min(start + self.block_cols, self.n_cols):
            raise ValueError(f"scratch: columns {start}:{stop} are not one block of {self.block_cols}")
        size = self.n_rows * (stop - start) * self.ITEM
        buffer = bytearray(size)
        view, read = memoryview(buffer), 0
        while read < size:
            got = os.preadv(self.fd, [view[read:]], self._region(start) + read)
            if got == 0:
                raise OSError(f"scratch file {self.path} is shorter than expected")
            read += got
        return np.frombuffer(buffer, dtype=np.float32).reshape(self.n_rows, stop - start)

    def close(self, remove: bool = True) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        if remove:
            self.path.unlink(missing_ok=True)

    def __enter__(self) -> BlockedScratch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
