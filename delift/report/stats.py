"""Statistics over seeds and test examples: mean, sample std, t-intervals, a paired bootstrap.

All functions take plain lists or numpy arrays; a missing score is the caller's business (``None``
and NaN are dropped before these are called). The Student-t quantile is scipy's (``scipy.stats.t``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import stats as scipy_stats

BOOTSTRAP_RESAMPLES = 10_000
_CHUNK_VALUES = 4_000_000  # resample indices drawn per chunk (rows x examples): bounds memory at ~32 MB


def mean_std(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (ddof = 1; None for a single value)."""
    if not values:
        raise ValueError("mean_std of no values")
    mean = math.fsum(values) / len(values)
    if len(values) < 2:
        return mean, None
    return mean, math.sqrt(math.fsum((v - mean) ** 2 for v in values) / (len(values) - 1))


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t-interval of the mean, ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)``; None when n < 2."""
    if len(values) < 2:
        return None
    mean, std = mean_std(values)
    half = float(scipy_stats.t.ppf((1 + level) / 2, len(values) - 1)) * std / math.sqrt(len(values))
    return mean - half, mean + half


def paired_mean(diffs_by_seed: Sequence[np.ndarray]) -> float:
    """The mean paired difference: the mean over seeds of each seed's mean over its test examples."""
    return float(np.mean([np.mean(d) for d in diffs_by_seed]))


def paired_bootstrap(diffs_by_seed: Sequence[Sequence[float]], seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES, level: float = 0.95) -> tuple[float, float, float]:
    """Mean paired difference and its percentile bootstrap interval, resampling examples within seeds.

    ``diffs_by_seed[s]`` holds (method - baseline) per test example of seed s. Each resample draws,
    for every seed in the given order, as many examples with replacement as that seed has, and takes
    :func:`paired_mean` of the draws. The draws come from ``numpy.random.default_rng(seed)``, one
    ``integers(0, n_s, size=(resamples, n_s))`` per seed in row chunks (the same stream as one call).
    Returns (mean, low, high).
    """
    arrays = [np.asarray(d, dtype=np.float64) for d in diffs_by_seed if len(d)]
    if not arrays:
        raise ValueError("paired_bootstrap of no differences")
    rng = np.random.default_rng(seed)
    seed_means = np.empty((len(arrays), resamples))
    for s, diffs in enumerate(arrays):
        n = len(diffs)
        rows = max(1, _CHUNK_VALUES // n)
        for start in range(0, resamples, rows):
            stop = min(resamples, start + rows)
            seed_means[s, start:stop] = diffs[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    stats = seed_means.mean(axis=0)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(stats, [tail, 100 - tail])
    return paired_mean(arrays), float(low), float(high)
