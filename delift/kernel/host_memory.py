"""Keep freed large host buffers for reuse while the engine runs (glibc), so passes do not page-fault.

glibc serves allocations above its mmap threshold with a fresh ``mmap`` and unmaps them on free,
and returns free memory at the top of a heap to the OS beyond its trim threshold. The kernel
engine allocates buffers of tens of MB in every pass (the output head's logits for 256 positions x
a 49k vocabulary are 25 MB in bf16, MLP activations of a full batch as much), so each pass would
fault in and zero fresh pages: measured on SmolLM2-135M with 2 threads, the head's matmul then
ran at half the speed it reaches on reused memory. Inside ``heap_reuse()`` blocks under 64 MB come
from the heap and freed memory stays there; on exit the thresholds are set to glibc's own
ceilings (32 MB mmap, 64 MB trim) and ``malloc_trim`` hands the free memory back, so the rest
of the process (fine-tuning, evaluation) keeps normal allocator behaviour.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys
from contextlib import contextmanager
from typing import Iterator

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters, <malloc.h>
_MB = 1 << 20
_DURING = {_M_MMAP_THRESHOLD: 64 * _MB, _M_TRIM_THRESHOLD: 1024 * _MB}
_AFTER = {_M_MMAP_THRESHOLD: 32 * _MB, _M_TRIM_THRESHOLD: 64 * _MB}  # glibc's dynamic ceilings (64-bit)
_libc: ctypes.CDLL | None | bool = None


def _glibc() -> ctypes.CDLL | None:
    global _libc
    if _libc is None:
        _libc = False
        if sys.platform.startswith("linux"):
            try:
                libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
                libc.mallopt.argtypes, libc.mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
                libc.malloc_trim.argtypes, libc.malloc_trim.restype = [ctypes.c_size_t], ctypes.c_int
                _libc = libc
            except (OSError, AttributeError):  # musl and other C libraries have no mallopt / malloc_trim
                pass
    return _libc or None


def _set(libc: ctypes.CDLL, values: dict[int, int]) -> bool:
    return all(libc.mallopt(name, value) == 1 for name, value in values.items())


@contextmanager
def heap_reuse() -> Iterator[bool]:
    """Inside: freed blocks under 64 MB are reused, not unmapped. Yields False where not glibc."""
    libc = _glibc()
    if libc is None or not _set(libc, _DURING):
        yield False
        return
    try:
        yield True
    finally:
        _set(libc, _AFTER)
        libc.malloc_trim(0)
