"""The contract of a kernel approximation strategy, and what every strategy is given.

A strategy is one module of this package holding a subclass of :class:`Approximation` in a module
attribute ``APPROXIMATION``; its ``name`` is the value of ``kernel.approximation`` that chooses it and
its ``Config`` dataclass (or None) is the ``kernel.<name>`` settings block (a YAML block in
``conf/kernel/default.yaml``, typed and range-checked like every config: give it ``problems()``).

The config schema imports every strategy for its settings block, so a strategy module imports torch
and the engine inside its functions: composing a config stays fast.

Strategies build on the exact provider through :class:`ExactKernels` (what they may call), never on
its class: the provider knows nothing of them, and the front object (:mod:`delift.kernel.front`)
picks one by name.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol, Sequence

import numpy as np

from delift.data.records import Example
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.settings import BaseKernelConfig, UtilityKernel
from delift.kernel.tokens import TokenizedExample

if TYPE_CHECKING:  # the engine loads torch; the config schema imports the strategies for their settings
    from delift.kernel.engine import ScoringSetup

log = logging.getLogger(__name__)


class ExactKernels(Protocol):
    """What a strategy may use of the exact provider (:class:`delift.kernel.provider.KernelProvider`)."""

    config: BaseKernelConfig
    cache: KernelCache
    progress: bool

    def utility(self, targets: Sequence[Example], candidates: Sequence[Example], aggregate: str = ...) -> UtilityKernel:
        ...

    def fill(self, targets: Sequence[Example], candidates: Sequence[Example], aggregate: str = ...) -> dict[str, Any]:
        ...

    def cache_payload(self, targets: Sequence[Example], candidates: Sequence[Example],
                      aggregate: str = ...) -> dict[str, Any]:
        ...

    def tokens(self, examples: Sequence[Example]) -> list[TokenizedExample]:
        ...

    def scoring_setup(self, aggregate: str = ..., on_pairs: Callable[[int], Any] | None = None) -> ScoringSetup:
        ...


@dataclass(frozen=True)
class ApproximationContext:
    """What a strategy works with: the exact provider, the kernel config and the example embedder."""

    provider: ExactKernels
    config: BaseKernelConfig
    embed: Callable[[Sequence[Example]], np.ndarray]  # (n, d) L2-normalised embeddings (kernel.embedder)

    @property
    def settings(self) -> Any:
        """The chosen strategy's own settings block (``kernel.<approximation>``)."""
        return self.config.approximation_settings()

    @property
    def progress(self) -> bool:
        return self.provider.progress

    @property
    def cache_root(self) -> Path:
        return self.provider.cache.root


