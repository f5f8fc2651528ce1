"""One experiment, top to bottom: data -> subset selection -> fine-tuning / ICL -> generation -> metrics.

Each stage is a plain function call with explicit arguments on the typed config
(:class:`delift.config.schema.ExperimentConfig`); Hydra only composes it (``delift.cli``). Every part
named by ``_target_`` (selector, protocols, metrics) is built before any data or model is loaded, so a
bad value fails first. The use case decides which datasets are loaded and which kernels the selector
needs. Results land in ``output_dir``: metrics.json, subset.json, predictions.jsonl, run.json.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, fields, replace
from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import get_class

from delift.config.schema import ExperimentConfig
from delift.data.formatters import SYNTHETIC_FORMAT, get_formatter
from delift.data.prompts import PromptTemplate
from delift.evaluation.metrics import Metric
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.front import Kernels
from delift.kernel.provider import KernelProvider
from delift.kernel.tokens import overflowing_targets
from delift.models.config import ModelConfig
from delift.outputs import write_json, write_jsonl
from delift.protocols import EvalContext, Protocol, Timer
from delift.provenance import data_configs, run_record
from delift.selection.base import Selection, SelectionContext, Selector, budget_from_fraction
from delift.tracking import ExperimentLogger, LaunchInfo, artifact_name, make_logger, run_identity
from delift.training.adapter_cache import trained_adapter
from delift.training.finetune import FinetuneConfig, finetune, training_callbacks
from delift.usecases import UsecaseData, load_usecase_data

log = logging.getLogger(__name__)


def build(config: Any) -> Any:
    """The object a typed ``Config`` describes: ``_target_`` called with the config's other fields."""
    return get_class(config._target_)(**{f.name: getattr(config, f.name) for f in fields(config)
                                         if f.name != "_target_"})


@dataclass
class Parts:
    """Everything a run builds from its config before it touches data or models."""

    selector: Selector
    protocols: list[Protocol]
    metrics: list[Metric]
    model_spec: ModelConfig
    settings: KernelConfig
    template: PromptTemplate


def build_parts(cfg: ExperimentConfig) -> Parts:
    """Build (and so check) every configured part; cheap: nothing is loaded."""
    for key, data in data_configs(cfg).items():
        if data.format != SYNTHETIC_FORMAT:
            try:
                get_formatter(data.format)
            except ValueError as exc:
                raise ValueError(f"{key}.format: {exc}") from None
    return Parts(selector=build(cfg.selector), protocols=[build(block) for block in cfg.evaluation.values()],
                 metrics=[build(cfg.metric_library[name]) for name in cfg.metrics.names],
                 model_spec=cfg.model,
                 settings=cfg.kernel, template=PromptTemplate(**asdict(cfg.prompt)))


def reference_training(parts: Parts) -> FinetuneConfig:
    """The fine-tuning settings a selector's reference adapter uses: the first fine-tuning protocol's
    (what the Full Data baseline trains with), or the defaults when the run only evaluates by ICL."""
    found = [p.train for p in parts.protocols if isinstance(getattr(p, "train", None), FinetuneConfig)]
    return found[0] if found else FinetuneConfig()


def selection_context(cfg: ExperimentConfig, data: UsecaseData, kernels: Kernels,
                      output_dir: Path, parts: Parts) -> SelectionContext:
    """What a selector may use: the pool, Q or P of the use case, the kernels, the model and template."""
    provider = kernels.provider
    train_adapter = partial(trained_adapter, provider.model_spec, template=provider.template,
                            cfg=reference_training(parts), seed=cfg.seed, cache_dir=cfg.paths.cache_dir,
                            output_dir=output_dir / "selection" / "reference", progress=cfg.progress)
    return SelectionContext(pool=data.pool, seed=cfg.seed, kernels=kernels, query=data.query, existing=data.existing,
                            valid=data.valid,
                            eta=cfg.usecase.eta, nu=cfg.usecase.nu, model_spec=provider.model_spec,
                            template=provider.template, progress=cfg.progress, output_dir=output_dir / "selection",
                            cache_dir=Path(cfg.paths.cache_dir), finetune=finetune, train_adapter=train_adapter)


def drop_overflowing(examples: list, provider: KernelProvider, template: PromptTemplate,
                     settings: KernelConfig, what: str = "pool") -> tuple[list, list[str]]:
    """Apply kernel.on_overflow to kernel targets (pool, Q), the same way for every selector."""
    too_long = overflowing_targets(examples, provider.tokenizer, template, settings)
    if too_long and settings.on_overflow == "error":
        raise ValueError(f"{len(too_long)} {what} examples have responses longer than kernel.max_length="
                         f"{settings.max_length} (first: {too_long[:5]}); raise kernel.max_length or set "
                         "kernel.on_overflow=skip")
    if too_long:
        log.warning("kernel.on_overflow=skip: dropped %d of %d %s examples whose response cannot fit: %s",
                    len(too_long), len(examples), what, too_long[:10])
    drop = set(too_long)
    return [ex for ex in examples if ex.id not in drop], too_long


