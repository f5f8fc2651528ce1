"""The kernels a selector asks for: one front object over the exact provider and the approximation strategies.

``Kernels.utility`` / ``Kernels.fill`` hand the request to the strategy that ``kernel.approximation`` names
(:func:`delift.kernel.approximations.find`: this package's by name, another's by module path); ``exact`` is the provider's
own kernel. Selectors see only this object (``SelectionContext.kernels``).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from delift.config.checks import raise_problems
from delift.data.records import Example
from delift.kernel.approximations import find
from delift.kernel.approximations.base import Approximation, ApproximationContext
from delift.kernel.provider import KernelProvider
from delift.kernel.settings import DEFAULT_AGGREGATE, BaseKernelConfig, UtilityKernel, embed_examples


class Kernels:
    """``utility(targets, candidates[, aggregate])`` and ``fill(...)`` under the configured approximation.

    The kernel config is the provider's (``provider.config``), checked here. ``embed`` (default:
    ``kernel.embedder`` through :func:`~delift.kernel.settings.embed_examples`) gives the approximations
    their (n, d) example embeddings; tests pass their own.
    """

    def __init__(self, provider: KernelProvider, embed: Callable[[Sequence[Example]], np.ndarray] | None = None,
                 strategies: Mapping[str, Approximation] | None = None):
        self.provider = provider
        self.config: BaseKernelConfig = provider.config
        raise_problems(self.config, "kernel")
        if strategies is None:  # this package's strategies, or another package's by module path
            self.strategy = find(self.config.approximation)
        elif self.config.approximation in strategies:
            self.strategy = strategies[self.config.approximation]
        else:  # a config class that lists a strategy not given here
            raise ValueError(f"kernel.approximation={self.config.approximation!r}: expected one of "
                             f"{', '.join(strategies)}")
        self.context = ApproximationContext(provider, self.config,
                                            embed or partial(embed_examples, embedder_name=self.config.embedder))

    def utility(self, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str = DEFAULT_AGGREGATE) -> UtilityKernel:
        """The complete kernel (approximate under ``kernel.approximation``), cached."""
        return self.strategy.utility(self.context, targets, candidates, aggregate)

    def fill(self, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str = DEFAULT_AGGREGATE) -> dict[str, Any]:
        """Only this shard's part of the kernel (``learned``: of its exact sample kernel; ``knn``: its row
        blocks); never fails because other shards are unfinished."""
        return self.strategy.fill(self.context, targets, candidates, aggregate)

    def key(self, targets: Sequence[Example], candidates: Sequence[Example], aggregate: str = DEFAULT_AGGREGATE) -> str:
        """The cache key of that kernel under the configured approximation; computes and loads nothing."""
        return self.strategy.key(self.context, targets, candidates, aggregate)

    def release(self) -> None:
        """Drop the scoring model so training can have the memory."""
        self.provider.release()
