"""Sparse utility kernels (``kernel.approximation=knn``): UF as a scipy CSR matrix, n (m + 1) entries in float32.

An unstored entry is UF = 0 ("showing it changes nothing"); a stored one may be 0 too. A sparse kernel has
no d_one (its row blocks on disk keep the scored pairs' d_one): :class:`UtilityKernel` holds ``uf`` (CSR),
``d_zero`` and ``d_one = None``. On disk it is ``<key>.npz`` like a dense kernel, with the CSR's arrays
(``uf_data``, ``uf_indices``, ``uf_indptr``, ``uf_shape``) instead of ``uf`` and ``d_one``: read and written by
:class:`delift.kernel.cache.KernelCache` (``read`` / ``write``, either layout), the one kernel-file reader.

Selection reads it as it is (clip keeps it sparse; :mod:`delift.selection.sparse_submodular` maximises on
it); a step that needs the dense matrix calls :func:`densify`, which refuses past ``DENSE_LIMIT`` entries.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

DENSE_LIMIT = 20_000 ** 2  # entries a sparse kernel may be densified to (3.2 GB in float64)


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
