"""DELIFT (SE): the DELIFT objectives on a sentence-embedding kernel (METHOD.md section 3).

    s[i, j] = (cos(e_i, e_j) + 1) / 2  in [0, 1],   e = the L2-normalised sentence embedding of an
                                                     example's whole text (prompt and response)

with the same objectives as DELIFT (facility location / FLMI / FLCG, chosen by the context) and the
same orientation: s is pool x pool, s_Q[i, q] = sim(pool i, query q) is pool x Q, s_P[i, p] =
sim(pool i, existing p) is pool x P. Cosine is symmetric, so here the orientation only fixes which
set indexes the rows.

The embedded text (``selector.text``):

- ``fields`` (default): instruction, input (when non-empty) and output joined by blank lines, i.e.
  the example's own words without prompt-template boilerplate, which every example would share;
- ``template``: the run's rendered prompt template (instruction and input) followed by the output,
  the exact text the model is trained on.

The kernel is already in [0, 1], so ``selector.postprocess`` defaults to ``none`` (``clip`` is then a
no-op; ``minmax`` is allowed and stretches s and the auxiliary kernel together, as for DELIFT).
The embedder (``selector.embedder``; offline default ``delift.models.embeddings.DEFAULT_EMBEDDER``, the
paper's BAAI/bge-large-en-v1.5) is resolved by delift.models.embeddings and its identity is recorded in
``Selection.info``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from delift.config.checks import Problems, at_least, choice
from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.kernel.postprocess import POSTPROCESS, postprocess_joint
from delift.models.embeddings import DEFAULT_EMBEDDER, embed, embedder_identity, load_sentence_embedder
from delift.selection.base import Selection, SelectionContext, Selector
from delift.selection.objectives import (
    OBJECTIVE_CHOICES,
    auxiliary_set,
    resolve_objective,
    select_with_objective,
)
from delift.selection.work import EmbeddingPass, ModelWork

TEXT_MODES = ("fields", "template")


def example_text(example: Example, mode: str = "fields", template: PromptTemplate | None = None) -> str:
    """The whole example as one string, for embedding (see the module docstring for the two modes)."""
    if mode == "fields":
        return "\n\n".join(part for part in (example.instruction, example.input, example.output) if part.strip())
    if mode == "template":
        return (template or PromptTemplate()).render(example) + example.output
    raise ValueError(f"selector.text={mode!r}: expected one of {TEXT_MODES}")


def semantic_similarity(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(cos + 1) / 2 between L2-normalised embedding rows: rows x cols, clipped to [0, 1] against rounding."""
    rows = np.asarray(rows, dtype=np.float64)
    cols = np.asarray(cols, dtype=np.float64)
    return np.clip((rows @ cols.T + 1.0) / 2.0, 0.0, 1.0)


class DeliftSESelector(Selector):
    """DELIFT's objectives on s = (cos + 1) / 2 of sentence embeddings of the whole example."""

    name = "delift_se"
    label = "DELIFT (SE)"
    row_order = 4

    @dataclass
    class Config:
        """``conf/selector/delift_se.yaml``."""

        _target_: str = "delift.selection.delift_se.DeliftSESelector"
        objective: str = "auto"  # as for delift: facility_location | flmi | flcg, following the use case
        # offline default (packaged); the paper used BAAI/bge-large-en-v1.5 (CLS pooling, normalised)
        embedder: str = DEFAULT_EMBEDDER
        # fields = instruction, input, output joined by blank lines; template = rendered prompt + output
        text: str = "fields"
        # none | clip | minmax: the SE kernel is already in [0, 1]; clip is a no-op, minmax stretches s and s_Q/s_P together
        postprocess: str = "none"
        exclude_self_pairs: bool = False  # true zeroes s[i, i] (always 1 for the same text)
        batch_size: int = 64  # embedder batch size
        device: Optional[str] = None  # null = sentence-transformers' choice (CUDA when available)
        optimizer: str = "LazyGreedy"

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "objective", self.objective, OBJECTIVE_CHOICES)
            choice(found, "text", self.text, TEXT_MODES)
            choice(found, "postprocess", self.postprocess, POSTPROCESS)
            at_least(found, "batch_size", self.batch_size, 1)
            return found

    def kernel_requests(self, ctx: SelectionContext) -> list:
        """No model-based utility kernels: the SE kernel comes from the embedder."""
        return []

    def model_work(self, ctx: SelectionContext) -> list[ModelWork]:
        """No language model: the sentence embedder over the pool, and over Q or P when the objective uses one."""
        aux = auxiliary_set(resolve_objective(self.config.objective, ctx), ctx)
        c = self.config
        return [EmbeddingPass("embed pool", list(ctx.pool), c.embedder, c.batch_size)] + (
            [] if aux is None else [EmbeddingPass("embed auxiliary set", list(aux), c.embedder, c.batch_size)])

    def embeddings(self, examples: Sequence[Example], ctx: SelectionContext) -> np.ndarray:
        """L2-normalised embeddings of the examples' whole texts, one row each."""
        model = load_sentence_embedder(self.config.embedder, self.config.device)
        texts = [example_text(ex, self.config.text, ctx.template) for ex in examples]
        return embed(texts, model, batch_size=self.config.batch_size)

    def similarity(self, ctx: SelectionContext, objective: str) -> tuple[np.ndarray, np.ndarray | None, dict]:
        """s (pool x pool) and s_aux (pool x Q, pool x P or None), post-processed together, and what to record."""
        start = time.perf_counter()
        pool_emb = self.embeddings(ctx.pool, ctx)
        raw = semantic_similarity(pool_emb, pool_emb)
        aux = auxiliary_set(objective, ctx)
        raw_aux = None if aux is None else semantic_similarity(pool_emb, self.embeddings(aux, ctx))
        ids = np.array([ex.id for ex in ctx.pool])
        s, s_aux = postprocess_joint(raw, raw_aux, self.config.postprocess, self.config.exclude_self_pairs, np.equal.outer(ids, ids))
        info: dict[str, Any] = {
            "kernel": "semantic", "embedder": embedder_identity(self.config.embedder), "text": self.config.text,
            "postprocess": self.config.postprocess, "exclude_self_pairs": self.config.exclude_self_pairs,
            "embedding_dim": int(pool_emb.shape[1]), "kernel_seconds": round(time.perf_counter() - start, 3),
        }
        return s, s_aux, info

    def select(self, ctx: SelectionContext, budget: int) -> Selection:
        objective = resolve_objective(self.config.objective, ctx)
        s, s_aux, info = self.similarity(ctx, objective)
        return select_with_objective(self.name, objective, s, s_aux, info, ctx, budget, self.config.optimizer)

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its sentence embedder."""
        return [("selector.embedder", config.embedder)] if config.embedder else []
