"""Per-example evaluation metrics for generated answers, and the metric contract.

A metric is a class with a ``Config`` dataclass (its settings; ``conf/metric/<name>.yaml`` names the
class with ``_target_``) and ``score(generations, examples) -> MetricScores``: one list of per-example
values per score key, optional aggregate counts, and whether NaN marks "no score for this example"
(then the mean skips NaN). It gets the test examples themselves, with their metadata, so a metric may
use the question, the reference or the task's own answer key. Built-in metrics:

- :class:`Rouge` -> ``rouge1``, ``rouge2``, ``rougeL``: ROUGE F-measures as in the ``evaluate``
  "rouge" metric (``rouge_score`` default tokenizer, no stemmer). With ``m`` overlapping n-grams
  (clipped counts), ``P = m / |pred n-grams|``, ``R = m / |ref n-grams|`` and ``F = 2 P R / (P + R)``
  (``0`` when ``P + R = 0``). ``rougeL`` uses ``m = LCS(pred, ref)`` over unigram tokens.
- :class:`EmbeddingSimilarity` -> ``bge``: cosine of the L2-normalised sentence embeddings of
  generation and reference. Named after the paper's embedder (BAAI/bge-large-en-v1.5); computed with
  whatever embedder is configured.
- ``judge`` (:mod:`delift.evaluation.judge.metric`) and ``exact_match``
  (:mod:`delift.evaluation.exact_match`) live in their own modules.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from delift.config.checks import raise_problems
from delift.data.records import Example
from delift.models.embeddings import DEFAULT_EMBEDDER

log = logging.getLogger(__name__)


def metric_key(evaluation: str, split: str, metric: str) -> str:
    """The metrics.json key of one score: ``<evaluation>[/<split>]/<metric>``."""
    return f"{evaluation}/{split}/{metric}" if split else f"{evaluation}/{metric}"

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")


def _check_lengths(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"predictions and references differ in length: {len(predictions)} != {len(references)}"
        )


def rouge_scores(predictions: list[str], references: list[str]) -> dict[str, list[float]]:
    """ROUGE-1/2/L F-measures per example, keys ``rouge1``, ``rouge2``, ``rougeL``.

    ``F = 2 P R / (P + R)`` with precision ``P`` over the prediction's n-grams and recall ``R``
    over the reference's (LCS length for ``rougeL``); same definition as ``evaluate``'s "rouge"
    (``use_stemmer=False``, default tokenizer: lower-case, non-alphanumerics split).
    """
    from rouge_score import rouge_scorer

    _check_lengths(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=False)
    out: dict[str, list[float]] = {key: [] for key in ROUGE_TYPES}
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(target=reference, prediction=prediction)
        for key in ROUGE_TYPES:
            out[key].append(float(scores[key].fmeasure))
    return out


def bge_scores(predictions: list[str], references: list[str], embedder: Any) -> list[float]:
    """Cosine similarity per example: ``cos(g_i, r_i) = <g_i / ||g_i||, r_i / ||r_i||>``.

    ``embedder`` is a loaded ``SentenceTransformer``; both sides are encoded in one batch.
    """
    from delift.models.embeddings import embed

    _check_lengths(predictions, references)
    n = len(predictions)
    if n == 0:
        return []
    vectors = embed(list(predictions) + list(references), embedder)
    cosines = np.einsum("ij,ij->i", vectors[:n], vectors[n:])
    return [float(c) for c in np.clip(cosines, -1.0, 1.0)]


@dataclass
class MetricScores:
    """What one metric gives for a list of examples."""

    columns: dict[str, list[float]]  # score key -> one value per example
    summary: dict[str, float] = field(default_factory=dict)  # aggregate counts, reported as they are
    nan_ok: bool = False  # NaN = "no score for this example": means skip it (and say how many had one)


DECLARED = ("label", "bounds", "higher_is_better")  # what every metric class states about its scores


class Metric(ABC):
    """Scores generations against test examples; see the module docstring for the contract.

    Every subclass declares what the report asks of its scores (a class without them is a TypeError
    naming it, at its definition): ``label`` (the column label, e.g. "BGE"), ``bounds`` (``(lowest,
    highest)`` every score lies in, figures clip intervals to it; ``None`` says "unbounded"),
    ``higher_is_better``; optionally ``column_order`` (position among the report's metric columns; None:
    after the ordered ones, by key) and ``key_labels`` (score key -> label, for a metric writing several
    keys; default ``{name: label}``).
    """

    name: str = "metric"
    label: str
    bounds: tuple[float, float] | None
    higher_is_better: bool
    column_order: int | None = None
    key_labels: dict[str, str] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [attr for attr in DECLARED if not hasattr(cls, attr)]
        if missing:
            raise TypeError(f"metric {cls.__module__}.{cls.__qualname__} does not declare {', '.join(missing)} "
                            "(class attributes; bounds = None for an unbounded score)")
        if cls.bounds is not None and not (len(cls.bounds) == 2 and cls.bounds[0] < cls.bounds[1]):
            raise TypeError(f"metric {cls.__module__}.{cls.__qualname__}: bounds {cls.bounds!r} is not "
                            "(lowest, highest) with lowest < highest")

    @classmethod
    def score_labels(cls) -> dict[str, str]:
        """Score key -> its label, in column order."""
        return dict(cls.key_labels or {cls.name: cls.label})

    @dataclass
    class Config:
        _target_: str = ""

    def __init__(self, config: Any = None) -> None:
        """``config``: this class's ``Config`` (None: its defaults), checked by its ``problems()``."""
        self.config = self.Config() if config is None else config
        raise_problems(self.config, f"metric_library.{self.name}")

    @abstractmethod
    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        """Per-example scores of ``generations[i]`` against ``examples[i]``."""

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """What :meth:`score` loads, for the preflight, as :meth:`delift.selection.base.Selector.loaded_models`
        declares it: (config key, a ``ModelConfig``, a sentence embedder's name or a
        :class:`delift.models.sources.SelfLocating`). ``config``: this metric's ``Config``; ``cache_dir``:
        ``paths.cache_dir``. A bad entry is a ValueError naming its key. Here: nothing."""
        return []

    @classmethod
    def provenance(cls, config: Any) -> tuple[str, Any] | None:
        """(run.json key, what to record there) of what produced its scores beyond the model and the data, or
        None. Here: nothing."""
        return None


