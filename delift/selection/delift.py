"""DELIFT: submodular selection on the model-based utility kernel (METHOD.md sections 1-2)."""

from __future__ import annotations

import logging

import numpy as np

from delift.kernel.postprocess import postprocess_kernel
from delift.selection.base import Selection, SelectionContext, Selector
from delift.selection.submodular import facility_location_submodlib

log = logging.getLogger(__name__)

OBJECTIVES = ("facility_location", "flmi", "flcg")


class DeliftSelector(Selector):
    """Facility location (use case 1) on s = postprocess(UF); FLMI and FLCG arrive with use cases 2-3."""

    name = "delift"

    def __init__(self, objective: str = "facility_location", postprocess: str = "clip",
                 exclude_self_pairs: bool = False, optimizer: str = "LazyGreedy"):
        if objective not in OBJECTIVES:
            raise ValueError(f"selector.objective={objective!r}: expected one of {OBJECTIVES}")
        self.objective = objective
        self.postprocess = postprocess
        self.exclude_self_pairs = exclude_self_pairs
        self.optimizer = optimizer

    def similarity(self, ctx: SelectionContext) -> tuple[np.ndarray, dict]:
        """The pool x pool kernel, post-processed, and what to record about it."""
        if ctx.kernels is None:
            raise ValueError("the delift selector needs a kernel provider in the selection context")
        kernel = ctx.kernels.utility(ctx.pool, ctx.pool)
        mask = np.equal.outer(np.array(kernel.target_ids), np.array(kernel.candidate_ids))
        s = postprocess_kernel(kernel.uf, self.postprocess, self.exclude_self_pairs, mask)
        info = {"kernel_key": kernel.meta.get("key"), "kernel_cached": kernel.meta.get("cached"),
                "kernel_seconds": kernel.meta.get("seconds"), "postprocess": self.postprocess,
                "exclude_self_pairs": self.exclude_self_pairs, "objective": self.objective,
                "uf_diagonal_mean": float(np.mean(kernel.uf[mask])) if mask.any() else None,
                "uf_offdiagonal_mean": float(np.mean(kernel.uf[~mask])),
                **{k: kernel.meta.get(k) for k in ("shown_truncated", "shown_dropped", "query_truncated")}}
        return s, info

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        if self.objective != "facility_location":
            raise NotImplementedError(
                f"selector.objective={self.objective}: FLMI (task-specific) and FLCG (continual) "
                "are not implemented yet; only facility_location (instruction tuning) is")
        s, info = self.similarity(ctx)
        indices, gains = facility_location_submodlib(s, budget, self.optimizer)
        return Selection(indices, gains, self.name, budget, info=info)
