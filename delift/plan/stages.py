"""Every stage of one job and its work: the selector's kernels or per-example scoring, fine-tuning, generation.

The plan asks the parts: the selector for the model work its ``select`` does (:meth:`Selector.model_work`, items of
:mod:`delift.selection.work`; one stage per item, an undeclared selector is an error naming it), each protocol
for its fine-tuning settings and how it generates (:class:`delift.protocols.base.Protocol`). Counted exactly (the run executes these counts): the utility kernels (:mod:`delift.plan.kernel`) and the
per-example scoring passes of IFD, LoBaSS and SelectIT (:mod:`delift.scoring.layout`, ``batch_size`` a pass).
Estimated (marked ``~``): fine-tuning and generation on a subset the selector has not picked yet (the pool's
mean lengths; generation up to ``max_new_tokens``), Nuggets' k-means golden set, knn neighbours, and LESS.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from delift.config.schema import ExperimentConfig
from delift.data.prompts import PromptTemplate
from delift.data.records import Example, fingerprint
from delift.kernel.cache import KernelCache, kernel_cache_key
from delift.kernel.front import Kernels
from delift.kernel.provider import KernelProvider
from delift.kernel.settings import KernelRequest
from delift.kernel.tokens import TokenizedExample
from delift.plan.kernel import FLOAT, Schedule, kernel_bytes, kernel_work, sparse_layout, stored_entries
from delift.plan.models import PlanModel, flops
from delift.plan.work import Work, attended
from delift.protocols.base import Protocol
from delift.run.usecases import UsecaseData
from delift.scoring.layout import answer_items, training_items
from delift.selection.base import SelectionContext, Selector
from delift.selection.work import (
    WORK_KINDS,
    EmbeddingPass,
    GradientPasses,
    KernelWork,
    ReferenceTraining,
    ScoringPass,
    UndeclaredWork,
)

SELECTION_BYTES = 12  # per kernel entry at selection, beyond the kernel: post-processed s (f64) + submodlib's f32
SPARSE_SELECTION_BYTES = 20  # per stored entry of a knn kernel: clipped CSR s (f32 + int32) + the greedy's CSC (f64 + int32)


@dataclass
class Stage:
    """One stage of a job: what runs, on which model, and what the cache shares (equal ``share`` keys run once)."""

    name: str
    model: PlanModel
    work: Work
    exact: bool = True
    share: str | None = None
    flop_factor: float = 1.0  # 2: forward and backward (input gradients; a frozen base has no weight gradients)
    disk: int = 0
    dense: int = 0
    note: str = ""
    kind: str = "scoring"  # the plan's totals: kernels | scoring | fine-tuning | generation

    @property
    def flops(self) -> float:
        return self.flop_factor * flops(self.model.shape, self.work)


@dataclass
class JobInputs:
    """What the stage planners read of one job."""

    cfg: ExperimentConfig
    data: UsecaseData
    scorer: PlanModel  # scores (kernels, per-example scoring)
    trained: PlanModel  # is fine-tuned and generates
    selector: Selector
    protocols: list[Protocol]
    schedule: Schedule
    budget: int
    tokens: Callable[[PlanModel, Sequence[Example]], list[TokenizedExample]]  # kernel tokens (memoised)
    stages: list[Stage] = field(default_factory=list)
    selection_bytes: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def template(self) -> PromptTemplate:
        return prompt_template(self.cfg)

    def context(self) -> SelectionContext:
        d = self.data
        return SelectionContext(pool=d.pool, seed=self.cfg.seed, query=d.query, existing=d.existing, valid=d.valid,
                                eta=self.cfg.usecase.eta, nu=self.cfg.usecase.nu, model_spec=self.scorer.spec,
                                template=self.template, progress=False)


def prompt_template(cfg: ExperimentConfig) -> PromptTemplate:
    return PromptTemplate(**asdict(cfg.prompt))


class PlanProvider(KernelProvider):
    """The exact kernel provider with the plan's tokenizer and model identity: keys and payloads as the run's,
    and no model, ever."""

    def __init__(self, model: PlanModel, template: PromptTemplate, config: Any, cache_dir: str):
        super().__init__(model.spec, template, config, KernelCache(Path(cache_dir) / "kernels"), progress=False)
        self._tokenizer = model.tokenizer
        self.plan_model = model

    def model_identity(self) -> dict[str, Any]:
        return self.plan_model.identity

    @property
    def model(self) -> Any:
        raise RuntimeError("the cost plan loads no model weights")


def share_key(*parts: Any) -> str:
    return kernel_cache_key({"parts": list(parts)})


# ---------------------------------------------------------------------------------------------- kernels
def kernel_stage(job: JobInputs, name: str, request: KernelRequest, exact: bool = True,
                 share: str | None = None) -> Stage:
    """One kernel request, keyed as the kernel cache keys it (``Kernels.key``)."""
    config, targets, candidates = job.cfg.kernel, list(request.targets), list(request.candidates)
    provider = PlanProvider(job.scorer, job.template, config, job.cfg.paths.cache_dir)
    key = Kernels(provider).key(targets, candidates, request.aggregate)
    key += f"#shard{config.shard}/{config.num_shards}" if config.num_shards > 1 else ""
    t_tok = job.tokens(job.scorer, targets)
    work, counted = kernel_work(job.schedule, config, t_tok, t_tok if targets is candidates else
                                job.tokens(job.scorer, candidates))
    disk, dense = kernel_bytes(config, len(targets), len(candidates), sum(len(e.id) for e in targets + candidates))
    cached = ", in the cache now" if provider.cache.path(key).exists() else ""
    return Stage(name, job.scorer, work, exact and counted, share or key, disk=disk, dense=dense,
                 note=f"{len(targets)} x {len(candidates)}, key {key[:12]}{cached}", kind="kernels")


def kernel_work_stage(job: JobInputs, work: KernelWork) -> None:
    """A declared kernel, and what the selection holds of it: the kernel alone, or (``maximised``) the
    post-processed copies a submodular maximisation keeps, dense, sparse (knn under clip) or densified."""
    share = None
    if work.estimate:  # a stand-in request: shared by what the real one depends on
        share = share_key(*work.share[:1], job.scorer.identity, *work.share[1:], job.cfg.kernel.identity())
    stage = kernel_stage(job, work.name, work.request, exact=not work.estimate, share=share)
    job.stages.append(stage)
    if not work.maximised:
        job.selection_bytes += stage.dense
        return
    shape = len(work.request.targets), len(work.request.candidates)
    pairs = shape[0] * shape[1]
    if not sparse_layout(job.cfg.kernel):  # a dense kernel
        job.selection_bytes += stage.dense + SELECTION_BYTES * pairs
    elif work.stays_sparse:
        job.selection_bytes += stage.dense + SPARSE_SELECTION_BYTES * stored_entries(job.cfg.kernel, *shape)
    else:  # densified: a float64 UF, then the dense path's copies
        job.selection_bytes += stage.dense + (FLOAT + SELECTION_BYTES) * pairs


# ------------------------------------------------------------------------------------ per-example scoring
def scoring_stage(job: JobInputs, name: str, model: PlanModel, items: Sequence[Any], batch_size: int, kind: str,
                  prefix: Sequence[int] = (), adapter: str = "") -> Stage:
    """Items through :func:`delift.scoring.passes` (context + scored tokens; a shared prefix run once)."""
    work = Work(sequences=len(items), passes=math.ceil(len(items) / batch_size) + bool(prefix))
    if prefix:
        work.sequence(len(prefix), 0)
    for item in items:
        length = len(prefix) + len(item.context) + len(item.scored)
        work.sequence(length, len(item.scored) or 1, len(prefix))
    share = share_key("scores", kind, model.identity, adapter, list(prefix),
                      [(item.id, item.context, item.scored) for item in items])
    return Stage(name, model, work, share=share)


def scoring_pass_stage(job: JobInputs, work: ScoringPass) -> Stage:
    """A declared scoring pass, its items laid out as :mod:`delift.scoring` lays them out."""
    tok = job.scorer.tokenizer
    ids = lambda text: list(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    prefix: list[int] = []
    if work.layout == "training":
        items: Sequence[Any] = training_items(work.examples, tok, job.template, work.max_length)
    elif work.layout == "answer":
        items = answer_items(work.examples, tok, work.header, work.max_length)
    elif work.layout == "rated":
        items = [_Item(ex.id, tuple(ids(text)), ()) for ex, text in zip(work.examples, work.texts)]
        prefix = ids(work.prefix)
    else:
        raise ValueError(f"scoring pass {work.name!r}: layout {work.layout!r} is not one of training, answer, rated")
    stage = scoring_stage(job, work.name, job.scorer, items, work.batch_size, work.kind, prefix=prefix,
                          adapter=work.adapter)
    stage.note = work.note
    return stage


@dataclass(frozen=True)
class _Item:
    id: str
    context: tuple[int, ...]
    scored: tuple[int, ...]


def reference_training_stage(job: JobInputs, work: ReferenceTraining) -> Stage | None:
    """A reference LoRA of the scorer with the first fine-tuning protocol's settings (None: no protocol trains)."""
    settings = next((p.finetune_settings() for p in job.protocols if p.finetune_settings() is not None), None)
    return None if settings is None else training_stage(job, work.name, job.scorer, work.examples, settings, exact=True)