def fill_kernel_shard(selector: Selector, ctx: SelectionContext, kernels: Kernels,
                      output_dir: Path) -> dict[str, Any]:
    """Sharded kernel mode (kernel.num_shards > 1): compute this shard's blocks of every kernel the
    selector needs (:meth:`Selector.kernel_requests`), write shard.json.

    Run every kernel.shard (e.g. a Hydra multirun ``kernel.shard=0,1,...``), then a normal run merges.
    """
    settings = kernels.config
    filled = [kernels.fill(*request) for request in selector.kernel_requests(ctx)]
    metrics: dict[str, Any] = {
        "kernel/shard": settings.shard, "kernel/num_shards": settings.num_shards, "kernel/kernels": len(filled),
        "kernel/shard_blocks_computed": sum(k["blocks_computed"] for k in filled),
        "kernel/shard_blocks_skipped": sum(k["blocks_skipped"] for k in filled),
        "kernel/shard_pairs": sum(k["pairs"] for k in filled),
        "kernel/complete": all(k["complete"] for k in filled), "pool/size": len(ctx.pool)}
    write_json(output_dir / "shard.json", {**metrics, "kernels": filled})
    log.info("kernel shard %d/%d done: %s", settings.shard, settings.num_shards, metrics)
    return metrics


def _why_small(data: UsecaseData, skipped: list[str]) -> str:
    """What emptied the pool, for the budget error (the counts were only warnings before)."""
    causes = [f"{count} dropped by decontamination (decontaminate=true: their prompts occur in a test split)"
              for key, count in data.counts.items() if key == "pool/decontaminated" and count]
    if skipped:
        causes.append(f"{len(skipped)} dropped by kernel.on_overflow=skip")
    return f"; the pool lost {' and '.join(causes)}" if causes else ""


def subset_record(cfg: ExperimentConfig, selection: Selection, pool: list) -> dict[str, Any]:
    return {"selector": selection.selector, "selector_config": asdict(cfg.selector), "usecase": cfg.usecase.name,
            "budget": selection.budget, "pool_size": len(pool), "kernel_hash": selection.info.get("kernel_key"),
            "selected_ids": selection.ids(pool), "gains": selection.gains, "info": selection.info}


def subset_rows(selection: Selection, pool: list) -> list[dict[str, Any]]:
    """The subset as a table: pick order (1 = first pick), id, instruction, input, gain (or score)."""
    return [{"pick": rank, "id": pool[i].id, "instruction": pool[i].instruction, "input": pool[i].input, "gain": gain}
            for rank, (i, gain) in enumerate(zip(selection.indices, selection.gains), start=1)]


def _stage_seconds(timer: Timer, before: dict[str, float]) -> dict[str, float]:
    """The ``time/*`` entries a stage added or changed."""
    return {k: v for k, v in timer.seconds.items() if before.get(k) != v}


