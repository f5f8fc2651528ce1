"""One experiment, top to bottom: data -> subset selection -> fine-tuning / ICL -> generation -> metrics.

Each stage is a plain function call with explicit arguments; Hydra only composes the config
(``delift.cli``). The use case (``usecase``) decides which datasets are loaded and which kernels
the selector needs; the evaluation protocols live in ``delift.protocol``. Results land in
``output_dir``: metrics.json, subset.json, predictions.jsonl, run.json.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from delift.data.prompts import PromptTemplate
from delift.kernel.cache import KernelCache
from delift.kernel.provider import KernelProvider
from delift.kernel.utility import KernelSettings, overflowing_targets
from delift.models.loading import ModelSpec
from delift.outputs import write_json, write_jsonl
from delift.protocol import Timer, requested_evaluations, run_evaluations
from delift.provenance import run_record
from delift.selection.base import Selection, SelectionContext, budget_from_fraction
from delift.tracking import make_logger
from delift.training.finetune import finetune
from delift.usecases import UsecaseData, load_usecase_data

log = logging.getLogger(__name__)


def selection_context(cfg: DictConfig, data: UsecaseData, provider: KernelProvider, output_dir: Path) -> SelectionContext:
    """What a selector may use: the pool, Q or P of the use case, the kernels, the model and template."""
    return SelectionContext(pool=data.pool, seed=cfg.seed, kernels=provider, query=data.query, existing=data.existing,
                            eta=float(cfg.usecase.get("eta", 1.0)), nu=float(cfg.usecase.get("nu", 1.0)),
                            model_spec=provider.model_spec, template=provider.template,
                            output_dir=output_dir / "selection", finetune=finetune)


def select_subset(cfg: DictConfig, ctx: SelectionContext) -> Selection:
    """Instantiate the configured selector and pick floor(budget_fraction * |pool|) examples."""
    selector = instantiate(cfg.selector)
    budget = budget_from_fraction(cfg.budget_fraction, len(ctx.pool))
    selection = selector.select(ctx, budget)
    log.info("selected %d of %d examples with %s", len(selection.indices), len(ctx.pool), selection.selector)
    return selection


def drop_overflowing(examples: list, provider: KernelProvider, template: PromptTemplate,
                     settings: KernelSettings, what: str = "pool") -> tuple[list, list[str]]:
    """Apply kernel.on_overflow to kernel targets (pool, Q), the same way for every selector."""
    too_long = overflowing_targets(examples, provider.tokenizer, template, settings)
    if too_long and settings.on_overflow == "error":
        raise ValueError(f"{len(too_long)} {what} examples have responses longer than kernel.max_length="
                         f"{settings.max_length} (first: {too_long[:5]}); raise it or set kernel.on_overflow=skip")
    if too_long:
        log.warning("kernel.on_overflow=skip: dropped %d of %d %s examples whose response cannot fit: %s",
                    len(too_long), len(examples), what, too_long[:10])
    drop = set(too_long)
    return [ex for ex in examples if ex.id not in drop], too_long


def fill_kernel_shard(cfg: DictConfig, ctx: SelectionContext, provider: KernelProvider,
                      output_dir: Path) -> dict[str, Any]:
    """Sharded kernel mode (kernel.num_shards > 1): compute this shard's blocks of every kernel the
    selector needs (its optional ``kernel_requests(ctx)``), write shard.json.

    Run every kernel.shard (e.g. a Hydra multirun ``kernel.shard=0,1,...``), then a normal run merges.
    """
    selector = instantiate(cfg.selector)
    requests = getattr(selector, "kernel_requests", None)  # selectors without a model kernel have none
    pool = list(ctx.pool)
    pairs = requests(ctx) if requests is not None else []
    settings = provider.settings
    kernels = [provider.fill(targets, candidates) for targets, candidates in pairs]
    metrics: dict[str, Any] = {
        "kernel/shard": settings.shard, "kernel/num_shards": settings.num_shards, "kernel/kernels": len(kernels),
        "kernel/shard_blocks_computed": sum(k["blocks_computed"] for k in kernels),
        "kernel/shard_blocks_skipped": sum(k["blocks_skipped"] for k in kernels),
        "kernel/shard_pairs": sum(k["pairs"] for k in kernels),
        "kernel/complete": all(k["complete"] for k in kernels), "pool/size": len(pool)}
    write_json(output_dir / "shard.json", {**metrics, "kernels": kernels})
    log.info("kernel shard %d/%d done: %s", settings.shard, settings.num_shards, metrics)
    return metrics


def subset_record(cfg: DictConfig, resolved: dict, selection: Selection, pool: list) -> dict[str, Any]:
    return {"selector": selection.selector, "selector_config": resolved["selector"], "usecase": cfg.usecase.name,
            "budget": selection.budget, "pool_size": len(pool), "kernel_hash": selection.info.get("kernel_key"),
            "selected_ids": selection.ids(pool), "gains": selection.gains, "info": selection.info}


def run_experiment(cfg: DictConfig, output_dir: str | Path) -> dict[str, Any]:
    """Run one configured experiment and write its result files into ``output_dir``."""
    from transformers import set_seed

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    set_seed(cfg.seed)
    requested_evaluations(cfg)  # fail on a bad evaluation choice before any work
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
            data = load_usecase_data(cfg)
            data.pool, skipped = drop_overflowing(data.pool, provider, template, settings)
            if data.query is not None:
                data.query, skipped_query = drop_overflowing(data.query, provider, template, settings, "query")
                data.counts["query/skipped_overflow"] = len(skipped_query)
                data.counts["query/size"] = len(data.query)
        record["data_sources"] = dict(data.sources)
        write_json(output_dir / "run.json", record)
        ctx = selection_context(cfg, data, provider, output_dir)
        if settings.num_shards > 1:  # sharded kernel mode: fill this shard's blocks; no selection or training
            with timer.stage("kernel_shard"):
                shard_metrics = fill_kernel_shard(cfg, ctx, provider, output_dir)
            return {**shard_metrics, **timer.seconds}
        with timer.stage("selection"):
            selection = select_subset(cfg, ctx)
            provider.release()
        subset = [data.pool[i] for i in selection.indices]
        subset_path = write_json(output_dir / "subset.json", subset_record(cfg, resolved, selection, data.pool))
        metrics: dict[str, Any] = {"subset/size": len(subset), "subset/budget": selection.budget,
                                   "pool/size": len(data.pool), "pool/skipped_overflow": len(skipped), **data.counts}
        train_set = [] if selection.info.get("no_finetuning") else data.train_set(subset)
        eval_metrics, rows = run_evaluations(cfg, model_spec, train_set, data.tests, template,
                                             settings.shown_example, output_dir, timer)
        metrics.update(eval_metrics)
        write_jsonl(output_dir / "predictions.jsonl", rows)
        metrics.update(timer.seconds)
        metrics["time/total_s"] = round(time.perf_counter() - started, 3)
        write_json(output_dir / "metrics.json", metrics)
        tracker.log_metrics(metrics)
        for evaluation in dict.fromkeys(row["evaluation"] for row in rows):
            tracker.log_table(f"{evaluation}/predictions", [r for r in rows if r["evaluation"] == evaluation])
        tracker.log_artifact(f"subset-{cfg.name}-{selection.selector}-seed{cfg.seed}", "subset", [str(subset_path)],
                             {"selector": selection.selector, "budget": selection.budget})
        log.info("metrics: %s", {k: v for k, v in metrics.items() if not k.startswith("time/")})
        return metrics
    finally:
        tracker.finish()
