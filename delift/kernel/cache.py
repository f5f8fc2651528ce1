"""Kernels on disk, keyed by a content hash of everything they depend on; writes are atomic.

Block writers hold a shared lock on their kernel's ``<key>/.writers.lock`` while a file is being written
(``writing``); ``remove_stale_temporaries`` takes it exclusively, so a temporary file it finds then has
no live writer: it is debris of a killed run (kill -9 between the temporary file and its rename).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from delift.fsutil import atomic_write
from delift.kernel.settings import UtilityKernel, is_sparse

log = logging.getLogger(__name__)

RUN_STARTED = time.time()  # a temporary file last written before this is not this process's
WRITERS_LOCK = ".writers.lock"
TEMPORARY_GLOB = ".*.tmp"  # delift.fsutil.atomic_write's temporary siblings


@contextmanager
def writing(lock: Path) -> Iterator[None]:
    """Hold a shared lock on the file ``lock`` while writing: ``remove_stale_temporaries`` waits for no writer.

    Where the filesystem has no ``flock`` (some cluster mounts), nothing is locked and nothing is ever cleaned.
    """
    lock.parent.mkdir(parents=True, exist_ok=True)
    fd = _open_lock(lock)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
        except (OSError, ValueError) as exc:  # no flock on this mount (or no lock file): nobody can clean either
            log.debug("no lock on %s (%s): writing unlocked", lock, exc)
        yield
    finally:
        if fd >= 0:
            os.close(fd)  # releases the lock; a killed writer's lock goes with its process


def remove_stale_temporaries(folder: Path, lock: Path, started: float = RUN_STARTED) -> list[Path]:
    """Remove the temporary files of killed writers in ``folder``, whose writers hold ``lock``: those last written
    before ``started`` (this run's start), while no writer holds the lock. Nothing is removed when a writer is
    busy or the lock cannot be taken (a later run removes them). Returns the files removed, each named in a
    warning."""
    if not folder.is_dir():
        return []
    old = [path for path in folder.glob(TEMPORARY_GLOB) if _modified(path) < started]
    if not old:
        return []
    fd = _open_lock(lock)
    removed = []
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (OSError, ValueError):  # a live writer (or no lock here): these files may be its
            return []
        for path in old:
            if _modified(path) < started:  # checked again under the lock
                path.unlink(missing_ok=True)
                removed.append(path)
                log.warning("removed %s: the temporary file of a write that never finished (a killed run)", path)
    finally:
        if fd >= 0:
            os.close(fd)
    return removed


def _open_lock(lock: Path) -> int:
    """A descriptor of the lock file (created with the umask's mode), read-only where another user's lock file
    is not writable; -1 where it cannot be opened at all (flock then fails: nothing locked, nothing cleaned)."""
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(lock, flags, 0o666)
        except OSError:
            continue
    return -1


def _modified(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:  # renamed or removed meanwhile
        return float("inf")


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


DENSE, CSR = "dense", "csr"  # the layouts of a kernel file (UtilityKernel.uf an array, or a scipy CSR)


def sparse_kernel_problem(kernel: UtilityKernel) -> str | None:
    """Why a sparse (CSR) kernel read from disk cannot be used, or None."""
    import scipy.sparse as sp

    n, m = len(kernel.target_ids), len(kernel.candidate_ids)
    uf = kernel.uf
    if not sp.isspmatrix_csr(uf) or uf.shape != (n, m) or uf.dtype != np.float32:
        return f"uf is {type(uf).__name__} {getattr(uf, 'shape', None)}, expected a float32 CSR of shape {(n, m)}"
    if uf.indptr.shape != (n + 1,) or uf.indptr[0] != 0 or uf.indptr[-1] != uf.nnz or np.any(np.diff(uf.indptr) < 0):
        return "uf's row pointers are inconsistent"
    if uf.nnz and (uf.indices.min() < 0 or uf.indices.max() >= m):
        return f"uf has column indices outside [0, {m})"
    if not np.all(np.isfinite(uf.data)):
        return f"uf holds {int(np.count_nonzero(~np.isfinite(uf.data)))} non-finite values"
    d_zero = np.asarray(kernel.d_zero)
    if d_zero.shape != (n,) or not np.all(np.isfinite(d_zero)):
        return f"d_zero has shape {d_zero.shape} or non-finite values, expected {n} finite values"
    return None


class KernelCache:
    """One ``<key>.npz`` per kernel under ``root``, holding the arrays and their metadata.

    Two layouts, one reader (:meth:`read`) and one writer (:meth:`write`): dense (arrays ``uf``, ``d_zero``,
    ``d_one``) and CSR (a sparse kernel, :mod:`delift.kernel.sparse`: ``uf_data``, ``uf_indices``, ``uf_indptr``,
    ``uf_shape``, ``d_zero``, no d_one; its meta says ``layout: csr``). An approximation declares which it stores
    (``Approximation.layout``).
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, target_ids: Sequence[str] | None = None,
             candidate_ids: Sequence[str] | None = None, layout: str = DENSE) -> UtilityKernel | None:
        """The cached kernel, or None: absent, unreadable or damaged (a warning names the file), recompute.

        A file that holds another key's kernel (copied over this one), or other rows / columns than
        ``target_ids`` / ``candidate_ids`` when given, or another ``layout``, is damaged too.
        """
        return self.read(self.path(key), key, target_ids, candidate_ids, layout)

    def save(self, key: str, kernel: UtilityKernel, payload: dict[str, Any]) -> Path:
        """Write to a temporary file in the same folder, then rename: readers never see half a file."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self.write(self.path(key), kernel, key, payload)

    @staticmethod
    def read(path: str | os.PathLike, key: str | None = None, target_ids: Sequence[str] | None = None,
             candidate_ids: Sequence[str] | None = None, layout: str | None = None) -> UtilityKernel | None:
        """The kernel file at ``path`` in either layout (``layout``: only that one), or None: absent, unreadable,
        damaged, in another layout or another key's file (a warning names the file; the caller recomputes it)."""
        path = Path(path)
        if not path.exists():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                found = CSR if "uf_indptr" in data.files else DENSE
                if layout is not None and found != layout:
                    log.warning("kernel cache file %s is in the %s layout, not %s; rebuilding it %s", path, found,
                                layout, "sparse" if layout == CSR else layout)
                    return None
                meta = json.loads(str(data["meta"]))
                ids = {"target_ids": meta.pop("target_ids"), "candidate_ids": meta.pop("candidate_ids")}
                if found == CSR:
                    import scipy.sparse as sp

                    uf = sp.csr_matrix((data["uf_data"], data["uf_indices"], data["uf_indptr"]),
                                       shape=tuple(int(x) for x in data["uf_shape"]))
                    kernel = UtilityKernel(uf=uf, d_zero=data["d_zero"], d_one=None, **ids, meta=meta)
                else:
                    kernel = UtilityKernel(uf=data["uf"], d_zero=data["d_zero"], d_one=data["d_one"], **ids, meta=meta)
        except Exception as exc:  # a damaged file is a miss: recompute and overwrite it
            log.warning("kernel cache file %s is unreadable (%s: %s); recomputing", path, type(exc).__name__, exc)
            return None
        problem = sparse_kernel_problem(kernel) if found == CSR else kernel_problem(kernel)
        if problem is None and key is not None:
            problem = identity_problem(kernel, key, target_ids, candidate_ids)
        if problem is not None:
            log.warning("kernel cache file %s is damaged: %s; recomputing", path, problem)
            return None
        log.info("kernel cache hit: %s", path)
        return kernel

    @staticmethod
    def write(path: str | os.PathLike, kernel: UtilityKernel, key: str, payload: dict[str, Any]) -> Path:
        """Write ``kernel`` to ``path`` atomically (CSR when its ``uf`` is sparse): a reader sees the old file or
        the whole new one."""
        path = Path(path)
        meta = dict(kernel.meta, key=key, payload=payload)
        if is_sparse(kernel.uf):
            import scipy.sparse as sp

            uf = sp.csr_matrix(kernel.uf)
            meta.update(layout=CSR, target_ids=kernel.target_ids, candidate_ids=kernel.candidate_ids)
            atomic_write(path, lambda handle: np.savez(
                handle, uf_data=uf.data, uf_indices=uf.indices, uf_indptr=uf.indptr, uf_shape=np.array(uf.shape),
                d_zero=np.asarray(kernel.d_zero, dtype=np.float64), meta=np.array(json.dumps(meta, default=str))))
            log.info("sparse kernel cached: %s (%d stored entries)", path, uf.nnz)
            return path
        meta.update(target_ids=kernel.target_ids, candidate_ids=kernel.candidate_ids)
        atomic_write(path, lambda handle: np.savez(
            handle, uf=kernel.uf, d_zero=kernel.d_zero, d_one=kernel.d_one,
            meta=np.array(json.dumps(meta, default=str))))
        log.info("kernel cached: %s", path)
        return path


def identity_problem(kernel: UtilityKernel, key: str, target_ids: Sequence[str] | None,
                      candidate_ids: Sequence[str] | None) -> str | None:
    """Why a sound kernel file is not the kernel of ``key`` (and of these ids), or None."""
    stored = kernel.meta.get("key")
    if stored is not None and stored != key:
        return f"it holds the kernel of key {stored}, not {key} (a file copied over this one?)"
    for role, wanted, found in (("rows (targets)", target_ids, kernel.target_ids),
                                ("columns (candidates)", candidate_ids, kernel.candidate_ids)):
        if wanted is not None and list(wanted) != list(found):
            differ = next((k for k, (a, b) in enumerate(zip(wanted, found)) if a != b), min(len(wanted), len(found)))
            return (f"its {role} are not the requested ones ({len(found)} stored, {len(wanted)} requested; "
                    f"first difference at position {differ})")
    return None
