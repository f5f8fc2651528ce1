"""The selector interface every method implements.

A selector gets a ``SelectionContext`` (the pool, the seed, and lazy access to what expensive
methods need: a kernel provider, model loading, a query set for task-specific tuning, existing
data for continual tuning) and a budget, and returns a ``Selection`` in selection order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from delift.data.records import Example


def budget_from_fraction(fraction: float, n: int) -> int:
    """k = floor(fraction * n), at least 1."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"budget_fraction={fraction}: expected a number in (0, 1]")
    k = math.floor(fraction * n + 1e-9)
    if k < 1:
        raise ValueError(f"budget_fraction={fraction} of a pool of {n} selects nothing")
    return k


@dataclass
class SelectionContext:
    """What a selector may use. Expensive resources are created lazily by whoever owns them.

    Imports only go down, so a selector that needs a short warm-up fine-tuning run (LESS, LoBaSS)
    gets it as the injected ``finetune`` callable rather than importing the training layer.
    """

    pool: Sequence[Example]
    seed: int
    kernels: Any = None  # a KernelProvider (delift.kernel.provider): utility(targets, candidates)
    query: Sequence[Example] | None = None  # use case 2: examples of the target task
    existing: Sequence[Example] | None = None  # use case 3: data the model was already tuned on
    eta: float = 1.0  # use case 2: FLMI magnification, min(max_A s, eta * max_Q s_Q) (usecase.eta)
    nu: float = 1.0  # use case 3: FLCG privacy hardness, max(max_A s - nu * max_P s_P, 0) (usecase.nu)
    model_spec: Any = None  # the run's ModelSpec, for selectors that score with the model itself
    template: Any = None  # the run's PromptTemplate, shared with training and inference
    output_dir: Path | None = None  # where a selector may write its own artefacts (warm-up adapters...)
    finetune: Callable[..., Any] | None = None  # delift.training.finetune, injected by the pipeline
    resources: dict[str, Any] = field(default_factory=dict)  # anything else a selector shares across calls


@dataclass
class Selection:
    """Selected pool indices in selection order, with the gain or score of each pick."""

    indices: list[int]
    gains: list[float | None]
    selector: str
    budget: int
    info: dict[str, Any] = field(default_factory=dict)

    def ids(self, pool: Sequence[Example]) -> list[str]:
        """The selected examples' ids, in selection order (empty for an empty selection)."""
        return [pool[i].id for i in self.indices]


class Selector(ABC):
    """Chooses ``budget`` examples from ``ctx.pool``."""

    name: str = "selector"

    @abstractmethod
    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        """Return the chosen pool indices in order."""


class ScoreSelector(Selector):
    """Selectors that score every example independently (SelectIT, LESS, LoBaSS...) and keep the top k."""

    @abstractmethod
    def scores(self, ctx: SelectionContext) -> np.ndarray:
        """One score per pool example; higher is better."""

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        scores = np.asarray(self.scores(ctx), dtype=np.float64)
        if scores.shape != (len(ctx.pool),):
            raise ValueError(f"{self.name}: {scores.shape} scores for a pool of {len(ctx.pool)}")
        order = np.argsort(-scores, kind="stable")[:budget]  # highest first, ties by pool order
        return Selection([int(i) for i in order], [float(scores[i]) for i in order], self.name, budget)
