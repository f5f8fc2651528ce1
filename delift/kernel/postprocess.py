"""Turning raw utilities into the non-negative similarities that selection needs."""

from __future__ import annotations

import numpy as np

POSTPROCESS = ("clip", "minmax")


def postprocess_kernel(uf: np.ndarray, method: str, exclude_self_pairs: bool = False,
                       self_pair_mask: np.ndarray | None = None) -> np.ndarray:
    """``clip``: s = max(UF, 0) (the paper's formula); ``minmax``: one global (UF - min)/(max - min)
    (the official code). Self-pairs (a target shown its own answer) are set to 0 after scaling when
    ``exclude_self_pairs``; ``self_pair_mask`` marks them (default: the diagonal of a square kernel).
    """
    if method not in POSTPROCESS:
        raise ValueError(f"selector.postprocess={method!r}: expected one of {POSTPROCESS}")
    uf = np.asarray(uf, dtype=np.float64)
    if not np.all(np.isfinite(uf)):
        raise ValueError(f"kernel has {int((~np.isfinite(uf)).sum())} non-finite entries; recompute it")
    mask = None
    if exclude_self_pairs:
        if self_pair_mask is None and uf.shape[0] != uf.shape[1]:
            raise ValueError("exclude_self_pairs on a non-square kernel needs an explicit self_pair_mask")
        mask = self_pair_mask if self_pair_mask is not None else np.eye(*uf.shape, dtype=bool)
    if method == "clip":
        s = np.maximum(uf, 0.0)
    else:
        values = uf[~mask] if mask is not None else uf  # self-pairs excluded from the scale too
        low, high = values.min(), values.max()
        s = (uf - low) / (high - low) if high > low else np.zeros_like(uf)
    if mask is not None:
        s = np.where(mask, 0.0, s)
    return s
