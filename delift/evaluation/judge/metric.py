"""``judge``: the LLM judge as a metric (``conf/metric/judge.yaml``; backend from ``conf/judge/``).

Per example a 1-5 grade, NaN for an example without a valid verdict; the mean skips NaN, and the
summary carries ``judge_n``, ``judge_valid``, ``judge_parse_failures``, ``judge_out_of_range`` and
``judge_errors`` (valid + the three failure kinds = n). Read a judge mean with ``judge_valid``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from delift.data.records import Example
from delift.evaluation.judge.config import HFJudgeSettings, OpenAIJudgeSettings, judge_identity, judge_settings
from delift.evaluation.judge.models import JudgeEndpoint, JudgeModel
from delift.evaluation.judge.prompt import instruction_text
from delift.evaluation.judge.runner import run_judge
from delift.evaluation.metrics import Metric, MetricScores

log = logging.getLogger(__name__)


class JudgeMetric(Metric):
    """Grades each generation with the configured judge, given the question and the reference."""

    name = "judge"
    label = "LAJ"
    bounds = (1.0, 5.0)  # the judge grades 1-5
    higher_is_better = True
    column_order = 2

    @dataclass
    class Config:
        _target_: str = "delift.evaluation.judge.metric.JudgeMetric"
        judge: Any = None  # the judge backend's settings (conf/judge/*.yaml)
        cache_dir: str = ".cache/delift/judge"  # replies under <cache_dir>/verdicts
        progress: bool = True

    def __init__(self, config: Config | None = None):
        """``config``: this class's ``Config``; its defaults name no judge: an error."""
        super().__init__(config)
        self.settings = self._settings(self.config)

    @staticmethod
    def _settings(config: Any) -> HFJudgeSettings | OpenAIJudgeSettings:
        judge = config.judge
        if judge is None:
            raise ValueError("metric judge: no judge settings; choose a backend with judge=hf or judge=openai")
        return judge_settings(asdict(judge) if is_dataclass(judge) else judge)

    @classmethod
    def loaded_models(cls, config: Any, cache_dir: str | None) -> list[tuple[str, Any]]:
        """Its judge: the model (``backend=hf``, cached under its own ``cache_dir``) or the endpoint (``openai``)."""
        if config.judge is None:  # no judge settings: building the metric says so
            return []
        settings = cls._settings(config)
        if isinstance(settings, HFJudgeSettings):
            return [("judge.model", JudgeModel(settings, str(config.cache_dir)))]
        return [("judge.base_url", JudgeEndpoint(settings))]

    @classmethod
    def provenance(cls, config: Any) -> tuple[str, Any] | None:
        """``judge``: its identity (:func:`delift.evaluation.judge.config.judge_identity`)."""
        judge = config.judge
        return "judge", judge_identity(asdict(judge) if is_dataclass(judge) else dict(judge))

    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        prompts = [instruction_text(ex.instruction, ex.input) for ex in examples]
        result = run_judge(prompts, list(generations), [ex.output for ex in examples], self.settings,
                           cache_dir=str(self.config.cache_dir), progress=bool(self.config.progress))
        counts = result.counts
        failed = counts["judge_n"] - counts["judge_valid"]
        if failed:
            log.warning("judge: %d of %d examples have no valid verdict (parse failures %d, out of range %d, "
                        "backend errors %d); their judge score is NaN and the mean skips them", failed,
                        counts["judge_n"], counts["judge_parse_failures"], counts["judge_out_of_range"],
                        counts["judge_errors"])
        if result.plumbing_only:
            log.warning("judge: %s is a tiny/random or 135M test model; its scores are plumbing, not evidence",
                        result.identity.get("model"))
        return MetricScores({"judge": result.scores}, {k: float(v) for k, v in counts.items()}, nan_ok=True)