class Rouge(Metric):
    """ROUGE-1/2/L F-measure (see :func:`rouge_scores`)."""

    name = "rouge"
    label = "ROUGE"
    key_labels = {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L"}
    bounds = (0.0, 1.0)
    higher_is_better = True
    column_order = 0

    @dataclass
    class Config:
        _target_: str = "delift.evaluation.metrics.Rouge"

    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        return MetricScores(rouge_scores(list(generations), [ex.output for ex in examples]))


class EmbeddingSimilarity(Metric):
    """``bge``: embedding cosine of generation and reference; the embedder loads on first use."""

    name = "bge"
    label = "BGE"
    bounds = (0.0, 1.0)
    higher_is_better = True
    column_order = 1

    @dataclass
    class Config:
        _target_: str = "delift.evaluation.metrics.EmbeddingSimilarity"
        embedder: str = DEFAULT_EMBEDDER
        device: Optional[str] = None

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its sentence embedder."""
        return [(f"metric_library.{cls.name}.embedder", config.embedder)] if config.embedder else []

    def __init__(self, config: Config | None = None):
        super().__init__(config)
        self._embedder: Any = None

    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        if self._embedder is None:
            from delift.models.embeddings import load_sentence_embedder

            self._embedder = load_sentence_embedder(self.config.embedder, self.config.device)
        return MetricScores({"bge": bge_scores(list(generations), [ex.output for ex in examples], self._embedder)})


def _mean(values: Sequence[float]) -> float | None:
    """Arithmetic mean; None (JSON null) when there is nothing to average."""
    return float(sum(values) / len(values)) if values else None


def score_all(metrics: Sequence[Metric], generations: Sequence[str],
              examples: Sequence[Example]) -> tuple[list[dict[str, float]], dict[str, float | None]]:
    """Run every metric; return per-example score dicts and the means (plus each metric's counts).

    ``means[k] = (1/n) sum_i scores_i[k]`` over the non-NaN values (a metric with ``nan_ok`` reports
    how many it scored in its summary; NaN from any other metric is logged as a warning). A mean over
    no values is None (JSON null), never a bare NaN. Score keys must be unique across metrics.
    """
    _check_lengths(generations, examples)
    columns: dict[str, list[float]] = {}
    means: dict[str, float | None] = {}
    summary: dict[str, float] = {}
    for metric in metrics:
        result = metric.score(generations, examples)
        for key, values in result.columns.items():
            if key in columns:
                raise ValueError(f"metric {metric.name!r} produced score key {key!r} already produced by another metric")
            if len(values) != len(generations):
                raise ValueError(f"metric {metric.name!r} returned {len(values)} scores for {len(generations)} examples")
            columns[key] = [float(v) for v in values]
            kept = [v for v in columns[key] if not math.isnan(v)]
            if len(kept) < len(values) and not result.nan_ok:
                log.warning("metric %s: %d of %d %s scores are NaN; the mean skips them", metric.name,
                            len(values) - len(kept), len(values), key)
            means[key] = _mean(kept)
        summary.update(result.summary)
    clash = sorted(set(summary) & set(means))
    if clash:
        raise ValueError(f"metric summary keys {clash} collide with score keys")
    per_example = [{key: values[i] for key, values in columns.items()} for i in range(len(generations))]
    return per_example, {**means, **summary}
