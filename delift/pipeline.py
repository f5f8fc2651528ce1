"""One experiment, top to bottom: data -> subset selection -> fine-tuning -> generation -> metrics.

Each stage is a plain function call with explicit arguments; Hydra only composes the config
(``delift.cli``). Results land in ``output_dir``: metrics.json, subset.json, predictions.jsonl.
"""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from delift.data.loading import load_splits
from delift.data.prompts import PromptTemplate
from delift.evaluation.generation import generate
from delift.evaluation.metrics import compute_metrics
from delift.kernel.cache import KernelCache
from delift.kernel.provider import KernelProvider
from delift.kernel.utility import KernelSettings, overflowing_targets
from delift.models.loading import ModelSpec
from delift.outputs import write_json, write_jsonl
from delift.provenance import run_record
from delift.selection.base import Selection, SelectionContext, budget_from_fraction
from delift.tracking import make_logger
from delift.training.finetune import FinetuneConfig, finetune

log = logging.getLogger(__name__)


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
            self.seconds[f"time/{name}_s"] = round(time.perf_counter() - start, 3)
            log.info("stage %s done in %.1f s", name, self.seconds[f"time/{name}_s"])


def select_subset(cfg: DictConfig, pool: list, provider: KernelProvider, output_dir: Path) -> Selection:
    """Instantiate the configured selector and pick floor(budget_fraction * |pool|) examples."""
    selector = instantiate(cfg.selector)
    budget = budget_from_fraction(cfg.budget_fraction, len(pool))
    ctx = SelectionContext(pool=pool, seed=cfg.seed, kernels=provider, model_spec=provider.model_spec,
                           template=provider.template, output_dir=output_dir / "selection", finetune=finetune)
    selection = selector.select(ctx, budget)
    log.info("selected %d of %d examples with %s", len(selection.indices), len(pool), selection.selector)
    return selection


def drop_overflowing(pool: list, provider: KernelProvider, template: PromptTemplate,
                     settings: KernelSettings) -> tuple[list, list[str]]:
    """Apply kernel.on_overflow to the pool, the same way for every selector so runs stay comparable."""
    too_long = overflowing_targets(pool, provider.tokenizer, template, settings)
    if too_long and settings.on_overflow == "error":
        raise ValueError(f"{len(too_long)} pool examples have responses longer than kernel.max_length="
                         f"{settings.max_length} (first: {too_long[:5]}); raise it or set kernel.on_overflow=skip")
    if too_long:
        log.warning("kernel.on_overflow=skip: dropped %d of %d pool examples whose response cannot fit: %s",
                    len(too_long), len(pool), too_long[:10])
    drop = set(too_long)
    return [ex for ex in pool if ex.id not in drop], too_long


def evaluate_finetuned(cfg: DictConfig, model_spec: ModelSpec, train_set: list, test_set: list,
                       template: PromptTemplate, output_dir: Path, timer: Timer) -> tuple[dict[str, float], list[dict]]:
    """Fine-tune (QLoRA or LoRA) on ``train_set``, generate on ``test_set``, score the generations."""
    prefix = cfg.evaluation.name
    train_cfg = FinetuneConfig.from_config(cfg.evaluation.train)
    with timer.stage("train"):
        result = finetune(model_spec, train_set, template, train_cfg, output_dir / "finetune", seed=cfg.seed,
                          progress=cfg.progress)
    prompts = [template.render(ex) for ex in test_set]
    references = [ex.output for ex in test_set]
    gen = cfg.evaluation.generation
    with timer.stage("generate"):
        generations = generate(result.model, result.tokenizer, prompts, max_new_tokens=gen.max_new_tokens,
                               batch_size=gen.batch_size, do_sample=gen.do_sample, temperature=gen.temperature,
                               top_p=gen.top_p, seed=cfg.seed, max_prompt_length=train_cfg.max_length - 1,
                               progress=cfg.progress)
    with timer.stage("metrics"):
        per_example, means = compute_metrics(generations, references, list(cfg.metrics.names), cfg.metrics.embedder)
    metrics = {f"{prefix}/{key}": value for key, value in means.items()}
    metrics.update({f"{prefix}/train_loss": result.train_loss, f"{prefix}/train_steps": result.steps})
    rows = [{"id": ex.id, "prompt": prompt, "reference": ref, "generation": out, **scores}
            for ex, prompt, ref, out, scores in zip(test_set, prompts, references, generations, per_example)]
    return metrics, rows


def run_experiment(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run one configured experiment and write its result files into ``output_dir``."""
    from transformers import set_seed

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    if cfg.usecase.name != "instruction_tuning":
        raise NotImplementedError(f"usecase={cfg.usecase.name}: only instruction_tuning is implemented")
    set_seed(cfg.seed)
    resolved = OmegaConf.to_container(cfg, resolve=True)
    tracker = make_logger(OmegaConf.to_container(cfg.logger, resolve=True),
                          defaults={"group": cfg.name, "job_type": cfg.usecase.name})
    tracker.start(resolved, str(output_dir))
    timer = Timer()
    started = time.perf_counter()
    try:
        template = PromptTemplate(**cfg.prompt)
        model_spec = ModelSpec.from_config(cfg.model, cfg.paths.cache_dir)
        settings = KernelSettings.from_config(cfg.kernel)
        record = run_record(cfg, model_spec, resolved)
        write_json(output_dir / "run.json", record)
        for caveat in record["caveats"]:
            log.warning("results caveat: %s", caveat)
        provider = KernelProvider(model_spec, template, settings, KernelCache(Path(cfg.paths.cache_dir) / "kernels"),
                                  progress=cfg.progress)
        with timer.stage("data"):
            splits = load_splits(cfg.data, cfg.seed)
            pool, skipped = drop_overflowing(splits.train, provider, template, settings)
        with timer.stage("selection"):
            selection = select_subset(cfg, pool, provider, output_dir)
            provider.release()
        subset = [pool[i] for i in selection.indices]
        subset_record = {
            "selector": selection.selector, "selector_config": resolved["selector"], "budget": selection.budget,
            "pool_size": len(pool), "kernel_hash": selection.info.get("kernel_key"),
            "selected_ids": selection.ids(pool), "gains": selection.gains, "info": selection.info,
        }
        subset_path = write_json(output_dir / "subset.json", subset_record)
        metrics: dict[str, Any] = {"subset/size": len(subset), "subset/budget": selection.budget,
                                   "pool/size": len(pool), "pool/skipped_overflow": len(skipped),
                                   "test/size": len(splits.test)}
        eval_metrics, rows = evaluate_finetuned(cfg, model_spec, subset, splits.test, template, output_dir, timer)
        metrics.update(eval_metrics)
        write_jsonl(output_dir / "predictions.jsonl", rows)
        metrics.update(timer.seconds)
        metrics["time/total_s"] = round(time.perf_counter() - started, 3)
        write_json(output_dir / "metrics.json", metrics)
        tracker.log_metrics(metrics)
        tracker.log_table(f"{cfg.evaluation.name}/predictions", rows)
        tracker.log_artifact(f"subset-{cfg.name}-{selection.selector}-seed{cfg.seed}", "subset", [str(subset_path)],
                             {"selector": selection.selector, "budget": selection.budget})
        log.info("metrics: %s", {k: v for k, v in metrics.items() if not k.startswith("time/")})
        return metrics
    finally:
        tracker.finish()

