"""The evaluation protocols of METHOD.md section 5, run on a chosen training set.

- ``kind: finetune`` (``evaluation=qlora`` or ``lora``): fine-tune on the training set, generate on
  every test split with the same prompt template, score. An empty training set (the Initial
  baseline) generates with the untouched base model.
- ``kind: icl`` (``evaluation=icl``): the base model generates after the ``k`` most similar
  training examples (zero-shot when the training set is empty).

Both can run in one job (``evaluation=[icl,qlora]``); metrics are ``<evaluation>/<metric>`` on the
headline test split and ``<evaluation>/<split>/<metric>`` on the others (``existing`` in use case 3).
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

from omegaconf import DictConfig, OmegaConf

from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.evaluation.generation import generate
from delift.evaluation.icl import icl_prompts, retrieval_text
from delift.evaluation.judge import instruction_text
from delift.evaluation.metrics import compute_metrics
from delift.models.loading import ModelSpec, load_model, load_tokenizer
from delift.outputs import metric_key
from delift.training.finetune import FinetuneConfig, finetune

log = logging.getLogger(__name__)

KINDS = ("finetune", "icl")


class Timer:
    """Wall time per stage, reported as ``time/<stage>_s``."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        log.info("stage %s ...", name)
        try:
            yield
        finally:
            self.seconds[f"time/{name}_s"] = round(self.seconds.get(f"time/{name}_s", 0.0)
                                                    + time.perf_counter() - start, 3)
            log.info("stage %s done in %.1f s", name, self.seconds[f"time/{name}_s"])


def requested_evaluations(cfg: DictConfig) -> list[DictConfig]:
    """The evaluation blocks chosen with ``evaluation=...``, in config order.

    An experiment may pre-set values for a protocol that is not chosen (e.g. ``evaluation.qlora.train``
    while running ``evaluation=icl``); such partial blocks have no ``kind`` and are skipped.
    """
    chosen = []
    for key, block in cfg.evaluation.items():
        if not isinstance(block, DictConfig) or "kind" not in block:
            log.debug("evaluation.%s has no kind (not chosen); skipped", key)
            continue
        if block.kind not in KINDS:
            raise ValueError(f"evaluation.{key}.kind={block.kind!r}: expected one of {KINDS}")
        chosen.append(block)
    if not chosen:
        raise ValueError("no evaluation chosen: set evaluation=qlora, evaluation=icl or evaluation=[icl,qlora]")
    return chosen


def metric_options(cfg: DictConfig) -> dict[str, Any]:
    """Per-metric settings passed to ``compute_metrics`` (the judge's backend and verdict cache)."""
    if "judge" not in list(cfg.metrics.names):
        return {}
    judge = OmegaConf.to_container(cfg.judge, resolve=True)
    judge["cache_dir"] = str(Path(cfg.paths.cache_dir) / "judge")
    judge["progress"] = bool(cfg.progress)
    return {"judge": judge}


def score_generations(cfg: DictConfig, evaluation: str, tests: Mapping[str, Sequence[Example]],
                      prompts: Mapping[str, list[str]], generations: Mapping[str, list[str]],
                      extra: Mapping[str, list[dict]] | None = None) -> tuple[dict[str, float], list[dict]]:
    """Score every split's generations; returns flat metrics and one prediction row per example."""
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    for split, examples in tests.items():
        references = [ex.output for ex in examples]
        per_example, means = compute_metrics(generations[split], references, list(cfg.metrics.names),
                                             cfg.metrics.embedder, prompts=[instruction_text(ex.instruction, ex.input) for ex in examples],
                                             options=metric_options(cfg))
        metrics.update({metric_key(evaluation, split, name): value for name, value in means.items()})
        for index, (ex, scores) in enumerate(zip(examples, per_example)):
            rows.append({"evaluation": evaluation, "split": split or "test", "id": ex.id,
                         "prompt": prompts[split][index], "reference": ex.output,
                         "generation": generations[split][index], **(extra[split][index] if extra else {}),
                         **scores})
    return metrics, rows


def _generate_all(cfg: DictConfig, model: Any, tokenizer: Any, prompts: Mapping[str, list[str]],
                  generation: DictConfig, max_prompt_length: int) -> dict[str, list[str]]:
    return {split: generate(model, tokenizer, texts, max_new_tokens=generation.max_new_tokens,
                            batch_size=generation.batch_size, do_sample=generation.do_sample,
                            temperature=generation.temperature, top_p=generation.top_p, seed=cfg.seed,
                            max_prompt_length=max_prompt_length, progress=cfg.progress)
            for split, texts in prompts.items()}


