"""``evaluation=qlora`` / ``lora``: fine-tune on the training set, generate on every test split, score.

An empty training set (the Initial baseline) generates with the untouched base model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from delift.config.schema import GenerationConfig, TrainConfig
from delift.data.records import Example
from delift.models.loading import load_model, load_tokenizer
from delift.protocols.base import EvalContext, Protocol, generate_all, score_generations
from delift.training.adapter_cache import AdapterCache, adapter_key
from delift.training.finetune import finetune

log = logging.getLogger(__name__)


class FinetuneProtocol(Protocol):
    """QLoRA or plain LoRA (``train.method``) on the training set, then greedy generation."""
    label = "QLoRA"
    column_order = 1

    @classmethod
    def column(cls, config: Mapping[str, Any]) -> tuple[int | None, str]:
        """QLoRA's column, or plain LoRA's after it (``train.method=lora``)."""
        return (2, "LoRA") if (config.get("train") or {}).get("method") == "lora" else (cls.column_order, cls.label)

    @dataclass
    class Config:
        _target_: str = "delift.protocols.finetune.FinetuneProtocol"
        name: str = "qlora"  # the block's key (evaluation.<name>); metrics are logged under <name>/...
        train: TrainConfig = field(default_factory=TrainConfig)
        generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self.train = TrainConfig.from_config(self.config.train, prefix=f"evaluation.{self.name}.train")

    def prompt_limit(self) -> int:
        return self.train.max_length - 1  # the training layout's room for a prompt

    def finetune_settings(self) -> TrainConfig:
        return self.train

    def adapter_dir(self, output_dir: Path) -> Path:
        return output_dir / f"finetune_{self.name}" / "adapter"  # finetune() saves to <its folder>/adapter

    def run(self, ctx: EvalContext, train_set: Sequence[Example],
            tests: Mapping[str, Sequence[Example]]) -> tuple[dict[str, Any], list[dict]]:
        name, metrics = self.name, {}
        if train_set:
            with ctx.timer.stage(f"{name}_train"):
                result = finetune(ctx.model_spec, train_set, ctx.template, self.train,
                                  self.adapter_dir(ctx.output_dir).parent, seed=ctx.seed, progress=ctx.progress)
            model, tokenizer = result.model, result.tokenizer
            if ctx.cache_dir is not None:  # a selector's reference model (LoBaSS) may reuse it
                key = adapter_key(ctx.model_spec, train_set, ctx.template, self.train, ctx.seed)
                AdapterCache(ctx.cache_dir).put(key, result.adapter_dir)
            if result.steps < 1:
                raise RuntimeError(f"evaluation.{name}: training ran 0 optimizer steps on {len(train_set)} examples; "
                                   "its scores would be the base model's. Check train.epochs / max_steps")
            metrics.update({f"{name}/train_loss": result.train_loss, f"{name}/train_steps": result.steps,
                            f"{name}/train_size": len(train_set)})
            del result  # it holds the model too: let ``del model`` below free it before scoring
        else:
            log.info("%s: empty training set (Initial baseline): generating with the base model", name)
            model, tokenizer = load_model(ctx.model_spec), load_tokenizer(ctx.model_spec)
            metrics.update({f"{name}/train_steps": 0, f"{name}/train_size": 0})
        prompts = {split: [ctx.template.render(ex) for ex in examples] for split, examples in tests.items()}
        with ctx.timer.stage(f"{name}_generate"):
            generations = generate_all(ctx, model, tokenizer, prompts, self.generation, self.prompt_limit())
        del model
        with ctx.timer.stage(f"{name}_metrics"):
            scored, rows = score_generations(ctx, name, tests, prompts, generations)
        metrics.update(scored)
        return metrics, rows
