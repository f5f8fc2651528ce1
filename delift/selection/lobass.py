"""LoBaSS, learnability-based selection ("Gauging Learnability in Supervised Fine-tuning Data", no public code).

Our reimplementation from the paper's description: ``L_ini(x)`` is the mean response NLL under the
initial model, ``L_ref(x)`` the same under a reference model fine-tuned on the whole pool with the
run's fine-tuning settings and seed (exactly what the Full Data baseline trains; the adapter is
cached by pool fingerprint + settings + seed and shared with a Full Data run of the same sweep).
Both losses use the same base weights, with the reference adapter on and off, so quantisation
never enters the difference. The base model is the scoring model (``scorer``, else the run's model), so
with a scorer the reference adapter is the one a Full Data run of ``model=<scorer>`` trains. Scores:
``mode: normalized`` (default) ``(L_ini - L_ref) / L_ini``, ``mode: raw`` ``L_ini - L_ref``; the top k
are kept, highest first, ties by pool order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.data.records import fingerprint
from delift.scoring import ExampleScorer
from delift.selection.base import ScoreSelector, SelectionContext
from delift.selection.work import ModelWork, ReferenceTraining, ScoringPass

MODES = ("normalized", "raw")


def learnability(initial: np.ndarray, reference: np.ndarray, mode: str = "normalized") -> np.ndarray:
    """LoBaSS's score per example from the initial and reference mean NLLs."""
    initial, reference = np.asarray(initial, np.float64), np.asarray(reference, np.float64)
    if mode == "raw":
        return initial - reference
    if mode == "normalized":
        return (initial - reference) / initial
    raise ValueError(f"selector.mode={mode!r}: expected one of {MODES}")


class LoBaSSSelector(ScoreSelector):
    """Top k by learnability (see the module docstring)."""

    name = "lobass"
    label = "LoBaSS"
    row_order = None

    @dataclass
    class Config:
        _target_: str = "delift.selection.lobass.LoBaSSSelector"
        mode: str = "normalized"  # normalized: (L_ini - L_ref) / L_ini | raw: L_ini - L_ref
        batch_size: int = 8
        max_length: int = 1024

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "mode", self.mode, MODES)
            at_least(found, "batch_size", self.batch_size, 1)
            at_least(found, "max_length", self.max_length, 1)
            return found

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """A reference LoRA on the whole pool, then every example's response NLL with the adapter off and on."""
        c, pool = self.config, list(ctx.pool)
        return [ReferenceTraining("train reference (pool)", pool)] + [
            ScoringPass(f"score NLL adapter {state}", pool, "training", c.batch_size, "nll", c.max_length,
                        adapter=f"lobass:{fingerprint(pool)}:{state}") for state in ("off", "on")]

    def scores(self, ctx: SelectionContext) -> np.ndarray:
        if ctx.train_adapter is None or ctx.model_spec is None or ctx.template is None:
            raise ValueError("lobass needs the scoring model, template and a train_adapter in the selection context")
        reference = ctx.train_adapter(list(ctx.pool))
        scorer = ExampleScorer(ctx.model_spec, ctx.template, ctx.cache_dir, batch_size=self.config.batch_size,
                               max_length=self.config.max_length, progress=ctx.progress)
        initial = scorer.response_nll(ctx.pool, adapter=reference, adapter_enabled=False)
        tuned = scorer.response_nll(ctx.pool, adapter=reference)
        scorer.release()
        self.diagnostics = {"mode": self.config.mode, "reference_adapter": str(reference),
                            "mean_initial_nll": float(initial.mean()), "mean_reference_nll": float(tuned.mean()),
                            "scored": scorer.computed, "cache_hits": scorer.cache_hits,
                            "note": "our reimplementation from the paper's description (no public code)"}
        return learnability(initial, tuned, self.config.mode)
