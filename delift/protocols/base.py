"""The protocol contract, what every protocol is given, and scoring generations with the metrics."""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Sequence

from delift.config.checks import raise_problems
from delift.config.schema import GenerationConfig
from delift.data.prompts import PromptTemplate
from delift.data.records import Example
from delift.evaluation.generation import generate
from delift.evaluation.metrics import Metric, metric_key, score_all
from delift.models.config import ModelConfig

if TYPE_CHECKING:  # an annotation only: the settings class lives with the training code
    from delift.training.settings import TrainConfig

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
            self.seconds[f"time/{name}_s"] = round(self.seconds.get(f"time/{name}_s", 0.0)
                                                    + time.perf_counter() - start, 3)
            log.info("stage %s done in %.1f s", name, self.seconds[f"time/{name}_s"])


@dataclass
class EvalContext:
    """What a protocol works with: the model, template, metrics, seed and where to write."""

    model_spec: ModelConfig
    template: PromptTemplate
    shown_example: str  # how a training example is shown in context (the kernel's format)
    metrics: Sequence[Metric]
    seed: int
    output_dir: Path
    progress: bool = True
    timer: Timer = field(default_factory=Timer)
    cache_dir: Path | None = None  # paths.cache_dir: trained adapters are stored under adapters/ for reuse


class Protocol(ABC):
    """Evaluates a training set on test splits.

    The contract: a subclass declares a nested ``Config`` dataclass (``_target_`` naming the class,
    ``name`` the metric prefix, ``generation`` its decoding settings; the YAML in ``conf/evaluation/`` is
    checked against it before any work), is built as ``cls(config)`` with that ``Config`` instance, and
    implements :meth:`run`. What it generates with is declared here for the cost plan and the run alike:
    :attr:`generation`, :meth:`shown_examples` (training examples shown in each test prompt) and
    :meth:`prompt_limit` (the longest prompt, in tokens, generation keeps). A protocol that
    fine-tunes also overrides :meth:`finetune_settings` (a selector's reference adapter trains with the
    first protocol's) and :meth:`adapter_dir` (where :meth:`run` saves the adapter it trains; the run
    logs it as a model artifact with ``logger.log_adapter=true``), and writes there.
    """

    name: str
    label: str  # the report's column label of its scores, e.g. "ICL" (see column())
    column_order: int | None = None  # the report's column position; None: after the ordered ones, by name
    generation: GenerationConfig  # decoding settings (max_new_tokens, batch_size...): ``config.generation``

    @dataclass
    class Config:
        _target_: str = ""
        name: str = ""
        generation: GenerationConfig = field(default_factory=GenerationConfig)

    def __init__(self, config: Any = None) -> None:
        """``config``: this class's ``Config`` (None: its defaults), checked by its ``problems()``."""
        self.config = self.Config() if config is None else config
        raise_problems(self.config, f"evaluation.{self.config.name}")
        self.name, self.generation = self.config.name, self.config.generation

    def shown_examples(self) -> int:
        """How many training examples each test prompt shows in context, at most (0: none)."""
        return 0

    def prompt_limit(self) -> int | None:
        """The longest prompt generation keeps, in tokens (a longer one loses tokens from the left); None: no limit."""
        return None

    @abstractmethod
    def run(self, ctx: EvalContext, train_set: Sequence[Example],
            tests: Mapping[str, Sequence[Example]]) -> tuple[dict[str, Any], list[dict]]:
        """Evaluate ``train_set`` (empty for the Initial baseline: the untouched base model) on ``tests``
        (split key -> examples; ``""`` is the headline split). Returns ``(metrics, rows)``: flat metrics,
        every key under ``<name>/`` (scores as :func:`delift.evaluation.metrics.metric_key`), and one prediction row
        per (test split, example); :func:`score_generations` builds both. Stages are timed with
        ``ctx.timer.stage("<name>_<stage>")``; files go under ``ctx.output_dir``."""

    def finetune_settings(self) -> TrainConfig | None:
        """The fine-tuning settings this protocol trains with; None when it trains nothing (ICL)."""
        return None

    def adapter_dir(self, output_dir: Path) -> Path | None:
        """The folder under the run's ``output_dir`` where :meth:`run` saves its trained adapter; None when
        it trains none."""
        return None

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """What :meth:`run` loads beyond the run's model for a non-empty training set (the preflight asks it, and
        skips it for a selector that trains on nothing), as :meth:`delift.selection.base.Selector.loaded_models`
        declares it: (config key, a ``ModelConfig`` or a sentence embedder's name). ``config``: this protocol's
        ``Config``; ``cache_dir``: ``paths.cache_dir``. Here: nothing."""
        return []

    @classmethod
    def column(cls, config: Mapping[str, Any]) -> tuple[int | None, str]:
        """(column order, label) of the report's columns for one evaluation block (its recorded config)."""
        return cls.column_order, cls.label


def generate_all(ctx: EvalContext, model: Any, tokenizer: Any, prompts: Mapping[str, list[str]],
                 generation: GenerationConfig, max_prompt_length: int) -> dict[str, list[str]]:
    """Generations for every split's prompts with one decoding setting."""
    return {split: generate(model, tokenizer, texts, max_new_tokens=generation.max_new_tokens,
                            batch_size=generation.batch_size, do_sample=generation.do_sample,
                            temperature=generation.temperature, top_p=generation.top_p, seed=ctx.seed,
                            max_prompt_length=max_prompt_length, progress=ctx.progress)
            for split, texts in prompts.items()}


def score_generations(ctx: EvalContext, evaluation: str, tests: Mapping[str, Sequence[Example]],
                      prompts: Mapping[str, list[str]], generations: Mapping[str, list[str]],
                      extra: Mapping[str, list[dict]] | None = None) -> tuple[dict[str, Any], list[dict]]:
    """Score every split's generations; returns flat metrics and one prediction row per example."""
    metrics: dict[str, Any] = {}
    rows: list[dict] = []
    for split, examples in tests.items():
        per_example, means = score_all(ctx.metrics, generations[split], examples)
        metrics.update({metric_key(evaluation, split, name): value for name, value in means.items()})
        for index, (ex, scores) in enumerate(zip(examples, per_example)):
            rows.append({"evaluation": evaluation, "split": split or "test", "id": ex.id,
                         "prompt": prompts[split][index], "reference": ex.output,
                         "generation": generations[split][index], **(extra[split][index] if extra else {}),
                         **scores})
    return metrics, rows
