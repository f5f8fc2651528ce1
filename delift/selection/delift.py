"""DELIFT: submodular selection on the model-based utility kernel (METHOD.md sections 1-2).

Kernels (rows = targets, columns = candidates, as everywhere; UF = utility(targets, candidates).uf):

- every objective: s = pp(UF(pool, pool)), s[i, j] = utility of pool item j shown to pool item i;
- FLMI (use case 2): s_Q = pp(UF(Q, pool)).T, pool x Q: s_Q[i, q] = utility of pool item i as the
  in-context example for target-task item q;
- FLCG (use case 3): s_P = pp(UF(pool, P)), pool x P: s_P[i, p] = utility of existing item p as the
  example for new item i.

pp is ``selector.postprocess`` (clip | minmax), applied to s and the auxiliary kernel together
(one scale, delift.kernel.postprocess.postprocess_joint). Each objective computes only the
kernels it lists in :meth:`DeliftSelector.kernel_requests`.

A sparse kernel (``kernel.approximation=knn``: UF as a CSR, unstored entries 0) stays sparse under clip and is
maximised by :mod:`delift.selection.sparse_submodular` (memory n (m + 1), not n^2); minmax maps the unstored
zeros to a non-zero value, so it densifies the kernels (refused past delift.kernel.sparse.DENSE_LIMIT entries).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Sequence

import numpy as np

from delift.config.checks import Problems, choice
from delift.data.records import Example
from delift.kernel.approximations import find as find_approximation
from delift.kernel.postprocess import postprocess_joint
from delift.kernel.settings import KernelRequest, is_sparse, self_pairs
from delift.selection.base import Selection, SelectionContext, Selector
from delift.selection.objectives import (
    OBJECTIVE_CHOICES,
    resolve_objective,
    select_with_objective,
)
from delift.selection.work import KernelWork, ModelWork

KERNEL_ROLES = {"facility_location": ("pool_pool",), "flmi": ("pool_pool", "query_pool"),
                "flcg": ("pool_pool", "pool_existing")}
KERNEL_META = ("key", "cached", "seconds", "shown_truncated", "shown_dropped", "query_truncated")
TRUNCATION_COUNTS = ("shown_truncated", "shown_dropped", "query_truncated")
UTILITY_POSTPROCESS = ("clip", "minmax")
# what an approximate kernel (kernel.approximation learned | knn) records, copied into the selection's info
APPROXIMATION_META = ("approximation", "sample_size", "sample_size_candidates", "sample_fraction", "sample_key",
                      "holdout_examples", "holdout_pairs", "holdout_mse", "holdout_spearman", "holdout_variance",
                      "train_pairs", "train_mse", "diagonal_exact", "neighbors", "exact_pairs", "predicted_pairs",
                      "zero_pairs", "zero_shot_rows", "d_zero_missing", "embedder", "stage_seconds")  # raw utilities can be negative: "none" is not an option here


def _check_ids(kernel, targets: Sequence[Example], candidates: Sequence[Example], role: str) -> None:
    if list(kernel.target_ids) != [e.id for e in targets] or list(kernel.candidate_ids) != [e.id for e in candidates]:
        raise ValueError(f"the {role} kernel's rows/columns do not match the requested targets/candidates")


def approximation_info(kernels: dict) -> dict[str, dict[str, Any]]:
    """Per role, what an approximate kernel recorded (APPROXIMATION_META present in its meta); exact ones are left out."""
    out = {}
    for role, kernel in kernels.items():
        method = kernel.meta.get("approximation")
        if method is not None and find_approximation(method).approximate:
            out[role] = {key: kernel.meta[key] for key in APPROXIMATION_META if key in kernel.meta}
    return out


class DeliftSelector(Selector):
    """Facility location, FLMI or FLCG (``objective: auto`` follows the context) on s = postprocess(UF)."""

    name = "delift"
    label = "DELIFT"
    row_order = 5

    @dataclass
    class Config:
        """``conf/selector/delift.yaml``."""

        _target_: str = "delift.selection.delift.DeliftSelector"
        # auto follows the use case: facility_location (instruction tuning), flmi (task-specific, eta =
        # usecase.eta), flcg (continual, nu = usecase.nu); naming one checks it against the use case
        objective: str = "auto"
        # clip = max(UF, 0) (the paper); minmax = one global min-max (the official code), over s and the
        # query/existing kernel together for flmi/flcg
        postprocess: str = "clip"
        exclude_self_pairs: bool = False  # true drops UF[i, i] (a target shown its own answer)
        optimizer: str = "LazyGreedy"

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "objective", self.objective, OBJECTIVE_CHOICES)
            choice(found, "postprocess", self.postprocess, UTILITY_POSTPROCESS)
            return found

    def kernel_requests(self, ctx: SelectionContext) -> list[tuple[list[Example], list[Example]]]:
        """The (targets, candidates) utility kernels this selection needs, pool x pool first."""
        objective = resolve_objective(self.config.objective, ctx)
        pool = list(ctx.pool)
        if objective == "flmi":
            return [(pool, pool), (list(ctx.query), pool)]
        if objective == "flcg":
            return [(pool, pool), (pool, list(ctx.existing))]
        return [(pool, pool)]

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """Its kernel requests (pool x pool, and Q x pool or pool x P), maximised submodularly: the selection holds
        post-processed copies; a sparse kernel stays sparse under clip."""
        roles = ("pool x pool", "query x pool" if ctx.query is not None else "pool x existing")
        return [KernelWork(f"kernel {role}", KernelRequest(*request), maximised=True,
                           stays_sparse=self.config.postprocess == "clip")
                for role, request in zip(roles, self.kernel_requests(ctx))]

    def similarity(self, ctx: SelectionContext, objective: str) -> tuple[Any, Any, dict]:
        """s (pool x pool) and s_aux (pool x Q, pool x P or None), post-processed together, and what to record;
        sparse (CSR) when the kernels are (``kernel.approximation=knn``) and ``postprocess`` is clip."""
        if ctx.kernels is None:
            raise ValueError("the delift selector needs a kernel provider in the selection context")
        roles = KERNEL_ROLES[objective]
        kernels = {}
        for role, (targets, candidates) in zip(roles, self.kernel_requests(ctx)):
            kernels[role] = ctx.kernels.utility(targets, candidates)
            _check_ids(kernels[role], targets, candidates, role)
        pool_kernel = kernels["pool_pool"]
        if any(is_sparse(k.uf) for k in kernels.values()):
            s, s_aux, means, tail = self._sparse_similarity(pool_kernel, kernels, objective)
        else:
            s, s_aux, means, tail = self._dense_similarity(pool_kernel, kernels, objective)
        info: dict[str, Any] = {
            # the pool x pool kernel at the top level (as recorded before FLMI/FLCG), every kernel under "kernels"
            "kernel_key": pool_kernel.meta.get("key"), "kernel_cached": pool_kernel.meta.get("cached"),
            "kernel_seconds": pool_kernel.meta.get("seconds"),
            "kernel_keys": {role: k.meta.get("key") for role, k in kernels.items()},
            "kernels": {role: {key: k.meta.get(key) for key in KERNEL_META} for role, k in kernels.items()},
            "postprocess": self.config.postprocess, "exclude_self_pairs": self.config.exclude_self_pairs,
            **means, **{key: pool_kernel.meta.get(key) for key in TRUNCATION_COUNTS}, **tail,
        }
        approximated = approximation_info(kernels)
        if approximated:  # only approximate kernels add keys: exact runs record what they did before
            info["approximation"] = approximated["pool_pool"]["approximation"] if "pool_pool" in approximated else None
            info["kernel_approximation"] = approximated
        return s, s_aux, info

    def _dense_similarity(self, pool_kernel, kernels: dict, objective: str) -> tuple[np.ndarray, Any, dict, dict]:
        """s and s_aux post-processed, the UF means to record, and what to record after the truncation counts."""
        uf_aux = None
        if objective == "flmi":
            uf_aux = np.asarray(kernels["query_pool"].uf).T  # Q x pool -> pool x Q
        elif objective == "flcg":
            uf_aux = np.asarray(kernels["pool_existing"].uf)  # already pool x P
        mask = np.equal.outer(np.array(pool_kernel.target_ids), np.array(pool_kernel.candidate_ids))
        s, s_aux = postprocess_joint(pool_kernel.uf, uf_aux, self.config.postprocess, self.config.exclude_self_pairs, mask)
        uf = np.asarray(pool_kernel.uf)
        means = {"uf_diagonal_mean": float(np.mean(uf[mask])) if mask.any() else None,
                 "uf_offdiagonal_mean": float(np.mean(uf[~mask])) if (~mask).any() else None}
        return s, s_aux, means, {} if uf_aux is None else {"uf_aux_mean": float(np.mean(uf_aux))}

    def _sparse_similarity(self, pool_kernel, kernels: dict, objective: str) -> tuple[Any, Any, dict, dict]:
        """A sparse (knn) kernel: clip keeps it sparse; minmax densifies it (refused past DENSE_LIMIT entries)."""
        from delift.kernel.sparse import densify, postprocess_sparse  # scipy: only once a sparse kernel exists

        aux_kernel = kernels.get({"flmi": "query_pool", "flcg": "pool_existing"}.get(objective, ""))
        uf_aux = None if aux_kernel is None else aux_kernel.uf.T if objective == "flmi" else aux_kernel.uf
        if self.config.postprocess != "clip":
            what = f"selector.postprocess={self.config.postprocess}"
            dense = {role: replace(k, uf=densify(k.uf, what)) for role, k in kernels.items()}
            return self._dense_similarity(dense["pool_pool"], dense, objective)
        rows, cols = self_pairs(pool_kernel.target_ids, pool_kernel.candidate_ids)
        uf = pool_kernel.uf
        s, s_aux = postprocess_sparse(uf, uf_aux, "clip", *((rows, cols) if self.config.exclude_self_pairs else ()))
        diagonal = np.asarray(uf[rows, cols], dtype=np.float64).ravel() if len(rows) else np.empty(0)
        off = uf.shape[0] * uf.shape[1] - len(rows)
        means = {"uf_diagonal_mean": float(diagonal.mean()) if len(rows) else None,
                 "uf_offdiagonal_mean": float((uf.sum(dtype=np.float64) - diagonal.sum()) / off) if off else None}
        tail: dict[str, Any] = {"kernel_stored_entries": int(uf.nnz)}
        if uf_aux is not None:
            tail["uf_aux_mean"] = float(uf_aux.sum(dtype=np.float64) / (uf_aux.shape[0] * uf_aux.shape[1]))
        return s, s_aux, means, tail

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        objective = resolve_objective(self.config.objective, ctx)
        s, s_aux, info = self.similarity(ctx, objective)
        return select_with_objective(self.name, objective, s, s_aux, info, ctx, budget, self.config.optimizer)
