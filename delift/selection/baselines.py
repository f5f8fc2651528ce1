"""Selectors that need no model: a seeded random sample and the full pool."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delift.selection.base import Selection, SelectionContext, Selector
from delift.selection.work import NO_MODEL_WORK, ModelWork


class RandomSelector(Selector):
    """A seeded uniform sample of k pool items (numpy default_rng(seed))."""

    name = "random"
    label = "Random"
    row_order = 1
    reference_baseline = True

    @dataclass
    class Config:
        _target_: str = "delift.selection.baselines.RandomSelector"
        seed_offset: int = 0  # the sample is drawn with seed + seed_offset

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        return NO_MODEL_WORK

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        rng = np.random.default_rng(ctx.seed + self.config.seed_offset)
        order = rng.permutation(len(ctx.pool))[:budget]
        return Selection([int(i) for i in order], [None] * len(order), self.name, budget)


class FullSelector(Selector):
    """All of the pool, in pool order; the budget is ignored."""

    name = "full"
    label = "Full Data"
    row_order = 6
    budget_independent = True

    @dataclass
    class Config:
        _target_: str = "delift.selection.baselines.FullSelector"

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        return NO_MODEL_WORK

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        n = len(ctx.pool)
        return Selection(list(range(n)), [None] * n, self.name, n, info={"requested_budget": budget})


class InitialSelector(Selector):
    """The Initial baseline: no fine-tuning. An empty selection; the pipeline skips training for it."""

    name = "initial"
    label = "Initial"
    row_order = 0
    skip_training = True
    budget_independent = True

    @dataclass
    class Config:
        _target_: str = "delift.selection.baselines.InitialSelector"

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        return NO_MODEL_WORK

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        return Selection([], [], self.name, 0, info={"requested_budget": budget})
