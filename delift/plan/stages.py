"""Every stage of one job and its work: the selector's kernels or per-example scoring, fine-tuning, generation.

Counted exactly (the run executes these counts): the utility kernels (:mod:`delift.plan.kernel`) and the
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
from delift.plan.kernel import FLOAT, Schedule, kernel_bytes, kernel_work, stored_entries
from delift.plan.models import PlanModel, flops
from delift.plan.work import Work, attended
from delift.run.usecases import UsecaseData
from delift.scoring.layout import answer_items, training_items
from delift.selection.base import SelectionContext, Selector

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
    protocols: list[Any]
    schedule: Schedule
    budget: int
    tokens: Callable[[PlanModel, Sequence[Example]], list[TokenizedExample]]  # kernel tokens (memoised)
    stages: list[Stage] = field(default_factory=list)
    selection_bytes: int = 0

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
                 note=f"{len(targets)} x {len(candidates)}, key {key[:12]}{cached}")


def delift_stages(job: JobInputs) -> None:
    """DELIFT: its kernel requests (pool x pool, and Q x pool or pool x P)."""
    roles = ("pool x pool", "query x pool" if job.data.query is not None else "pool x existing")
    for role, request in zip(roles, job.selector.kernel_requests(job.context())):
        stage = kernel_stage(job, f"kernel {role}", KernelRequest(*request))
        job.stages.append(stage)
        pairs = len(request[0]) * len(request[1])
        if job.cfg.kernel.approximation != "knn":
            job.selection_bytes += stage.dense + SELECTION_BYTES * pairs
        elif job.selector.postprocess == "clip":  # stays sparse
            job.selection_bytes += stage.dense + SPARSE_SELECTION_BYTES * stored_entries(job.cfg.kernel, *map(len, request[:2]))
        else:  # minmax densifies it: a float64 UF, then the dense path's copies
            job.selection_bytes += stage.dense + (FLOAT + SELECTION_BYTES) * pairs


def nuggets_stages(job: JobInputs) -> None:
    """Nuggets: the golden set x pool ``logprob_sum`` kernel. A k-means golden set needs the sentence embedder:
    the plan stands in evenly spaced pool examples of the same size (an estimate)."""
    selector, pool = job.selector, list(job.data.pool)
    if selector.golden == "query":
        (request,) = selector.kernel_requests(job.context())
        job.stages.append(kernel_stage(job, "kernel golden x pool", request))
    else:
        size = min(selector.golden_size, len(pool))
        golden = [pool[i] for i in np.unique(np.linspace(0, len(pool) - 1, size).round().astype(int))]
        share = share_key("nuggets", job.scorer.identity, fingerprint(pool), selector.golden_size,
                          selector.kmeans_iterations, selector.embedder, job.cfg.seed, job.cfg.kernel.identity())
        job.stages.append(kernel_stage(job, "kernel golden x pool", KernelRequest(golden, pool, "logprob_sum"),
                                       exact=False, share=share))
    job.selection_bytes += job.stages[-1].dense


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


def ifd_stages(job: JobInputs) -> None:
    s, pool, tok = job.selector, job.data.pool, job.scorer.tokenizer
    job.stages += [scoring_stage(job, "score response NLL", job.scorer,
                                 training_items(pool, tok, job.template, s.max_length), s.batch_size, "nll"),
                   scoring_stage(job, "score answer NLL", job.scorer, answer_items(pool, tok, s.header, s.max_length),
                                 s.batch_size, "nll")]


def lobass_stages(job: JobInputs) -> None:
    """LoBaSS: a reference LoRA on the whole pool (the scorer, the first fine-tuning protocol's settings),
    then every example's response NLL with the adapter off and on."""
    s, pool = job.selector, list(job.data.pool)
    settings = next((p.finetune_settings() for p in job.protocols if p.finetune_settings() is not None), None)
    if settings is not None:
        job.stages.append(training_stage(job, "train reference (pool)", job.scorer, pool, settings, exact=True))
    items = training_items(pool, job.scorer.tokenizer, job.template, s.max_length)
    for state in ("off", "on"):
        job.stages.append(scoring_stage(job, f"score NLL adapter {state}", job.scorer, items, s.batch_size, "nll",
                                        adapter=f"lobass:{fingerprint(pool)}:{state}"))


def selectit_stages(job: JobInputs) -> None:
    """SelectIT: for each of the K rating prompts, the prompt once, then every example's rated text after it."""
    from delift.selection.selectit import rated_text

    s, pool = job.selector, job.data.pool
    tok = job.scorer.tokenizer
    ids = lambda text: list(tok(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    items = [_Item(ex.id, tuple(ids(rated_text(ex, s.answer_suffix))), ()) for ex in pool]
    for k, prompt in enumerate(s.prompts):
        job.stages.append(scoring_stage(job, f"rate prompt {k + 1}/{len(s.prompts)}", job.scorer, items,
                                        s.batch_size, "rating", prefix=ids(prompt)))
    if s.models:
        job.stages[-1].note = f"extra raters ({len(s.models)}) not planned"


@dataclass(frozen=True)
class _Item:
    id: str
    context: tuple[int, ...]
    scored: tuple[int, ...]


def less_stages(job: JobInputs) -> None:
    """LESS, estimated: warm-up LoRA epochs on its warm-up set, then per checkpoint one forward and backward
    pass per pool and target example (gradient features)."""
    c, pool = job.selector.config, list(job.data.pool)
    _, targets = job.selector.targets(job.context())  # an empty target set fails here as in the run
    size = max(math.ceil(c.warmup_fraction * len(pool) - 1e-9), 1,
               c.batch_size * math.ceil(c.min_warmup_steps / c.epochs))
    mean = _mean_training(job.scorer, pool, job.template, c.max_length)
    warm = mean.scaled(size * c.epochs)
    grads = mean.scaled((len(pool) + len(targets)) * c.epochs)
    job.stages += [Stage("LESS warm-up", job.scorer, warm, exact=False, flop_factor=2.0),
                   Stage("LESS gradients", job.scorer, grads, exact=False, flop_factor=2.0,
                         note=f"{c.epochs} checkpoints x ({len(pool)} + {len(targets)}) examples")]


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
    return Stage(name, model, work, exact, share, flop_factor=factor)


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


def generation_stage(job: JobInputs, protocol: Any, split: str, tests: Sequence[Example],
                     train: Sequence[Example]) -> Stage:
    """Greedy generation of up to ``max_new_tokens`` per test prompt (an upper bound); ICL prompts carry up
    to k shown examples of the training set's mean length, within ``max_prompt_length``."""
    model, gen = job.trained, protocol.generation
    ids = lambda text: len(model.tokenizer(text, add_special_tokens=False)["input_ids"])  # noqa: E731
    prompts = [ids(job.template.render(ex)) for ex in tests]
    limit = getattr(protocol, "max_prompt_length", None)
    if limit is not None and train and protocol.k:
        shown = float(np.mean([ids(job.cfg.kernel.shown_example.format(prompt=job.template.render(ex),
                                                                       response=ex.output)) for ex in train]))
        prompts = [p + round(shown * max(0, min(protocol.k, (limit - p) // max(shown, 1)))) for p in prompts]
    elif protocol.finetune_settings() is not None:
        prompts = [min(p, protocol.finetune_settings().max_length - 1) for p in prompts]
    m = gen.max_new_tokens
    work = Work(sequences=len(prompts), passes=math.ceil(len(prompts) / gen.batch_size) * (1 + m))
    for length in prompts:
        work.sequence(length, 1)
        work.sequence(length + m, m, length)
    name = f"generate {protocol.name}" + (f" ({split})" if split else "")
    return Stage(name, model, work, exact=False, note=f"{len(prompts)} prompts, <= {m} new tokens each")


PLANNERS: dict[str, Callable[[JobInputs], None]] = {
    "delift": delift_stages, "nuggets": nuggets_stages, "ifd": ifd_stages, "lobass": lobass_stages,
    "selectit": selectit_stages, "less": less_stages,
}  # selector name -> its model stages; the others (random, full, initial, delift_se) run no language model


def job_stages(job: JobInputs) -> None:
    """Fill ``job.stages``: the selector's, then each protocol's."""
    planner = PLANNERS.get(job.selector.name)
    if planner is not None:
        planner(job)
    elif type(job.selector).kernel_requests is not Selector.kernel_requests:  # a new kernel-based selector
        for request in job.selector.kernel_requests(job.context()):
            job.stages.append(kernel_stage(job, "kernel", KernelRequest(*request)))
    evaluation_stages(job)
