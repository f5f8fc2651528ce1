"""Per-example evaluation metrics for generated answers, and a small metric registry.

Metrics (all per example, higher is better, in ``[0, 1]`` except ``bge`` in ``[-1, 1]``):

- ``rouge`` -> ``rouge1``, ``rouge2``, ``rougeL``: ROUGE F-measures as in the ``evaluate`` "rouge"
  metric (``rouge_score`` default tokenizer, no stemmer). With ``m`` overlapping n-grams
  (clipped counts), ``P = m / |pred n-grams|``, ``R = m / |ref n-grams|`` and
  ``F = 2 P R / (P + R)`` (``0`` when ``P + R = 0``). ``rougeL`` uses ``m = LCS(pred, ref)``
  over unigram tokens.
- ``bge``: cosine similarity of the sentence embeddings of generation and reference,
  ``cos(g, r) = <g_hat, r_hat>`` with L2-normalised embeddings. Named after the paper's embedding
  model (BAAI/bge-large-en-v1.5); computed with whatever embedder is configured.
- ``judge`` -> ``judge``: an LLM judge's 1-5 grade (Prometheus-style absolute grading over the
  eight-dimension rubric, :mod:`delift.evaluation.judge`); NaN for an example without a valid
  verdict. Needs ``prompts`` (the raw instruction, plus input) and ``options["judge"]`` (the
  ``conf/judge`` mapping plus ``cache_dir``, the judge's cache folder). Its mean ignores NaN, and
  the means dict also gets the counts ``judge_n``, ``judge_valid``, ``judge_parse_failures``,
  ``judge_out_of_range`` and ``judge_errors`` (valid + the three failure kinds = n). A judge mean
  over few valid verdicts is weak; read it with ``judge_valid``.

A metric is a callable ``(predictions, references, context) -> {score_key: [float per example]}``;
:class:`MetricContext` carries what some metrics need (the embedder, lazily loaded; the prompts;
free-form options), so metrics with their own backend (e.g. the LLM judge) can be added with
:func:`register_metric` without changing :func:`compute_metrics`' callers. A metric may also put
aggregate values (counts) into ``context.summary``; they are copied into the means as they are.
A metric registered with ``nan_ok=True`` marks failed examples with NaN, and its means skip them.
"""

from __future__ import annotations

import difflib
import logging
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")

ScoreLists = dict[str, list[float]]


@dataclass
class MetricContext:
    """Shared inputs for metrics beyond predictions and references.

    ``embedder_name``/``device`` describe the sentence embedder; it is loaded on first use of
    :attr:`embedder` (so runs that do not request ``bge`` never load it). ``prompts`` are the
    per-example inputs (for metrics that condition on the question), ``options`` holds per-metric
    settings keyed by metric name. ``summary`` collects aggregate values metrics report besides
    their per-example scores (e.g. the judge's failure counts); they end up in the means.
    """

    embedder_name: str | None = None
    device: str | None = None
    prompts: Sequence[str] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    summary: dict[str, float] = field(default_factory=dict)
    _embedder: Any = field(default=None, init=False, repr=False)

    @property
    def embedder(self) -> Any:
        """The sentence embedder, loaded (and cached process-wide) on first access."""
        if self._embedder is None:
            if not self.embedder_name:
                raise ValueError("this metric needs a sentence embedder but no embedder name was given")
            from delift.models.embeddings import load_sentence_embedder

            self._embedder = load_sentence_embedder(self.embedder_name, self.device)
        return self._embedder


Metric = Callable[[Sequence[str], Sequence[str], MetricContext], ScoreLists]


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


def _rouge_metric(predictions: Sequence[str], references: Sequence[str], context: MetricContext) -> ScoreLists:
    return rouge_scores(list(predictions), list(references))


def _bge_metric(predictions: Sequence[str], references: Sequence[str], context: MetricContext) -> ScoreLists:
    return {"bge": bge_scores(list(predictions), list(references), context.embedder)}


