"""A subsampled randomized Hadamard transform (SRHT): LESS's projection in O(D log D) per example.

For gradients of length ``dim_in`` = D, padded with zeros to N = the next power of two:

    y(x) = (1 / sqrt(dim_out)) * (H_N (s * x))[rows]

- ``s`` in {-1, +1}^D: bit i of numpy's Philox keyed ``(seed, SIGN_STREAM)`` (``random_raw`` words, least
  significant bit first) gives ``s_i = 1 - 2 bit``;
- ``rows``: ``dim_out`` distinct coordinates of [0, N), drawn without replacement by numpy's Generator on
  Philox keyed ``(seed, ROW_STREAM)``, in increasing order;
- ``H_N``: the unnormalised Sylvester Hadamard matrix, ``H[i, j] = (-1)^popcount(i & j)``.

Since ``H_N / sqrt(N)`` is orthogonal and each coordinate is kept with probability ``dim_out / N``,
``E <y(x), y(z)> = <x, z>``. The transform is a pure function of ``(dim_in, dim_out, seed)``, so pool and
targets and every checkpoint share it, and each example (any batch of rows) is projected on its own.
The two Philox keys use the highest unit numbers, which :class:`RademacherProjection`'s per-unit keys
never reach, so the two projections' random streams never overlap.
"""

from __future__ import annotations

import math

import numpy as np
import torch

MASK64 = (1 << 64) - 1
SIGN_STREAM, ROW_STREAM = MASK64, MASK64 - 1
RADIX_BITS = 4  # H_16 blocks: 28 ms per 2^22-long row on one AVX2 core, against 37-370 ms for H_64..H_2048


def next_power_of_two(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def sylvester(bits: int, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
    """The unnormalised Hadamard matrix H_(2^bits), entries (-1)^popcount(i & j)."""
    index = torch.arange(1 << bits, device=device)
    parity = torch.zeros((1 << bits, 1 << bits), dtype=torch.int64, device=device)
    for bit in range(bits):
        parity ^= ((index[:, None] >> bit) & (index[None, :] >> bit)) & 1
    return (1 - 2 * parity).to(dtype)


def fwht(x: torch.Tensor, radix_bits: int = RADIX_BITS, work: torch.Tensor | None = None) -> torch.Tensor:
    """Unnormalised Walsh-Hadamard transform of each row of ``x`` (rows x 2^k), returned in ``x`` or ``work``
    (a buffer of x's shape; both are overwritten).

    H_N is the Kronecker product of small Hadamard matrices, one per group of index bits, so each
    group is one batched matmul (contiguous, out-of-place into the other buffer): O(N log N) per row."""
    rows, n = x.shape
    bits = n.bit_length() - 1
    if n != 1 << bits:
        raise ValueError(f"fwht: row length {n} is not a power of two")
    groups = max(1, -(-bits // radix_bits))
    sizes = [bits // groups + (g < bits % groups) for g in range(groups)]  # balanced bit groups
    source, target, low = x, (torch.empty_like(x) if work is None else work), 0
    for size in sizes:
        if size == 0:
            continue
        h = sylvester(size, x.dtype, x.device)
        if low == 0:  # the lowest bits: one (rows * N / f) x f matmul on the right
            torch.matmul(source.view(-1, 1 << size), h, out=target.view(-1, 1 << size))
        else:  # bits [low, low + size): H_f on the middle axis of (outer, f, 2^low)
            torch.matmul(h, source.view(-1, 1 << size, 1 << low), out=target.view(-1, 1 << size, 1 << low))
        source, target, low = target, source, low + size
    return source


class SRHTProjection:
    """``x -> (1 / sqrt(dim_out)) (H_N (s * x))[rows]`` (see the module docstring)."""

    kind = "srht"

    def __init__(self, dim_in: int, dim_out: int, seed: int, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32):
        if dim_in < 1 or dim_out < 1:
            raise ValueError(f"projection {dim_in} -> {dim_out}: both dimensions must be >= 1")
        self.dim_in, self.dim_out, self.seed = int(dim_in), int(dim_out), int(seed)
        self.padded = next_power_of_two(self.dim_in)
        if self.dim_out > self.padded:
            raise ValueError(f"selector.proj_dim={dim_out}: projection=srht samples distinct coordinates of the "
                             f"{self.padded} of the zero-padded gradient (length {dim_in}); use proj_dim <= "
                             f"{self.padded}, projection=rademacher or proj_dim=null")
        self.device, self.dtype = torch.device(device), dtype
        self.signs = self.sign_vector(self.seed, self.dim_in).to(self.device, dtype)
        self.rows = torch.from_numpy(self.sampled_rows(self.seed, self.padded, self.dim_out)).to(self.device)
        self.scale = 1.0 / math.sqrt(self.dim_out)
        self.buffers: tuple[torch.Tensor, torch.Tensor] | None = None  # reused: fresh pages cost a third of the time

    @staticmethod
    def sign_vector(seed: int, dim_in: int) -> torch.Tensor:
        words = np.random.Philox(key=np.array([seed & MASK64, SIGN_STREAM], dtype=np.uint64)).random_raw(
            -(-dim_in // 64))
        bits = np.unpackbits(words.view(np.uint8), bitorder="little")[:dim_in]
        return torch.from_numpy(1.0 - 2.0 * bits.astype(np.float32))

    @staticmethod
    def sampled_rows(seed: int, padded: int, dim_out: int) -> np.ndarray:
        generator = np.random.Generator(np.random.Philox(key=np.array([seed & MASK64, ROW_STREAM], dtype=np.uint64)))
        return np.sort(generator.choice(padded, size=dim_out, replace=False)).astype(np.int64)

    def project_rows(self, rows: torch.Tensor) -> torch.Tensor:
        """(n, dim_out) projections of ``rows`` (n, dim_in); each row independently of the others."""
        if rows.ndim != 2 or rows.shape[-1] != self.dim_in:
            raise ValueError(f"rows of shape {tuple(rows.shape)}; the projection expects (n, {self.dim_in})")
        n = rows.shape[0]
        if self.buffers is None or self.buffers[0].shape[0] < n:
            self.buffers = tuple(torch.zeros(n, self.padded, dtype=self.dtype, device=self.device) for _ in range(2))
        padded, work = (buffer[:n] for buffer in self.buffers)
        padded[:, self.dim_in:].zero_()
        padded[:, :self.dim_in].copy_(rows).mul_(self.signs)
        return fwht(padded, work=work)[:, self.rows].mul_(self.scale)
