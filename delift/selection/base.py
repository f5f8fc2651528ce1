"""The selector interface every method implements.

A selector gets a ``SelectionContext`` (the pool, the seed, and lazy access to what expensive
methods need: the utility kernels, model loading, a query set for task-specific tuning, existing
data for continual tuning) and a budget, and returns a ``Selection`` in selection order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from delift.config.checks import raise_problems
from delift.data.records import Example
from delift.selection.work import ModelWork, UndeclaredWork

if TYPE_CHECKING:  # annotations only: selection sits below the pipeline, beside the kernel layer
    from delift.data.prompts import PromptTemplate
    from delift.kernel.front import Kernels
    from delift.models.config import ModelConfig


def budget_from_fraction(fraction: float, n: int, why_small: str = "") -> int:
    """k = floor(fraction * n), at least 1; ``why_small`` is added to the error (e.g. what emptied the pool)."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0.0 < fraction <= 1.0:
        raise ValueError(f"budget_fraction={fraction!r}: expected a number in (0, 1]")
    k = math.floor(fraction * n + 1e-9)
    if k < 1:
        raise ValueError(f"budget_fraction={fraction} of a pool of {n} selects nothing{why_small}")
    return k


@dataclass
class SelectionContext:
    """What a selector may use. Expensive resources are created lazily by whoever owns them.

    Imports only go down, so a selector that needs a reference adapter (LoBaSS) gets it as the
    injected ``train_adapter`` callable rather than importing the training layer.
    """

    pool: Sequence[Example]
    seed: int
    kernels: Kernels | None = None  # utility(targets, candidates) -> UtilityKernel, cached on disk
    query: Sequence[Example] | None = None  # use case 2: examples of the target task
    existing: Sequence[Example] | None = None  # use case 3: data the model was already tuned on
    valid: Sequence[Example] = ()  # the pool dataset's own valid split (data.sizes.valid; may be empty)
    eta: float = 1.0  # use case 2: FLMI magnification, min(max_A s, eta * max_Q s_Q) (usecase.eta)
    nu: float = 1.0  # use case 3: FLCG privacy hardness, max(max_A s - nu * max_P s_P, 0) (usecase.nu)
    model_spec: ModelConfig | None = None  # the model selectors score with: ``scorer``, else the run's model
    template: PromptTemplate | None = None  # the run's prompt template, shared with training and inference
    progress: bool = True  # show progress bars
    output_dir: Path | None = None  # where a selector may write its own artefacts (warm-up adapters...)
    cache_dir: Path | None = None  # paths.cache_dir: shared caches (per-example scores under scores/, adapters...)
    # train_adapter(examples) -> adapter folder: a LoRA of the scoring model trained on ``examples`` with the run's
    # fine-tuning settings and seed (cached by content; shared with the fine-tuning protocol), injected by the pipeline
    train_adapter: Callable[[Sequence[Example]], Path] | None = None
    resources: dict[str, Any] = field(default_factory=dict)  # anything else a selector shares across calls


def target_set(ctx: SelectionContext, selector: str) -> tuple[str, list[Example]]:
    """(name, examples) of the set a target-matching selector (LESS, RDS+) matches the pool against: Q in use case
    2, else the pool dataset's valid split (an error naming ``data.sizes.valid`` when it is empty)."""
    if ctx.query is not None:
        return "query", list(ctx.query)
    if not ctx.valid:
        where = "the new task's" if ctx.existing is not None else "the pool dataset's"
        raise ValueError(f"selector={selector} matches the pool against {where} valid split, which is empty: "
                         "give data.sizes.valid a size (e.g. data.sizes.valid=50)")
    return "valid", list(ctx.valid)


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
    """Chooses ``budget`` examples from ``ctx.pool``.

    The contract: a subclass sets ``name``, declares its settings as a nested ``Config`` dataclass
    (with ``_target_`` naming the class; the YAML in ``conf/selector/`` is checked against it before
    any work), is built as ``cls(config)`` with that ``Config`` instance, implements :meth:`select` and
    declares the model work ``select`` does (:meth:`model_work`: items of :mod:`delift.selection.work`,
    or ``NO_MODEL_WORK``; ``delift-plan`` counts them). It may
    override :meth:`kernel_requests` (the utility kernels it needs, for sharded precomputation) and
    set ``skip_training`` (the Initial baseline: evaluate the base model, train nothing) and
    ``budget_independent`` (its subset ignores the budget: a budget sweep runs it once, see :mod:`delift.run.sweep`).
    """

    name: str = "selector"
    skip_training: bool = False  # True: the run evaluates the untouched base model
    budget_independent: bool = False  # True: the same subset at every budget (Initial, Full)
    reference_baseline: bool = False  # True: the baseline reports compare against (Random: picks, survey line)

    @dataclass
    class Config:
        _target_: str = ""

    def __init__(self, config: Any = None) -> None:
        """``config``: this class's ``Config`` (None: its defaults), checked by its ``problems()``."""
        self.config = self.Config() if config is None else config
        raise_problems(self.config, "selector")

    def kernel_requests(self, ctx: SelectionContext) -> list[tuple[list[Example], list[Example]]]:
        """The (targets, candidates) utility kernels :meth:`select` will ask ``ctx.kernels`` for."""
        return []

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """The model work :meth:`select` will do on ``ctx`` (:mod:`delift.selection.work`); ``NO_MODEL_WORK``
        (an empty list) when it runs no model. Every selector declares it: the default is an error."""
        cls = type(self)
        raise UndeclaredWork(
            f"selector {self.name!r} ({cls.__module__}.{cls.__qualname__}) does not declare the model work its "
            "select does: override model_work(ctx) to return delift.selection.work items (KernelWork, ScoringPass, "
            "ReferenceTraining, GradientPasses, EmbeddingPass), or NO_MODEL_WORK when it runs no model")

    @abstractmethod
    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        """Return the chosen pool indices in order."""

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """What :meth:`select` loads beyond the run's model, scorer and kernel, for the preflight: (config key,
        a ``ModelConfig``) per causal LM, (config key, a name) per sentence embedder. ``config``: this selector's
        ``Config``; ``cache_dir``: where the scoring model is cached. A bad entry is a ValueError naming its key.
        Here: nothing."""
        return []


class ScoreSelector(Selector):
    """Selectors that score every example independently (SelectIT, LESS, LoBaSS...) and keep the top k.

    ``Selection.info`` gets every pool example's score (``scores``: id -> score) and whatever the
    selector put in ``self.diagnostics`` while scoring (one dict per instance: a subclass with its own
    ``__init__`` calls ``super().__init__()`` or sets ``self.diagnostics`` itself).
    """

    diagnostics: dict[str, Any]

    def __init__(self, config: Any = None) -> None:
        super().__init__(config)
        self.diagnostics = {}

    @abstractmethod
    def scores(self, ctx: SelectionContext) -> np.ndarray:
        """One score per pool example; higher is better."""

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        scores = np.asarray(self.scores(ctx), dtype=np.float64)
        if scores.shape != (len(ctx.pool),):
            raise ValueError(f"{self.name}: {scores.shape} scores for a pool of {len(ctx.pool)}")
        order = top_k(scores, budget)
        info = {**self.diagnostics, "scores": {ex.id: float(s) for ex, s in zip(ctx.pool, scores)}}
        return Selection(order, [float(scores[i]) for i in order], self.name, budget, info=info)


def top_k(scores: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` highest scores, highest first, ties by pool order (NaN last)."""
    keyed = np.where(np.isnan(scores), -np.inf, scores)
    return [int(i) for i in np.argsort(-keyed, kind="stable")[:k]]
