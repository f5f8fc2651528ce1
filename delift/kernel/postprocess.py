"""Turning raw utilities into the non-negative similarities that selection needs."""

from __future__ import annotations

import numpy as np

POSTPROCESS = ("clip", "minmax", "none")


def _checked(matrix: np.ndarray, what: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{what} has {int((~np.isfinite(matrix)).sum())} non-finite entries; recompute it")
    return matrix


def postprocess_joint(uf: np.ndarray, uf_aux: np.ndarray | None, method: str, exclude_self_pairs: bool = False,
                      self_pair_mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Post-process the pool x pool kernel ``uf`` and an auxiliary kernel ``uf_aux`` with ONE scale.

    ``clip``: s = max(UF, 0) (the paper's formula); ``minmax``: s = (UF - lo) / (hi - lo), where
    lo and hi are the min and max over the entries of both matrices together (the official code's
    global min-max, extended to the pair so FLCG's s - nu * s_P and FLMI's min(s, eta * s_Q) compare
    like with like); ``none``: unchanged (for kernels already in [0, 1], e.g. DELIFT-SE's).

    Self-pairs (a target shown its own answer) exist only in ``uf``: with ``exclude_self_pairs``
    they are set to 0 after scaling and left out of the min-max scale. ``self_pair_mask`` marks
    them (default: the diagonal of a square ``uf``). ``uf_aux`` (pool x Q or pool x P) is never
    masked. Returns (s, s_aux); s_aux is None when ``uf_aux`` is None.
    """
    if method not in POSTPROCESS:
        raise ValueError(f"selector.postprocess={method!r}: expected one of {POSTPROCESS}")
    uf = _checked(uf, "kernel")
    aux = None if uf_aux is None else _checked(uf_aux, "auxiliary kernel")
    mask = None
    if exclude_self_pairs:
        if self_pair_mask is None and uf.shape[0] != uf.shape[1]:
            raise ValueError("exclude_self_pairs on a non-square kernel needs an explicit self_pair_mask")
        mask = np.asarray(self_pair_mask, dtype=bool) if self_pair_mask is not None else np.eye(*uf.shape, dtype=bool)
    if method == "clip":
        s, s_aux = np.maximum(uf, 0.0), None if aux is None else np.maximum(aux, 0.0)
    elif method == "none":
        s, s_aux = uf.copy(), None if aux is None else aux.copy()
    else:
        values = uf[~mask] if mask is not None else uf.ravel()  # self-pairs excluded from the scale too
        if aux is not None:
            values = np.concatenate([values, aux.ravel()])
        low, high = (values.min(), values.max()) if values.size else (0.0, 0.0)
        scale = (lambda m: (m - low) / (high - low)) if high > low else np.zeros_like
        s, s_aux = scale(uf), None if aux is None else scale(aux)
    if mask is not None:
        s = np.where(mask, 0.0, s)
    return s, s_aux


def postprocess_kernel(uf: np.ndarray, method: str, exclude_self_pairs: bool = False,
                       self_pair_mask: np.ndarray | None = None) -> np.ndarray:
    """``clip``: s = max(UF, 0) (the paper's formula); ``minmax``: one global (UF - min)/(max - min)
    (the official code); ``none``: unchanged. Self-pairs (a target shown its own answer) are set to 0
    after scaling when ``exclude_self_pairs``; ``self_pair_mask`` marks them (default: the diagonal
    of a square kernel). A single kernel's case of :func:`postprocess_joint`.
    """
    return postprocess_joint(uf, None, method, exclude_self_pairs, self_pair_mask)[0]
