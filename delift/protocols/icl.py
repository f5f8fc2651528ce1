"""``evaluation=icl``: the base model generates after the ``k`` most similar training examples.

Zero-shot when the training set is empty (Initial) or ``k = 0``; ``icl/k`` reports the number of
examples actually shown per prompt (mean over test prompts), not the setting.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from delift.config.schema import GenerationConfig, Problems, at_least
from delift.data.records import Example
from delift.evaluation.icl import icl_prompts, retrieval_text
from delift.models.embeddings import DEFAULT_EMBEDDER
from delift.models.loading import load_model, load_tokenizer
from delift.protocols.base import EvalContext, Protocol, generate_all, score_generations


class IclProtocol(Protocol):
    """In-context learning with retrieved examples (cosine of instruction + input embeddings)."""
    label = "ICL"
    column_order = 0

    @dataclass
    class Config:
        _target_: str = "delift.protocols.icl.IclProtocol"
        name: str = "icl"  # the block's key (evaluation.<name>); metrics are logged under <name>/...
        k: int = 5  # examples shown per test prompt (0 = zero-shot)
        embedder: str = DEFAULT_EMBEDDER  # retrieval: cosine of embeddings of instruction + input texts
        max_prompt_length: int = 2048  # tokens; over it the least similar shown examples are dropped first
        # batch 4, not GenerationConfig's 8: what ICL runs have always generated with (conf/evaluation/icl.yaml set it)
        generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(batch_size=4))

        def problems(self) -> Problems:
            found: Problems = {}
            at_least(found, "k", self.k, 0)
            at_least(found, "max_prompt_length", self.max_prompt_length, 8)
            return found

    def shown_examples(self) -> int:
        return self.config.k

    def prompt_limit(self) -> int:
        return self.config.max_prompt_length

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its retrieval embedder, when it shows examples (``k > 0``)."""
        return [(f"evaluation.{config.name}.embedder", config.embedder)] if config.embedder and config.k > 0 else []

    def run(self, ctx: EvalContext, train_set: Sequence[Example],
            tests: Mapping[str, Sequence[Example]]) -> tuple[dict[str, Any], list[dict]]:
        from delift.models.embeddings import embed, load_sentence_embedder

        name = self.name
        tokenizer = load_tokenizer(ctx.model_spec)
        c = self.config
        embedder = load_sentence_embedder(c.embedder) if train_set and c.k > 0 else None
        pool_vectors = None if embedder is None else embed([retrieval_text(ex) for ex in train_set], embedder)
        prompts, extra, dropped = {}, {}, 0
        for split, examples in tests.items():
            built = icl_prompts(examples, train_set, c.k, embedder, tokenizer, ctx.template, ctx.shown_example,
                                self.prompt_limit(), pool_vectors=pool_vectors)
            prompts[split] = built.prompts
            extra[split] = [{"shown_ids": ids} for ids in built.shown_ids]
            dropped += built.dropped_for_length
        model = load_model(ctx.model_spec)
        with ctx.timer.stage(f"{name}_generate"):
            generations = generate_all(ctx, model, tokenizer, prompts, self.generation, self.prompt_limit())
        del model
        with ctx.timer.stage(f"{name}_metrics"):
            metrics, rows = score_generations(ctx, name, tests, prompts, generations, extra)
        shown = [len(row["shown_ids"]) for row in rows]
        metrics.update({f"{name}/k": sum(shown) / len(shown) if shown else 0.0, f"{name}/k_setting": c.k,
                        f"{name}/shown_dropped_for_length": dropped})
        return metrics, rows