def evaluate_finetune(cfg: DictConfig, block: DictConfig, model_spec: ModelSpec, train_set: Sequence[Example],
                      tests: Mapping[str, Sequence[Example]], template: PromptTemplate, output_dir: Path,
                      timer: Timer) -> tuple[dict[str, float], list[dict]]:
    """QLoRA / LoRA on ``train_set`` (none when empty: the base model), then generate and score."""
    name = block.name
    train_cfg = FinetuneConfig.from_config(block.train)
    metrics: dict[str, float] = {}
    if train_set:
        with timer.stage(f"{name}_train"):
            result = finetune(model_spec, train_set, template, train_cfg, output_dir / f"finetune_{name}",
                              seed=cfg.seed, progress=cfg.progress)
        model, tokenizer = result.model, result.tokenizer
        metrics.update({f"{name}/train_loss": result.train_loss, f"{name}/train_steps": result.steps,
                        f"{name}/train_size": len(train_set)})
        del result  # it holds the model too: let ``del model`` below free it before scoring
    else:
        log.info("%s: empty training set (Initial baseline): generating with the base model", name)
        model, tokenizer = load_model(model_spec), load_tokenizer(model_spec)
        metrics.update({f"{name}/train_steps": 0, f"{name}/train_size": 0})
    prompts = {split: [template.render(ex) for ex in examples] for split, examples in tests.items()}
    with timer.stage(f"{name}_generate"):
        generations = _generate_all(cfg, model, tokenizer, prompts, block.generation, train_cfg.max_length - 1)
    del model
    with timer.stage(f"{name}_metrics"):
        scored, rows = score_generations(cfg, name, tests, prompts, generations)
    metrics.update(scored)
    return metrics, rows


def evaluate_icl(cfg: DictConfig, block: DictConfig, model_spec: ModelSpec, train_set: Sequence[Example],
                 tests: Mapping[str, Sequence[Example]], template: PromptTemplate, shown_example: str,
                 timer: Timer) -> tuple[dict[str, float], list[dict]]:
    """The base model, prompted with the ``block.k`` nearest training examples, then scored."""
    from delift.models.embeddings import embed, load_sentence_embedder

    name = block.name
    tokenizer = load_tokenizer(model_spec)
    embedder = load_sentence_embedder(str(block.embedder)) if train_set and block.k > 0 else None
    pool_vectors = None if embedder is None else embed([retrieval_text(ex) for ex in train_set], embedder)
    prompts, extra, dropped = {}, {}, 0
    for split, examples in tests.items():
        built = icl_prompts(examples, train_set, int(block.k), embedder, tokenizer, template, shown_example,
                            int(block.max_prompt_length), pool_vectors=pool_vectors)
        prompts[split] = built.prompts
        extra[split] = [{"shown_ids": ids} for ids in built.shown_ids]
        dropped += built.dropped_for_length
    model = load_model(model_spec)
    with timer.stage(f"{name}_generate"):
        generations = _generate_all(cfg, model, tokenizer, prompts, block.generation, int(block.max_prompt_length))
    del model
    with timer.stage(f"{name}_metrics"):
        metrics, rows = score_generations(cfg, name, tests, prompts, generations, extra)
    metrics.update({f"{name}/k": int(block.k) if train_set else 0, f"{name}/shown_dropped_for_length": dropped})
    return metrics, rows


def run_evaluations(cfg: DictConfig, model_spec: ModelSpec, train_set: Sequence[Example],
                    tests: Mapping[str, Sequence[Example]], template: PromptTemplate, shown_example: str,
                    output_dir: Path, timer: Timer) -> tuple[dict[str, float], list[dict]]:
    """Every requested protocol on the same training set and test splits."""
    metrics: dict[str, float] = {}
    rows: list[dict] = []
    for block in requested_evaluations(cfg):
        if block.kind == "icl":
            found, found_rows = evaluate_icl(cfg, block, model_spec, train_set, tests, template, shown_example, timer)
        else:
            found, found_rows = evaluate_finetune(cfg, block, model_spec, train_set, tests, template, output_dir,
                                                  timer)
        metrics.update(found)
        rows.extend(found_rows)
    return metrics, rows
