"""Paired differences per test example between two methods of one setting, and their bootstrap interval.

Two jobs are paired when they share the setting and the seed (so the same splits and test set);
their predictions.jsonl rows are joined on (evaluation, split, id), the k-th repeat of an id with
the k-th. A pair where either score is missing (null, NaN) is left out.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from delift.report.jobs import Group, Job, number
from delift.report.stats import BOOTSTRAP_RESAMPLES, paired_bootstrap


@dataclass
class Comparison:
    """Method minus baseline on one score: mean paired difference and its bootstrap interval."""

    baseline: str  # the baseline's selector
    diff: float
    low: float
    high: float
    pairs: int  # joined test examples, over all seeds
    seeds: int

    @property
    def significant(self) -> bool:
        """The interval excludes 0."""
        return self.low > 0 or self.high < 0


def indexed_scores(job: Job, evaluation: str, split: str, metric: str) -> dict[tuple[str, int], float | None]:
    """``(id, repeat) -> score`` of one job's predictions for one evaluation and split."""
    split_name = split or "test"
    seen: dict[str, int] = defaultdict(int)
    out = {}
    for row in job.predictions():
        if row.get("evaluation") != evaluation or row.get("split", "test") != split_name:
            continue
        ident = str(row.get("id"))
        out[(ident, seen[ident])] = number(row.get(metric))
        seen[ident] += 1
    return out


def paired_diffs(method: Job, baseline: Job, evaluation: str, split: str, metric: str) -> np.ndarray:
    """Method minus baseline per joined test example (missing scores left out)."""
    a = indexed_scores(method, evaluation, split, metric)
    b = indexed_scores(baseline, evaluation, split, metric)
    diffs = [a[key] - b[key] for key in a if key in b and a[key] is not None and b[key] is not None]
    return np.asarray(diffs, dtype=np.float64)


def compare(method: Group, baseline: Group, evaluation: str, split: str, metric: str, seed: int = 0,
            resamples: int = BOOTSTRAP_RESAMPLES) -> Comparison | None:
    """The paired comparison over the seeds both groups ran (in seed order); None when nothing pairs."""
    by_seed = {repr(job.seed): job for job in baseline.jobs}
    diffs = [paired_diffs(job, by_seed[repr(job.seed)], evaluation, split, metric)
             for job in method.jobs if repr(job.seed) in by_seed]
    diffs = [d for d in diffs if len(d)]
    if not diffs:
        return None
    mean, low, high = paired_bootstrap(diffs, seed=seed, resamples=resamples)
    return Comparison(baseline.selector, mean, low, high, sum(len(d) for d in diffs), len(diffs))
