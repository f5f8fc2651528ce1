"""IFD, instruction-following difficulty (Li et al. 2024, "From Quantity to Quality", Cherry LLM).

``IFD(x) = s(A | Q) / s(A)`` with ``s`` the mean answer NLL: conditioned on the prompt (the training
layout) and unconditioned (the answer after ``header`` alone; one EOS when the header is empty).
``form: loss`` (Cherry's code) divides the losses; ``form: ppl`` (Superfiltering) divides the
perplexities ``exp(s)``. Examples with IFD > 1 (the prompt does not help the answer) are dropped and
counted; the top k of the rest are kept, highest first. When fewer than k remain, the budget is
filled from the dropped examples, lowest IFD first (nearest the threshold), and the number is recorded.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.scoring import ExampleScorer
from delift.selection.base import Selection, SelectionContext, Selector, top_k
from delift.selection.work import ModelWork, ScoringPass

FORMS = ("loss", "ppl")


def ifd_scores(conditioned: np.ndarray, unconditioned: np.ndarray, form: str = "loss") -> np.ndarray:
    """IFD per example from the mean answer NLLs with and without the prompt."""
    conditioned, unconditioned = np.asarray(conditioned, np.float64), np.asarray(unconditioned, np.float64)
    if form == "loss":
        return conditioned / unconditioned
    if form == "ppl":
        return np.exp(conditioned - unconditioned)
    raise ValueError(f"selector.form={form!r}: expected one of {FORMS}")


def ifd_order(scores: np.ndarray, budget: int, threshold: float = 1.0) -> tuple[list[int], int, int]:
    """Chosen indices, how many were dropped (IFD > threshold), how many of those filled the budget."""
    keep = np.where(scores <= threshold, scores, np.nan)
    chosen = [i for i in top_k(keep, budget) if not np.isnan(keep[i])]
    dropped = np.flatnonzero(~(scores <= threshold))
    fill = sorted(dropped.tolist(), key=lambda i: (scores[i], i))[:budget - len(chosen)]
    return chosen + fill, len(dropped), len(fill)


class IFDSelector(Selector):
    """Top k by IFD below 1 (see the module docstring)."""

    name = "ifd"
    label = "IFD"
    row_order = None

    @dataclass
    class Config:
        _target_: str = "delift.selection.ifd.IFDSelector"
        form: str = "loss"  # loss: s(A|Q) / s(A) (Cherry's code) | ppl: exp(s(A|Q)) / exp(s(A)) (Superfiltering)
        header: str = "### Response:\n"  # context of the unconditioned answer s(A); "" = one EOS token only
        threshold: float = 1.0  # IFD above it means the prompt does not help the answer: dropped
        pre_experience: bool = False  # Cherry's pre-experienced model: not implemented (true raises NotImplementedError)
        batch_size: int = 8
        max_length: int = 1024  # tokens of prompt + answer (the prompt loses tokens from the left, as in training)

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "form", self.form, FORMS)
            at_least(found, "batch_size", self.batch_size, 1)
            at_least(found, "max_length", self.max_length, 1)
            return found

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        if self.config.pre_experience:
            raise NotImplementedError("selector.pre_experience=true (Cherry's brief pre-experience fine-tuning on a "
                                      "k-means-diverse sample) is not implemented yet; IFD runs on the base model")

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """Two scoring passes over the pool: the response NLL after the prompt, the answer NLL after ``header``."""
        c = self.config
        return [ScoringPass("score response NLL", ctx.pool, "training", c.batch_size, "nll", c.max_length),
                ScoringPass("score answer NLL", ctx.pool, "answer", c.batch_size, "nll", c.max_length, header=c.header)]

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        if ctx.model_spec is None or ctx.template is None:
            raise ValueError("ifd needs the scoring model_spec and template in the selection context")
        scorer = ExampleScorer(ctx.model_spec, ctx.template, ctx.cache_dir, batch_size=self.config.batch_size,
                               max_length=self.config.max_length, progress=ctx.progress)
        conditioned, unconditioned = scorer.response_nll(ctx.pool), scorer.answer_nll(ctx.pool, self.config.header)
        scorer.release()
        scores = ifd_scores(conditioned, unconditioned, self.config.form)
        order, dropped, filled = ifd_order(scores, budget, self.config.threshold)
        info = {"form": self.config.form, "dropped_above_threshold": dropped, "filled_from_dropped": filled,
                "scored": scorer.computed, "cache_hits": scorer.cache_hits,
                "scores": {ex.id: float(s) for ex, s in zip(ctx.pool, scores)}}
        return Selection(order, [float(scores[i]) for i in order], self.name, budget, info=info)
