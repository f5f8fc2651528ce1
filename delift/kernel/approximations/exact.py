"""``kernel.approximation=exact`` (the default): every entry of the kernel computed by the engine."""

from __future__ import annotations

from typing import Any, Sequence

from delift.data.records import Example
from delift.kernel.approximations.base import Approximation, ApproximationContext
from delift.kernel.settings import EXACT, UtilityKernel


class Exact(Approximation):
    """The exact provider's kernel as it is: cached by blocks, resumable, shardable."""

    name = EXACT
    approximate = False
    uses_embedder = False

    def utility(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
                aggregate: str) -> UtilityKernel:
        return ctx.provider.utility(targets, candidates, aggregate)

    def fill(self, ctx: ApproximationContext, targets: Sequence[Example], candidates: Sequence[Example],
             aggregate: str) -> dict[str, Any]:
        return ctx.provider.fill(targets, candidates, aggregate)

    def plan(self, planner, config, targets, candidates):
        return planner.exact(targets, candidates, config.block_size, config.num_shards, config.shard)


APPROXIMATION = Exact()