def _judge_metric(predictions: Sequence[str], references: Sequence[str], context: MetricContext) -> ScoreLists:
    from delift.evaluation.judge import run_judge

    judge_cfg = context.options.get("judge")
    if not judge_cfg:
        raise ValueError("metric 'judge' needs options['judge']: the judge config (cfg.judge as a dict, "
                         "plus cache_dir); see conf/judge/")
    if context.prompts is None:
        raise ValueError("metric 'judge' needs prompts: the raw instruction (and input) of every example")
    result = run_judge(list(context.prompts), list(predictions), list(references), judge_cfg)
    counts = result.counts
    context.summary.update({key: float(value) for key, value in counts.items()})
    failed = counts["judge_n"] - counts["judge_valid"]
    if failed:
        log.warning("judge: %d of %d examples have no valid verdict (parse failures %d, out of range %d, "
                    "backend errors %d); their judge score is NaN and the mean skips them", failed,
                    counts["judge_n"], counts["judge_parse_failures"], counts["judge_out_of_range"],
                    counts["judge_errors"])
    if result.plumbing_only:
        log.warning("judge: %s is a tiny/random or 135M test model; its scores are plumbing, not evidence",
                    result.identity.get("model"))
    return {"judge": result.scores}


METRICS: dict[str, Metric] = {"rouge": _rouge_metric, "bge": _bge_metric, "judge": _judge_metric}
# Metrics whose per-example NaN means "no score for this example" (not a bug): their means skip NaN.
NAN_OK_METRICS: set[str] = {"judge"}


def register_metric(name: str, metric: Metric, *, overwrite: bool = False, nan_ok: bool = False) -> None:
    """Add ``metric`` to :data:`METRICS` under ``name`` (``overwrite`` to replace an entry).

    ``nan_ok``: the metric gives NaN for examples it could not score; its means skip them.
    """
    if name in METRICS and not overwrite:
        raise ValueError(f"metric {name!r} is already registered")
    METRICS[name] = metric
    if nan_ok:
        NAN_OK_METRICS.add(name)
    else:
        NAN_OK_METRICS.discard(name)


def _unknown_metric_error(name: str) -> ValueError:
    known = sorted(METRICS)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown metric {name!r}.{hint} Known metrics: {', '.join(known)}")


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


def _nanmean(values: Sequence[float]) -> float:
    """Mean over the non-NaN values; NaN when there are none."""
    return _mean([v for v in values if not math.isnan(v)])


def compute_metrics(
    predictions: list[str],
    references: list[str],
    metric_names: list[str],
    embedder_name: str,
    *,
    device: str | None = None,
    prompts: Sequence[str] | None = None,
    options: Mapping[str, Any] | None = None,
) -> tuple[list[dict[str, float]], dict[str, float]]:
    """Run the named metrics; return per-example score dicts and their arithmetic means.

    Per-example dicts have one key per score (``rouge1``, ``rouge2``, ``rougeL``, ``bge``, ...),
    in the order of ``metric_names``; ``means[k] = (1/n) sum_i scores_i[k]`` (NaN when ``n = 0``).
    For keys of metrics in :data:`NAN_OK_METRICS` (``judge``) the mean runs over the non-NaN
    values only. Aggregates the metrics report (``context.summary``, e.g. ``judge_n``,
    ``judge_parse_failures``) follow the means in the same dict.
    The embedder ``embedder_name`` is loaded only if a requested metric uses it.
    Unknown metric names raise ``ValueError`` (with a did-you-mean), before anything is computed.
    """
    _check_lengths(predictions, references)
    if prompts is not None and len(prompts) != len(predictions):
        raise ValueError(f"prompts and predictions differ in length: {len(prompts)} != {len(predictions)}")
    names = list(dict.fromkeys(metric_names))  # de-duplicate, keep order
    for name in names:
        if name not in METRICS:
            raise _unknown_metric_error(name)

    context = MetricContext(embedder_name=embedder_name, device=device, prompts=prompts,
                            options=dict(options or {}))
    columns: ScoreLists = {}
    nan_ok_keys: set[str] = set()
    for name in names:
        result = METRICS[name](predictions, references, context)
        for key, values in result.items():
            if key in columns:
                raise ValueError(f"metric {name!r} produced score key {key!r} already produced by another metric")
            if len(values) != len(predictions):
                raise ValueError(f"metric {name!r} returned {len(values)} scores for {len(predictions)} examples")
            columns[key] = [float(v) for v in values]
            if name in NAN_OK_METRICS:
                nan_ok_keys.add(key)

    per_example = [{key: values[i] for key, values in columns.items()} for i in range(len(predictions))]
    means = {key: (_nanmean if key in nan_ok_keys else _mean)(values) for key, values in columns.items()}
    clash = sorted(set(context.summary) & set(means))
    if clash:
        raise ValueError(f"metric summary keys {clash} collide with score keys")
    means.update(context.summary)
    return per_example, means
