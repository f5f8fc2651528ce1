"""The jobs of a ``delift [-m] <overrides>`` command line, and each one's plan.

A multirun is expanded by Hydra itself: the sweep config is composed in multirun mode, its
``hydra.sweeper.params`` and the command line's overrides are parsed by Hydra's override parser and
crossed by the basic sweeper (:meth:`BasicSweeper.split_arguments`), and each job's config is composed
from its overrides as the launcher would. A budget-independent selector's repeat jobs are recognised by
the run's own rule (:func:`delift.run.sweep.reference_fraction`) and cost nothing.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from delift.config.loader import CONFIG_DIR, load_config, register
from delift.config.schema import ExperimentConfig
from delift.data.records import Example
from delift.kernel.front import Kernels
from delift.kernel.tokens import TokenizedExample, tokenize_examples
from delift.models.config import ModelConfig
from delift.plan.kernel import Schedule, engine_workers
from delift.plan.models import PlanModel, plan_model
from delift.plan.stages import JobInputs, PlanProvider, Stage, job_stages, prompt_template
from delift.plan.timing import CALIBRATION_SIZE
from delift.run.pipeline import build, drop_overflowing_targets
from delift.run.sweep import fractions_of, reference_fraction
from delift.run.usecases import UsecaseData, load_usecase_data
from delift.selection.base import budget_from_fraction

log = logging.getLogger(__name__)
BASIC_SWEEPER = "hydra._internal.core_plugins.basic_sweeper.BasicSweeper"


@dataclass
class JobSpec:
    number: int
    overrides: list[str]
    cfg: ExperimentConfig


@dataclass
class JobPlan:
    """One job's plan: its stages, or why it does no work."""

    spec: JobSpec
    stages: list[Stage] = field(default_factory=list)
    pool: int = 0
    budget: int = 0
    selection_bytes: int = 0
    skipped: str | None = None
    notes: list[str] = field(default_factory=list)
    examples: list[Example] = field(default_factory=list)  # the pool's first examples (a calibration's input)


def expand(overrides: list[str], multirun: bool) -> tuple[list[JobSpec], list[str]]:
    """The jobs ``delift [-m] <overrides>`` runs (numbered as Hydra numbers them) and the sweep's arguments."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode

    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        if not multirun:
            return [JobSpec(0, list(overrides), load_config(compose("config", overrides=list(overrides))))], []
        hydra = GlobalHydra.instance().hydra
        sweep = hydra.compose_config("config", list(overrides), run_mode=RunMode.MULTIRUN,
                                     with_log_configuration=False)
        sweeper = sweep.hydra.sweeper
        if sweeper._target_ != BASIC_SWEEPER:
            raise ValueError(f"hydra.sweeper {sweeper._target_}: the plan expands the basic sweeper's jobs only")
        arguments = [f"{k}={v}" for k, v in (sweeper.params or {}).items()] + list(sweep.hydra.overrides.task)
        parsed = OverridesParser.create(config_loader=hydra.config_loader).parse_overrides(arguments)
        jobs = [job for batch in BasicSweeper.split_arguments(parsed, sweeper.max_batch_size) for job in batch]
        return [JobSpec(n, job, load_config(compose("config", overrides=job))) for n, job in enumerate(jobs)], arguments


def _key(*parts: Any) -> str:
    return repr([asdict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts])


class Planner:
    """Plans jobs one by one; models, data and token ids are loaded once for every job that shares them."""

    def __init__(self, stand_in: ModelConfig | None = None):
        self.stand_in = stand_in  # counts the tokens of a model whose tokenizer is not at hand offline
        self._models: dict[str, PlanModel] = {}
        self._data: dict[str, UsecaseData] = {}
        self._tokens: dict[tuple, TokenizedExample] = {}

    def model(self, spec: ModelConfig) -> PlanModel:
        key = _key(spec)
        if key not in self._models:
            self._models[key] = plan_model(spec, self.stand_in)
        return self._models[key]

    def data(self, cfg: ExperimentConfig) -> UsecaseData:
        key = _key(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets, cfg.decontaminate)
        if key not in self._data:
            self._data[key] = load_usecase_data(cfg.usecase, cfg.data, cfg.seed, cfg.paths.shared_datasets,
                                                cfg.decontaminate)
        data = self._data[key]
        return replace(data, pool=list(data.pool), counts=dict(data.counts),
                       query=None if data.query is None else list(data.query))

    def tokens(self, model: PlanModel, examples: list[Example], cfg: ExperimentConfig) -> list[TokenizedExample]:
        """The examples' kernel token ids (``tokenize_examples``), memoised per model and example."""
        kernel = cfg.kernel
        prefix = (model.name, kernel.shown_example, cfg.prompt.with_input, cfg.prompt.without_input)
        todo = [e for e in examples if (*prefix, e) not in self._tokens]
        fresh = tokenize_examples(todo, model.tokenizer, prompt_template(cfg), kernel)
        self._tokens.update({(*prefix, e): t for e, t in zip(todo, fresh)})
        return [self._tokens[(*prefix, e)] for e in examples]

    def plan(self, spec: JobSpec, fractions: list[float]) -> JobPlan:
        cfg = spec.cfg
        found = JobPlan(spec)
        reference = reference_fraction(cfg, fractions)
        if reference is not None:
            found.skipped = f"repeats budget_fraction={reference:g} (the selector ignores the budget)"
            return found
        scorer, trained = self.model(cfg.scoring_model), self.model(cfg.model)
        found.notes += list(dict.fromkeys(scorer.notes + trained.notes))
        data = self.data(cfg)
        provider = PlanProvider(scorer, prompt_template(cfg), cfg.kernel, cfg.paths.cache_dir)
        skipped = drop_overflowing_targets(data, Kernels(provider))
        if skipped:
            found.notes.append(f"kernel.on_overflow=skip drops {len(skipped)} pool examples")
        found.pool, found.examples = len(data.pool), list(data.pool[:CALIBRATION_SIZE])
        try:
            found.budget = budget_from_fraction(cfg.budget_fraction, len(data.pool))
        except ValueError as exc:
            found.skipped = f"fails: {exc}"
            return found
        selector = build(cfg.selector)
        job = JobInputs(cfg, data, scorer, trained, selector, [build(b) for b in cfg.evaluation.values()],
                        Schedule.of(cfg.kernel, engine_workers(cfg.kernel)), found.budget,
                        lambda model, examples: self.tokens(model, list(examples), cfg))
        try:
            job_stages(job)
        except ValueError as exc:  # what the run would stop with (e.g. LESS without a target set)
            found.skipped = f"fails: {exc}"
            return found
        found.stages, found.selection_bytes = job.stages, job.selection_bytes
        found.notes += job.notes
        return found


def plan_jobs(overrides: list[str], multirun: bool, stand_in: ModelConfig | None = None) -> list[JobPlan]:
    """Every job's plan (a failing job's error stops the plan, naming the job)."""
    specs, arguments = expand(overrides, multirun)
    fractions = fractions_of(arguments)
    planner = Planner(stand_in)
    plans = []
    for spec in specs:
        try:
            plans.append(planner.plan(spec, fractions))
        except Exception as exc:
            raise RuntimeError(f"job {spec.number} ({' '.join(spec.overrides)}): {exc}") from exc
    return plans
