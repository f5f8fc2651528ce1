"""Sparse utility kernels (``kernel.approximation=knn``): UF as a scipy CSR matrix, n (m + 1) entries in float32.

An unstored entry is UF = 0 ("showing it changes nothing"); a stored one may be 0 too. A sparse kernel has
no d_one (its row blocks on disk keep the scored pairs' d_one): :class:`UtilityKernel` holds ``uf`` (CSR),
``d_zero`` and ``d_one = None``. On disk it is ``<key>.npz`` like a dense kernel, with the CSR's arrays
(``uf_data``, ``uf_indices``, ``uf_indptr``, ``uf_shape``) instead of ``uf`` and ``d_one``, written atomically.

Selection reads it as it is (clip keeps it sparse; :mod:`delift.selection.sparse_submodular` maximises on
it); a step that needs the dense matrix calls :func:`densify`, which refuses past ``DENSE_LIMIT`` entries.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from delift.fsutil import atomic_write
from delift.kernel.cache import identity_problem
from delift.kernel.settings import UtilityKernel

log = logging.getLogger(__name__)

DENSE_LIMIT = 20_000 ** 2  # entries a sparse kernel may be densified to (3.2 GB in float64)
LAYOUT = "csr"


def csr_rows(n_cols: int, columns: Sequence[np.ndarray], values: np.ndarray) -> sp.csr_matrix:
    """The float32 CSR whose row i holds ``values`` at the sorted columns ``columns[i]`` (values in row order);
    stored zeros stay stored, so a knn kernel has exactly its scored pairs."""
    counts = np.array([len(c) for c in columns], dtype=np.int64)
    indptr = np.concatenate([[0], np.cumsum(counts)])
    indices = np.concatenate(columns).astype(np.int32) if len(columns) else np.empty(0, np.int32)
    data = np.asarray(values, dtype=np.float32)
    if data.shape != indices.shape:
        raise ValueError(f"{len(data)} values for {len(indices)} stored entries")
    return sp.csr_matrix((data, indices, indptr), shape=(len(columns), n_cols))


def densify(matrix: Any, what: str, limit: int | None = None) -> np.ndarray:
    """``matrix`` as a dense float64 array; a sparse one larger than ``limit`` (default ``DENSE_LIMIT``) entries
    is refused, naming ``what``."""
    if not sp.issparse(matrix):
        return np.asarray(matrix, dtype=np.float64)
    limit = DENSE_LIMIT if limit is None else limit
    rows, cols = matrix.shape
    if rows * cols > limit:
        raise ValueError(f"{what} needs the sparse {rows} x {cols} kernel dense ({rows * cols:,} entries, more than "
                         f"{limit:,}); use a step that reads it sparse (e.g. selector.postprocess=clip)")
    return matrix.astype(np.float64).toarray()


def sparse_kernel_problem(kernel: UtilityKernel) -> str | None:
    """Why a sparse kernel read from disk cannot be used, or None."""
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


def save_sparse_kernel(path: Path, kernel: UtilityKernel, key: str, payload: dict[str, Any]) -> Path:
    """Write ``kernel`` (CSR ``uf``) to ``path`` atomically: a reader sees the old file or the whole new one."""
    uf = sp.csr_matrix(kernel.uf)
    meta = dict(kernel.meta, key=key, payload=payload, layout=LAYOUT, target_ids=kernel.target_ids,
                candidate_ids=kernel.candidate_ids)
    atomic_write(path, lambda handle: np.savez(
        handle, uf_data=uf.data, uf_indices=uf.indices, uf_indptr=uf.indptr, uf_shape=np.array(uf.shape),
        d_zero=np.asarray(kernel.d_zero, dtype=np.float64), meta=np.array(json.dumps(meta, default=str))))
    log.info("sparse kernel cached: %s (%d stored entries)", path, uf.nnz)
    return path


def load_sparse_kernel(path: Path, key: str | None = None) -> UtilityKernel | None:
    """The sparse kernel at ``path``, or None: absent, unreadable, damaged, in the dense layout or another
    key's file (a warning names the file; the caller recomputes it)."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            if "uf_indptr" not in data.files:
                log.warning("kernel cache file %s is in the dense layout, not %s; rebuilding it sparse", path, LAYOUT)
                return None
            meta = json.loads(str(data["meta"]))
            uf = sp.csr_matrix((data["uf_data"], data["uf_indices"], data["uf_indptr"]),
                               shape=tuple(int(x) for x in data["uf_shape"]))
            kernel = UtilityKernel(uf=uf, d_zero=data["d_zero"], d_one=None, target_ids=meta.pop("target_ids"),
                                   candidate_ids=meta.pop("candidate_ids"), meta=meta)
    except Exception as exc:  # a damaged file is a miss: recompute and overwrite it
        log.warning("kernel cache file %s is unreadable (%s: %s); recomputing", path, type(exc).__name__, exc)
        return None
    problem = sparse_kernel_problem(kernel) or (identity_problem(kernel, key, None, None) if key else None)
    if problem is not None:
        log.warning("kernel cache file %s is damaged: %s; recomputing", path, problem)
        return None
    log.info("kernel cache hit: %s", path)
    return kernel


def postprocess_sparse(uf: sp.spmatrix, uf_aux: Any, method: str, self_rows: np.ndarray | None = None,
                       self_cols: np.ndarray | None = None) -> tuple[sp.csr_matrix, Any]:
    """``selector.postprocess=clip`` on a sparse kernel (and its auxiliary kernel, sparse or dense): s = max(UF, 0)
    on the stored entries (an unstored 0 stays 0). Self-pairs (``self_rows``, ``self_cols``) are set to 0 when
    given (``exclude_self_pairs``). minmax maps the unstored zeros to a non-zero value: it needs :func:`densify`."""
    if method != "clip":
        raise ValueError(f"selector.postprocess={method} on a sparse kernel: only clip keeps it sparse")
    s = sp.csr_matrix(uf, copy=True)
    if not np.all(np.isfinite(s.data)):
        raise ValueError(f"kernel has {int(np.count_nonzero(~np.isfinite(s.data)))} non-finite entries; recompute it")
    np.maximum(s.data, 0.0, out=s.data)
    if self_rows is not None and len(self_rows):
        stored = np.asarray(s[self_rows, self_cols]).ravel() != 0
        s[self_rows[stored], self_cols[stored]] = 0.0  # stays stored (no change of sparsity structure)
    if uf_aux is None:
        return s, None
    if sp.issparse(uf_aux):
        aux = sp.csr_matrix(uf_aux, copy=True)
        np.maximum(aux.data, 0.0, out=aux.data)
    else:
        aux = np.maximum(np.asarray(uf_aux, dtype=np.float64), 0.0)
    return s, aux
