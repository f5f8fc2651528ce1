"""One experiment, top to bottom: data -> subset selection -> fine-tuning / ICL -> generation -> metrics.

Each stage is a plain function call with explicit arguments on the typed config
(:class:`delift.config.schema.ExperimentConfig`); Hydra only composes it (``delift.cli``). Every part
named by ``_target_`` (selector, protocols, metrics) is built, and every model the run loads is found
(:mod:`delift.run.preflight`), before any data or model is loaded, so a bad value or a missing model fails
first. The use case decides which datasets are loaded and which kernels the selector needs. :func:`_run`
only runs the stages and tells the run's listeners (:mod:`delift.run.listeners`) what each produced: they
write the result files into ``output_dir`` (metrics.json, subset.json, predictions.jsonl, run.json) and
report to the experiment tracker.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hydra.utils import get_class

from delift.config.schema import ExperimentConfig
from delift.data.prompts import PromptTemplate
from delift.data.records import generated_format, get_formatter
from delift.evaluation.metrics import Metric
from delift.fsutil import write_json
from delift.kernel.cache import KernelCache
from delift.kernel.config import KernelConfig
from delift.kernel.front import Kernels
from delift.kernel.provider import KernelProvider
from delift.kernel.tokens import overflowing_targets
from delift.models.config import ModelConfig
from delift.protocols import EvalContext, Protocol, Timer
from delift.run.listeners import Listeners, ResultFiles, RunInfo, RunListener, Tracking
from delift.run.preflight import check_models
from delift.run.usecases import UsecaseData, data_configs, load_usecase_data
from delift.selection.base import SelectionContext, Selector, budget_from_fraction
from delift.tracking import LaunchInfo
from delift.training.adapter_cache import trained_adapter
from delift.training.finetune import training_callbacks
from delift.training.settings import TrainConfig

log = logging.getLogger(__name__)


def build(config: Any) -> Any:
    """The object a typed ``Config`` describes: its ``_target_`` class built from it, ``cls(config)``."""
    return get_class(config._target_)(config)


@dataclass
class Parts:
    """Everything a run builds from its config before it touches data or models."""

    selector: Selector
    protocols: list[Protocol]
    metrics: list[Metric]
    model_spec: ModelConfig  # the model the protocols train and generate with (``model``)
    scoring_spec: ModelConfig  # the model selection scores with (``scorer``, else ``model``)
    template: PromptTemplate


def build_parts(cfg: ExperimentConfig) -> Parts:
    """Build (and so check) every configured part; cheap: nothing is loaded."""
    for key, data in data_configs(cfg.data, cfg.usecase).items():
        if generated_format(data.format) is None:
            try:
                get_formatter(data.format)
            except ValueError as exc:
                raise ValueError(f"{key}.format: {exc}") from None
    return Parts(selector=build(cfg.selector), protocols=[build(block) for block in cfg.evaluation.values()],
                 metrics=[build(cfg.metric_library[name]) for name in cfg.metrics.names],
                 model_spec=cfg.model, scoring_spec=cfg.scoring_model,
                 template=PromptTemplate(**asdict(cfg.prompt)))


def reference_training(parts: Parts) -> TrainConfig:
    """The fine-tuning settings a selector's reference adapter uses: the first fine-tuning protocol's
    (:meth:`Protocol.finetune_settings`, what the Full Data baseline trains with), or the defaults when
    the run only evaluates by ICL."""
    found = [settings for p in parts.protocols if (settings := p.finetune_settings()) is not None]
    return found[0] if found else TrainConfig()


def selection_context(cfg: ExperimentConfig, data: UsecaseData, kernels: Kernels, output_dir: Path,
                      parts: Parts) -> SelectionContext:
    """What a selector may use: the pool, Q or P of the use case, the kernels, the scoring model (its
    reference adapters are trained on it too) and the template."""
    train_adapter = partial(trained_adapter, parts.scoring_spec, template=parts.template,
                            cfg=reference_training(parts), seed=cfg.seed, cache_dir=cfg.paths.cache_dir,
                            output_dir=output_dir / "selection" / "reference", progress=cfg.progress)
    return SelectionContext(pool=data.pool, seed=cfg.seed, kernels=kernels, query=data.query, existing=data.existing,
                            valid=data.valid, eta=cfg.usecase.eta, nu=cfg.usecase.nu, model_spec=parts.scoring_spec,
                            template=parts.template, progress=cfg.progress, output_dir=output_dir / "selection",
                            cache_dir=Path(cfg.paths.cache_dir), train_adapter=train_adapter)


# ----------------------------------------------------------------- the kernel: the only code naming its classes
def kernel_provider(cfg: ExperimentConfig, parts: Parts) -> Kernels:
    """The run's utility kernels (``kernel``: exact or approximate) of the scoring model, cached under
    ``paths.cache_dir``; their keys name the scoring model only, so one kernel serves every trained model."""
    return Kernels(KernelProvider(parts.scoring_spec, parts.template, cfg.kernel,
                                  KernelCache(Path(cfg.paths.cache_dir) / "kernels"), progress=cfg.progress))


def drop_overflowing(examples: list, provider: KernelProvider, template: PromptTemplate,
                     settings: KernelConfig, what: str = "pool") -> tuple[list, list[str]]:
    """Apply kernel.on_overflow to kernel targets (pool, Q), the same way for every selector, with the
    kernel's (the scoring model's) tokenizer."""
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


def drop_overflowing_targets(data: UsecaseData, kernels: Kernels) -> list[str]:
    """kernel.on_overflow on the pool and Q (counted); returns the ids dropped from the pool."""
    provider = kernels.provider
    data.pool, skipped = drop_overflowing(data.pool, provider, provider.template, kernels.config)
    if data.query is not None:
        data.query, skipped_query = drop_overflowing(data.query, provider, provider.template, kernels.config,
                                                     "query")
        data.counts["query/skipped_overflow"] = len(skipped_query)
        data.counts["query/size"] = len(data.query)
    return skipped


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


# -------------------------------------------------------------------------------------------- the run
def _why_small(data: UsecaseData, skipped: list[str]) -> str:
    """What emptied the pool, for the budget error (the counts were only warnings before)."""
    causes = [f"{count} dropped by decontamination (decontaminate=true: their prompts occur in a test split)"
              for key, count in data.counts.items() if key == "pool/decontaminated" and count]
    if skipped:
        causes.append(f"{len(skipped)} dropped by kernel.on_overflow=skip")
    return f"; the pool lost {' and '.join(causes)}" if causes else ""


def _stage_seconds(timer: Timer, before: dict[str, float]) -> dict[str, float]:
    """The ``time/*`` entries a stage added or changed."""
    return {k: v for k, v in timer.seconds.items() if before.get(k) != v}


def _evaluate(protocols: list[Protocol], ctx: EvalContext, train_set: list, tests: dict[str, list],
              events: RunListener) -> tuple[dict[str, Any], list[dict]]:
    """Every protocol in turn on the training set; their metrics and prediction rows, in protocol order."""
    metrics: dict[str, Any] = {}
    rows: list[dict] = []
    for protocol in protocols:
        before = dict(ctx.timer.seconds)
        with training_callbacks(partial(events.on_train_step, protocol.name)):  # the loss, per logged step
            found, found_rows = protocol.run(ctx, train_set, tests)
        metrics.update(found)
        rows.extend(found_rows)
        adapter = protocol.adapter_dir(ctx.output_dir)
        events.on_evaluation(protocol, {**found, **_stage_seconds(ctx.timer, before)}, found_rows,
                             adapter if train_set and adapter is not None and adapter.is_dir() else None)
    return metrics, rows


def run_experiment(cfg: ExperimentConfig, output_dir: str | Path, launch: LaunchInfo | None = None,
                   models_checked: bool = False) -> dict[str, Any]:
    """Run one configured experiment and write its result files into ``output_dir``.

    ``launch`` (from ``delift.cli``: the Hydra overrides, group choices and sweep folder) names the
    W&B run, groups it with its sweep and goes into the logged config; in-process callers may omit it.
    With ``logger=wandb`` each stage's metrics are logged when the stage ends. A run that raises still
    writes run.json (with the error) and finishes its W&B run with exit code 1 (what was logged so far
    stays) before the error propagates; subset.json stays when the crash came after selection.
    """
    if not isinstance(cfg, ExperimentConfig):
        raise TypeError("run_experiment takes the typed config: delift.config.loader.load_config(cfg) or "
                        "compose_config(overrides)")
    parts = build_parts(cfg)  # every part is checked before any data or model is loaded
    if not models_checked:  # the entry point checks before its slow imports and says so: one check per run
        check_models(cfg)  # every model the run loads is found (or all missing ones reported) before any output
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    run = RunInfo(cfg=cfg, output_dir=output_dir, resolved=asdict(cfg))
    listeners = Listeners([ResultFiles(run), Tracking.for_run(run, parts.selector.name, launch)])
    try:
        metrics = _run(cfg, parts, output_dir, listeners)
    except BaseException as exc:
        listeners.on_error(exc)
        raise
    listeners.on_end()
    return metrics


def _run(cfg: ExperimentConfig, parts: Parts, output_dir: Path, events: RunListener) -> dict[str, Any]:
    """The stages, each followed by its event: data, then kernel shard or selection, then each protocol."""
    from transformers import set_seed

    events.on_start()
    set_seed(cfg.seed)
    timer = Timer()
    started = time.perf_counter()
    kernels = kernel_provider(cfg, parts)
    with timer.stage("data"):
        data = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets, cfg.decontaminate)
        skipped = drop_overflowing_targets(data, kernels)
    data_metrics = {"pool/size": len(data.pool), "pool/skipped_overflow": len(skipped), **data.counts}
    events.on_data(data, {**data_metrics, **timer.seconds})
    ctx = selection_context(cfg, data, kernels, output_dir, parts)
    if cfg.kernel.num_shards > 1:  # sharded kernel mode: fill this shard's blocks; no selection or training
        with timer.stage("kernel_shard"):
            shard_metrics = fill_kernel_shard(parts.selector, ctx, kernels, output_dir)
        events.on_shard({**shard_metrics, **timer.seconds})
        return {**shard_metrics, **timer.seconds}

    with timer.stage("selection"):
        budget = budget_from_fraction(cfg.budget_fraction, len(data.pool), _why_small(data, skipped))
        selection = parts.selector.select(ctx, budget)
        log.info("selected %d of %d examples with %s", len(selection.indices), len(data.pool), selection.selector)
        kernels.release()
    subset = [data.pool[i] for i in selection.indices]
    events.on_selection(selection, data.pool, {"subset/size": len(subset), "subset/budget": selection.budget,
                                               "time/selection_s": timer.seconds["time/selection_s"],
                                               **{f"selection/{k}": v for k, v in selection.info.items()}})

    train_set = [] if parts.selector.skip_training else data.train_set(subset)
    eval_ctx = EvalContext(parts.model_spec, parts.template, cfg.kernel.shown_example, parts.metrics, cfg.seed,
                           output_dir, cfg.progress, timer, cache_dir=Path(cfg.paths.cache_dir))
    scores, rows = _evaluate(parts.protocols, eval_ctx, train_set, data.tests, events)
    metrics: dict[str, Any] = {"subset/size": len(subset), "subset/budget": selection.budget, **data_metrics, **scores}
    metrics.update(timer.seconds)
    metrics["time/total_s"] = round(time.perf_counter() - started, 3)
    events.on_results(metrics, rows)
    log.info("metrics: %s", {k: v for k, v in metrics.items() if not k.startswith("time/")})
    return metrics