class KernelPlanner(Protocol):
    """The cost plan's tools a strategy counts its model work with (:class:`delift.plan.kernel.Planner`): each
    returns the plan's ``Work`` (passes, pairs, tokens, ``add``); the strategy never imports the plan."""

    def lengths(self, examples: Sequence[TokenizedExample]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(shown, continuation, scored) token counts of each example."""

    def exact(self, targets: Sequence[TokenizedExample], candidates: Sequence[TokenizedExample], block_size: int,
              num_shards: int = 1, shard: int = 0) -> Any:
        """Every block of this shard of an exact kernel."""

    def zero_shot(self, cont: np.ndarray, scored: np.ndarray) -> Any:
        """Zero-shot sequences of targets with these continuation / scored lengths."""

    def one_shot(self, shown: np.ndarray, cont: np.ndarray, scored: np.ndarray, wanted: np.ndarray) -> Any:
        """One block's wanted one-shot pairs (prefix path and truncated pairs)."""

    def per_sequence(self, lengths: Sequence[int], scored: Sequence[int]) -> Any:
        """Sequences of these lengths on the per-sequence path."""

    def sequence_length(self, shown: int, continuation: int) -> int:
        """Tokens of one sequence after truncation."""

    def empty(self) -> Any:
        """No work yet (to ``add`` to)."""


class Approximation(ABC):
    """How ``kernel.approximation=<name>`` computes a kernel (``utility``) and a shard's part of it (``fill``),
    and what the others ask of it: its cache ``key``, its stored ``layout``, its cost (``plan``,
    ``stored_entries``, ``block_bytes``)."""

    name: ClassVar[str]
    Config: ClassVar[type | None] = None  # the kernel.<name> settings dataclass, or None
    layout: ClassVar[str] = "dense"  # its merged <key>.npz: dense (uf, d_one, d_zero) or csr (delift.kernel.sparse)
    planned_exactly: ClassVar[bool] = True  # the plan's counts are the engine's (False: an estimate)
    uses_embedder: ClassVar[bool] = True  # it embeds examples (kernel.embedder: checked and found by the preflight)
    approximate: ClassVar[bool] = True  # not every entry computed: selection records its meta (APPROXIMATION_META)

    def plan(self, planner: KernelPlanner, config: BaseKernelConfig, targets: Sequence[TokenizedExample],
             candidates: Sequence[TokenizedExample]) -> Any:
        """The model work of this shard of the kernel, counted with ``planner``'s tools (delift-plan)."""
        raise NotImplementedError(f"kernel approximation {self.name!r} ({type(self).__module__}) declares no cost: "
                                  "give it a plan() (Approximation.plan) so delift-plan can count its model work")

    def stored_entries(self, config: BaseKernelConfig, n_targets: int, n_candidates: int) -> int:
        """Entries the kernel holds (here: every pair)."""
        return n_targets * n_candidates

    def block_bytes(self, sizes: Any, config: BaseKernelConfig, n_targets: int, n_candidates: int) -> int | None:
        """Bytes of its intermediate files (``sizes``: the plan's ``FileSizes``), or None: the exact kernel's blocks."""
        return None

    @abstractmethod
    def utility(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str) -> UtilityKernel:
        """The complete kernel, cached."""

    @abstractmethod
    def fill(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str) -> dict[str, Any]:
        """Only this shard's work (``kernel.num_shards`` / ``kernel.shard``); never fails because other
        shards are unfinished. Returns counts with ``key``, ``aggregate``, ``complete``."""

    def key(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
            aggregate: str) -> str:
        """The cache key the kernel is stored under (here: the exact kernel's); computes nothing."""
        return kernel_cache_key(ctx.provider.cache_payload(targets, candidates, aggregate))


class CachedApproximation(Approximation):
    """An approximate kernel cached whole, under kernel_cache_key(exact payload + the approximation's
    identity, seed included): the exact kernel's own key never changes. What was approximated is
    recorded in ``UtilityKernel.meta``, which the DELIFT selector copies into the selection's info."""

    @abstractmethod
    def compute(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str, key: str) -> UtilityKernel:
        """The kernel, computed (``key`` names its cache entry, for strategies that store parts of it)."""

    @abstractmethod
    def fill_missing(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                     aggregate: str, key: str) -> dict[str, Any]:
        """This shard's part, when the whole kernel is not cached yet."""

    @staticmethod
    def payload(ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str) -> dict[str, Any]:
        """The exact kernel's payload plus the approximation's settings: the approximate kernel's key material."""
        return {**ctx.provider.cache_payload(targets, candidates, aggregate),
                "approximation": ctx.config.approximation_identity()}

    def key(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
            aggregate: str) -> str:
        return kernel_cache_key(self.payload(ctx, targets, candidates, aggregate))

    def load(self, cache: KernelCache, key: str) -> UtilityKernel | None:
        """The cached kernel ``<key>.npz`` in this strategy's ``layout``, or None."""
        return cache.load(key, layout=self.layout)

    def store(self, cache: KernelCache, key: str, kernel: UtilityKernel, payload: dict[str, Any]) -> None:
        cache.save(key, kernel, payload)

    def utility(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str) -> UtilityKernel:
        payload = self.payload(ctx, targets, candidates, aggregate)
        key = kernel_cache_key(payload)
        cache = ctx.provider.cache
        kernel = self.load(cache, key)
        if kernel is not None:
            kernel.meta.update(cached=True, key=key)
            return kernel
        started = time.perf_counter()
        kernel = self.compute(ctx, targets, candidates, aggregate, key)
        kernel.meta.update(approximation=self.name, aggregate=aggregate, cached=False,
                           seconds=time.perf_counter() - started,
                           approximation_settings=ctx.config.approximation_identity())
        self.store(cache, key, kernel, payload)
        kernel.meta["key"] = key
        log.info("%s kernel %s (%dx%d) in %.1f s", self.name, key[:12], len(targets), len(candidates),
                 kernel.meta["seconds"])
        return kernel

    def fill(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str) -> dict[str, Any]:
        key = self.key(ctx, targets, candidates, aggregate)
        if ctx.provider.cache.path(key).exists():
            return {"key": key, "aggregate": aggregate, "complete": True, "blocks_computed": 0, "blocks_skipped": 0,
                    "pairs": 0, "tokens": 0, "seconds": 0.0, "approximation": self.name}
        return self.fill_missing(ctx, targets, candidates, aggregate, key)
