"""Keep freed large host buffers for reuse (glibc), so CPU scoring does not page-fault per pass.

glibc serves every allocation above its mmap threshold (at most 32 MB) with a fresh ``mmap`` and
unmaps it on free. The kernel engine allocates such buffers in every pass (the output head's
logits for 256 positions x a 49k vocabulary are 25 MB in bf16, attention and MLP activations a few
MB each), so each pass would fault in and zero fresh pages: measured on SmolLM2-135M, the head's
matmul then ran at half the speed it reaches on reused memory. Raising the mmap and trim
thresholds makes freed blocks go back to the heap and be reused. The process keeps its high-water
mark of heap memory instead of returning it to the OS; peak memory is unchanged.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # mallopt parameters, <malloc.h>
_M_MMAP_THRESHOLD = -3
_THRESHOLD = 1 << 30  # allocations below 1 GB come from the heap
_done: bool | None = None


def reuse_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds to 1 GB, once per process; False where not glibc/Linux."""
    global _done
    if _done is not None:
        return _done
    _done = False
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and other C libraries have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _THRESHOLD))
    log.info("host memory: freed buffers under %d MB are kept for reuse (glibc mallopt): %s",
             _THRESHOLD >> 20, "set" if _done else "failed")
    return _done