def gradient_stage(job: JobInputs, work: GradientPasses) -> Stage:
    """Forward and backward passes, estimated from the examples' mean training length."""
    mean = _mean_training(job.scorer, work.examples, job.template, work.max_length)
    return Stage(work.name, job.scorer, mean.scaled(work.count), exact=False, flop_factor=2.0, note=work.note)


# ------------------------------------------------------------------------------------ training, generation
def _mean_training(model: PlanModel, examples: Sequence[Example], template: PromptTemplate, max_length: int) -> Work:
    """One training example's forward work, averaged (the head runs at every position in training)."""
    items = training_items(examples, model.tokenizer, template, max_length)
    lengths = [len(i.context) + len(i.scored) for i in items] or [0]
    mean = float(np.mean(lengths))
    return Work(sequences=1, tokens=round(mean), context=round(np.mean([attended(0, n) for n in lengths])),
                scored=round(mean))


def training_stage(job: JobInputs, name: str, model: PlanModel, examples: Sequence[Example], settings: Any,
                   exact: bool, count: int | None = None) -> Stage:
    """Fine-tuning ``count`` examples (default: ``examples``, whose mean lengths stand for them) for the
    configured epochs, capped by ``max_steps``."""
    count = len(examples) if count is None else count
    seen = count * settings.epochs
    if settings.max_steps > 0:
        seen = min(seen, settings.max_steps * settings.batch_size * settings.grad_accum)
    work = _mean_training(model, examples, job.template, settings.max_length).scaled(seen)
    work.passes = math.ceil(seen / settings.batch_size)
    factor = 3.0 if settings.gradient_checkpointing else 2.0
    share = share_key("train", model.identity, fingerprint(examples), repr(settings), job.cfg.seed) if exact else None
    return Stage(name, model, work, exact, share, flop_factor=factor, kind="fine-tuning")