def run_experiment(cfg: ExperimentConfig, output_dir: str | Path, launch: LaunchInfo | None = None) -> dict[str, Any]:
    """Run one configured experiment and write its result files into ``output_dir``.

    ``launch`` (from ``delift.cli``: the Hydra overrides, group choices and sweep folder) names the
    W&B run, groups it with its sweep and goes into the logged config; in-process callers may omit it.
    With ``logger=wandb`` each stage's metrics are logged when the stage ends, and a run that raises
    finishes its W&B run with exit code 1 (what was logged so far stays) before the error propagates.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError("run_experiment takes the typed config: delift.config.loader.load_config(cfg) or "
                        "compose_config(overrides)")
    parts = build_parts(cfg)  # every part is checked before any data or model is loaded
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resolved = asdict(cfg)
    identity = run_identity(cfg, parts.selector.name, launch)
    tracker = make_logger(replace(cfg.logger, run_name=identity.name, group=identity.group,
                                  job_type=identity.job_type, tags=list(identity.tags)))
    tracker.start({**resolved, "hydra": launch.as_config()} if launch is not None else resolved, str(output_dir))
    try:
        metrics = _run(cfg, parts, output_dir, resolved, tracker)
    except BaseException as exc:
        tracker.log_summary({"error": f"{type(exc).__name__}: {exc}"[:2000]})
        tracker.finish(exit_code=1)
        raise
    tracker.finish()
    return metrics


def _run(cfg: ExperimentConfig, parts: Parts, output_dir: Path, resolved: dict[str, Any],
         tracker: ExperimentLogger) -> dict[str, Any]:
    from transformers import set_seed

    set_seed(cfg.seed)
    timer = Timer()
    started = time.perf_counter()
    template, settings = parts.template, parts.settings
    record = run_record(cfg, parts.model_spec, resolved)
    write_json(output_dir / "run.json", record)
    for caveat in record["caveats"]:
        log.warning("results caveat: %s", caveat)
    provider = KernelProvider(parts.model_spec, template, settings,
                              KernelCache(Path(cfg.paths.cache_dir) / "kernels"), progress=cfg.progress)
    kernels = Kernels(provider)
    with timer.stage("data"):
        data = load_usecase_data(cfg)
        data.pool, skipped = drop_overflowing(data.pool, provider, template, settings)
        if data.query is not None:
            data.query, skipped_query = drop_overflowing(data.query, provider, template, settings, "query")
            data.counts["query/skipped_overflow"] = len(skipped_query)
            data.counts["query/size"] = len(data.query)
    record["data_sources"] = dict(data.sources)
    write_json(output_dir / "run.json", record)
    data_metrics = {"pool/size": len(data.pool), "pool/skipped_overflow": len(skipped), **data.counts}
    tracker.log_metrics({**data_metrics, **timer.seconds})
    ctx = selection_context(cfg, data, kernels, output_dir, parts)
    if settings.num_shards > 1:  # sharded kernel mode: fill this shard's blocks; no selection or training
        with timer.stage("kernel_shard"):
            shard_metrics = fill_kernel_shard(parts.selector, ctx, kernels, output_dir)
        tracker.log_metrics({**shard_metrics, **timer.seconds})
        return {**shard_metrics, **timer.seconds}
    with timer.stage("selection"):
        budget = budget_from_fraction(cfg.budget_fraction, len(data.pool), _why_small(data, skipped))
        selection = parts.selector.select(ctx, budget)
        log.info("selected %d of %d examples with %s", len(selection.indices), len(data.pool), selection.selector)
        provider.release()
    subset = [data.pool[i] for i in selection.indices]
    subset_path = write_json(output_dir / "subset.json", subset_record(cfg, selection, data.pool))
    metrics: dict[str, Any] = {"subset/size": len(subset), "subset/budget": selection.budget, **data_metrics}
    tracker.log_metrics({"subset/size": len(subset), "subset/budget": selection.budget,
                         "time/selection_s": timer.seconds["time/selection_s"],
                         **{f"selection/{k}": v for k, v in selection.info.items()}})
    tracker.log_table("subset", subset_rows(selection, data.pool))
    tracker.log_artifact(artifact_name("subset", cfg, selection.selector, selection.budget, resolved), "subset",
                         [str(subset_path)], {"selector": selection.selector, "budget": selection.budget,
                                              "budget_fraction": cfg.budget_fraction, "usecase": cfg.usecase.name,
                                              "seed": cfg.seed, "kernel_hash": selection.info.get("kernel_key")})
    train_set = [] if parts.selector.skip_training else data.train_set(subset)
    eval_ctx = EvalContext(parts.model_spec, template, settings.shown_example, parts.metrics, cfg.seed,
                           output_dir, cfg.progress, timer, cache_dir=Path(cfg.paths.cache_dir))
    rows: list[dict] = []
    for protocol in parts.protocols:
        before = dict(timer.seconds)
        loss_curve = partial(tracker.log_series, f"{protocol.name}/train")
        with training_callbacks(loss_curve):  # the fine-tuning loss, per logged step
            found, found_rows = protocol.run(eval_ctx, train_set, data.tests)
        metrics.update(found)
        rows.extend(found_rows)
        tracker.log_metrics({**found, **_stage_seconds(timer, before)})
        tracker.log_table(f"{protocol.name}/predictions", found_rows)
        adapter = output_dir / f"finetune_{protocol.name}" / "adapter"
        if cfg.logger.log_adapter and train_set and adapter.is_dir():
            tracker.log_artifact(artifact_name(f"adapter-{protocol.name}", cfg, selection.selector, selection.budget,
                                               resolved), "model", [str(adapter)],
                                 {"evaluation": protocol.name, "base_model": parts.model_spec.name,
                                  "selector": selection.selector, "budget": selection.budget, "seed": cfg.seed})
    write_jsonl(output_dir / "predictions.jsonl", rows)
    metrics.update(timer.seconds)
    metrics["time/total_s"] = round(time.perf_counter() - started, 3)
    write_json(output_dir / "metrics.json", metrics)
    tracker.log_summary(metrics)
    log.info("metrics: %s", {k: v for k, v in metrics.items() if not k.startswith("time/")})
    return metrics
