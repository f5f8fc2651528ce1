"""Which submodular objective a selection uses, and running it (shared by DELIFT and DELIFT-SE).

The objective follows the selection context (METHOD.md section 2):

- neither ``ctx.query`` nor ``ctx.existing``: facility location (use case 1, instruction tuning);
- ``ctx.query`` (Q, examples of the target task): FL mutual information, eta = ``ctx.eta`` (use case 2);
- ``ctx.existing`` (P, data already learned): FL conditional gain, nu = ``ctx.nu`` (use case 3).

A selector's ``objective`` config is ``auto`` (follow the context) or one of the three names, which
must then agree with the context.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from delift.kernel.settings import is_sparse
from delift.selection.base import Selection, SelectionContext
from delift.selection.submodular import facility_location_submodlib, guided_submodlib

log = logging.getLogger(__name__)

OBJECTIVES = ("facility_location", "flmi", "flcg")
OBJECTIVE_CHOICES = ("auto",) + OBJECTIVES


def check_objective_name(objective: str) -> str:
    if objective not in OBJECTIVE_CHOICES:
        raise ValueError(f"selector.objective={objective!r}: expected one of {OBJECTIVE_CHOICES}")
    return objective


def context_objective(ctx: SelectionContext) -> str:
    """The objective the context calls for: facility_location, flmi (query set) or flcg (existing data)."""
    has_query, has_existing = ctx.query is not None, ctx.existing is not None
    if has_query and has_existing:
        raise ValueError("the selection context has both a query set (task-specific, FLMI) and existing data "
                         "(continual, FLCG); a selection serves one use case")
    if has_query and len(ctx.query) == 0:
        raise ValueError("the selection context's query set Q is empty: FLMI needs at least one target-task example")
    if has_existing and len(ctx.existing) == 0:
        raise ValueError("the selection context's existing data P is empty: FLCG needs at least one example")
    return "flmi" if has_query else "flcg" if has_existing else "facility_location"


def resolve_objective(configured: str, ctx: SelectionContext) -> str:
    """``configured`` (``auto`` or a name) checked against what the context provides."""
    wanted = context_objective(ctx)
    if check_objective_name(configured) not in ("auto", wanted):
        needs = {"facility_location": "neither a query set nor existing data", "flmi": "a query set (ctx.query)",
                 "flcg": "existing data (ctx.existing)"}[configured]
        raise ValueError(f"selector.objective={configured} needs {needs}, but this use case's context calls for "
                         f"{wanted}; set selector.objective=auto or {wanted}")
    return wanted


def auxiliary_set(objective: str, ctx: SelectionContext) -> list | None:
    """Q for FLMI, P for FLCG, None for facility location."""
    return {"flmi": ctx.query, "flcg": ctx.existing}.get(objective)


def objective_parameters(objective: str, ctx: SelectionContext) -> dict[str, float]:
    """The trade-off parameter the objective uses, as recorded with the selection."""
    return {"flmi": {"eta": float(ctx.eta)}, "flcg": {"nu": float(ctx.nu)}}.get(objective, {})


def run_objective(objective: str, s: Any, s_aux: Any, budget: int, eta: float = 1.0,
                  nu: float = 1.0, optimizer: str = "LazyGreedy", seed: int = 0) -> tuple[list[int], list[float]]:
    """Maximise the objective: s is pool x pool, s_aux pool x Q (FLMI) or pool x P (FLCG). Dense: submodlib;
    sparse s (scipy): :func:`~delift.selection.sparse_submodular.maximize_sparse` (``seed``: its stochastic
    optimizers' sample)."""
    if objective not in OBJECTIVES:
        raise ValueError(f"unknown objective {objective!r}: expected one of {OBJECTIVES}")
    if is_sparse(s):
        from delift.selection.sparse_submodular import maximize_sparse

        return maximize_sparse(objective, s, s_aux, budget, eta, nu, optimizer, seed)
    if objective == "facility_location":
        if s_aux is not None:
            raise ValueError("facility location takes no auxiliary kernel")
        return facility_location_submodlib(s, budget, optimizer)
    if s_aux is None:
        raise ValueError(f"objective {objective} needs its auxiliary kernel (pool x Q or pool x P)")
    return guided_submodlib(objective, s, s_aux, budget, eta if objective == "flmi" else nu, optimizer)


def diagnostics(s: Any, s_aux: Any, gains: list[float]) -> dict[str, Any]:
    """Cheap numbers to record: kernel means, and how many picks still had a positive gain.

    After FLMI saturates (every pool item covered up to its query cap) or FLCG runs out of items
    not already covered by P, every further gain is 0 and the rest of the budget is an arbitrary fill.
    """
    positive = sum(1 for g in gains if g is not None and g > 1e-9)
    if is_sparse(s):  # an unstored entry is 0
        size = s.shape[0] * s.shape[1]
        out: dict[str, Any] = {"s_mean": float(s.sum(dtype=np.float64) / size) if size else None,
                               "positive_gain_picks": positive}
    else:
        out = {"s_mean": float(np.mean(s)) if s.size else None, "positive_gain_picks": positive}
    if is_sparse(s_aux):
        from delift.selection.sparse_submodular import row_max

        out["s_aux_mean"] = float(s_aux.sum(dtype=np.float64) / (s_aux.shape[0] * s_aux.shape[1]))
        out["s_aux_rowmax_mean"] = float(np.mean(row_max(s_aux, s_aux.shape[0], "s_aux")))
    elif s_aux is not None:
        out["s_aux_mean"] = float(np.mean(s_aux))
        out["s_aux_rowmax_mean"] = float(np.mean(np.max(s_aux, axis=1)))
    return out


def select_with_objective(name: str, objective: str, s: Any, s_aux: Any,
                          kernel_info: dict[str, Any], ctx: SelectionContext, budget: int,
                          optimizer: str = "LazyGreedy") -> Selection:
    """Run the objective and record it: objective, eta or nu, the kernel's info, the diagnostics."""
    indices, gains = run_objective(objective, s, s_aux, budget, eta=ctx.eta, nu=ctx.nu, optimizer=optimizer,
                                   seed=ctx.seed)
    info = {"objective": objective, **objective_parameters(objective, ctx), **kernel_info,
            **diagnostics(s, s_aux, gains)}
    aux = auxiliary_set(objective, ctx)
    if aux is not None:
        info["aux_size"] = len(aux)
    if info["positive_gain_picks"] < len(indices):
        log.warning("%s (%s) has zero gain after %d of %d picks: the rest of the budget is an arbitrary fill",
                    name, objective, info["positive_gain_picks"], len(indices))
    return Selection(indices, gains, name, budget, info=info)
