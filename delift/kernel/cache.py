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
from delift.kernel.settings import UtilityKernel

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


class KernelCache:
    """One ``<key>.npz`` per kernel under ``root``, holding the arrays and their metadata."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, target_ids: Sequence[str] | None = None,
             candidate_ids: Sequence[str] | None = None) -> UtilityKernel | None:
        """The cached kernel, or None: absent, unreadable or damaged (a warning names the file), recompute.

        A file that holds another key's kernel (copied over this one), or other rows / columns than
        ``target_ids`` / ``candidate_ids`` when given, is damaged too.
        """
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
        problem = kernel_problem(kernel) or identity_problem(kernel, key, target_ids, candidate_ids)
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
