"""Kernels on disk, keyed by a content hash of everything they depend on; writes are atomic."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from delift.fsutil import atomic_write
from delift.kernel.settings import UtilityKernel

log = logging.getLogger(__name__)


def kernel_cache_key(payload: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``payload`` (model identity, data fingerprints, settings...)."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def kernel_problem(kernel: UtilityKernel) -> str | None:
    """Why a kernel read from disk cannot be used (shapes that do not fit its ids, NaN or inf), or None.

    UF must be finite. d_zero may be NaN on exactly ``meta["d_zero_missing"]`` rows (a learned kernel's
    predicted rows, never scored zero-shot), and d_one then on exactly those rows; anything else non-finite
    is damage.
    """
    n, m = len(kernel.target_ids), len(kernel.candidate_ids)
    for name, shape in (("uf", (n, m)), ("d_zero", (n,)), ("d_one", (n, m))):
        array = getattr(kernel, name)
        if array.dtype.kind != "f" or array.shape != shape:
            return (f"{name} has shape {array.shape} and dtype {array.dtype}, expected float of shape {shape} "
                    f"for {n} targets x {m} candidates")
    if not np.all(np.isfinite(kernel.uf)):
        return f"uf holds {int(kernel.uf.size - np.count_nonzero(np.isfinite(kernel.uf)))} non-finite values"
    missing = ~np.isfinite(kernel.d_zero)
    expected = int(kernel.meta.get("d_zero_missing", 0) or 0)
    if int(missing.sum()) != expected or np.isinf(kernel.d_zero).any():
        return f"d_zero holds {int(missing.sum())} non-finite values (NaN or inf), expected {expected} NaN"
    wrong = int(np.count_nonzero(~np.isfinite(kernel.d_one) != missing[:, None]))
    if wrong:
        return (f"d_one holds {wrong} non-finite values (NaN or inf) outside the rows whose d_zero is missing "
                f"(or finite values inside them)")
    return None


class KernelCache:
    """One ``<key>.npz`` per kernel under ``root``, holding the arrays and their metadata."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str) -> UtilityKernel | None:
        """The cached kernel, or None: absent, unreadable or damaged (a warning names the file), recompute."""
        path = self.path(key)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                kernel = UtilityKernel(uf=data["uf"], d_zero=data["d_zero"], d_one=data["d_one"],
                                       target_ids=meta.pop("target_ids"), candidate_ids=meta.pop("candidate_ids"),
                                       meta=meta)
        except Exception as exc:  # a damaged file is a miss: recompute and overwrite it
            log.warning("kernel cache file %s is unreadable (%s: %s); recomputing", path, type(exc).__name__, exc)
            return None
        problem = kernel_problem(kernel)
        if problem is not None:
            log.warning("kernel cache file %s is damaged: %s; recomputing", path, problem)
            return None
        log.info("kernel cache hit: %s", path)
        return kernel

    def save(self, key: str, kernel: UtilityKernel, payload: dict[str, Any]) -> Path:
        """Write to a temporary file in the same folder, then rename: readers never see half a file."""
        self.root.mkdir(parents=True, exist_ok=True)
        meta = dict(kernel.meta, key=key, payload=payload, target_ids=kernel.target_ids,
                    candidate_ids=kernel.candidate_ids)
        atomic_write(self.path(key), lambda handle: np.savez(
            handle, uf=kernel.uf, d_zero=kernel.d_zero, d_one=kernel.d_one,
            meta=np.array(json.dumps(meta, default=str))))
        log.info("kernel cached: %s", self.path(key))
        return self.path(key)