def evaluation_stages(job: JobInputs) -> None:
    """Per protocol: fine-tuning on the training set (none for Initial), then generation on each test split."""
    d, selector = job.data, job.selector
    if selector.skip_training:
        train, count, exact = [], 0, True
    elif selector.budget_independent:  # Full: the whole pool
        train, count, exact = d.train_set(d.pool), len(d.train_set(d.pool)), True
    else:
        train, count, exact = d.train_set(d.pool), len(d.train_set(d.pool[:job.budget])), False
    for protocol in job.protocols:
        settings = protocol.finetune_settings()
        if settings is not None and count:
            job.stages.append(training_stage(job, f"train {protocol.name}", job.trained, train, settings, exact,
                                             count))
        for split, tests in d.tests.items():
            job.stages.append(generation_stage(job, protocol, split, tests, train if count else []))


def generation_stage(job: JobInputs, protocol: Protocol, split: str, tests: Sequence[Example],
                     train: Sequence[Example]) -> Stage:
    """Greedy generation of up to ``max_new_tokens`` per test prompt (an upper bound), as the protocol declares
    it (:class:`Protocol`: ``generation``, ``shown_examples()``, ``prompt_limit()``): a prompt showing training
    examples carries up to that many of the training set's mean length, within the limit; any other prompt
    is cut to the limit."""
    model, gen = job.trained, protocol.generation
    ids = lambda text: len(model.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    prompts = [ids(job.template.render(ex)) for ex in tests]
    k, limit = protocol.shown_examples(), protocol.prompt_limit()
    if train and k:
        shown = float(np.mean([ids(job.cfg.kernel.shown_example.format(prompt=job.template.render(ex),
                                                                       response=ex.output)) for ex in train]))
        fit = (lambda p: k) if limit is None else (lambda p: max(0, min(k, (limit - p) // max(shown, 1))))
        prompts = [p + round(shown * fit(p)) for p in prompts]
    elif limit is not None:
        prompts = [min(p, limit) for p in prompts]
    m = gen.max_new_tokens
    work = Work(sequences=len(prompts), passes=math.ceil(len(prompts) / gen.batch_size) * (1 + m))
    for length in prompts:
        work.sequence(length, 1)
        work.sequence(length + m, m, length)
    name = f"generate {protocol.name}" + (f" ({split})" if split else "")
    return Stage(name, model, work, exact=False, note=f"{len(prompts)} prompts, <= {m} new tokens each",
                 kind="generation")


def selector_stages(job: JobInputs) -> None:
    """The model work the selector declares (:meth:`Selector.model_work`), one stage per item; a sentence
    embedder's pass is noted, not counted (it is not a language model of the plan)."""
    try:
        declared = job.selector.model_work(job.context())
    except UndeclaredWork as exc:
        raise UndeclaredWork(f"delift-plan cannot plan selector {job.selector.name!r}: {exc}") from None
    for work in declared:
        if isinstance(work, KernelWork):
            kernel_work_stage(job, work)
        elif isinstance(work, ScoringPass):
            job.stages.append(scoring_pass_stage(job, work))
        elif isinstance(work, ReferenceTraining):
            stage = reference_training_stage(job, work)
            job.stages += [stage] if stage is not None else []
        elif isinstance(work, GradientPasses):
            job.stages.append(gradient_stage(job, work))
        elif isinstance(work, EmbeddingPass):
            job.notes.append(f"{work.name}: {len(work.examples)} examples through {work.embedder} (not counted)")
        else:
            raise UndeclaredWork(f"selector {job.selector.name!r} declares {work!r}, not one of "
                                 f"{', '.join(kind.__name__ for kind in WORK_KINDS)} (delift.selection.work)")


def job_stages(job: JobInputs) -> None:
    """Fill ``job.stages``: the selector's, then each protocol's."""
    selector_stages(job)
    evaluation_stages(job)
