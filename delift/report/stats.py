"""Statistics over seeds and test examples: mean, sample std, t-intervals, a paired bootstrap.

All functions take plain lists or numpy arrays; a missing score is the caller's business (``None``
and NaN are dropped before these are called). The Student-t quantile is computed here (exact
closed-form CDF for integer degrees of freedom, inverted by bisection), so scipy is not needed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

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


def t_cdf_two_sided(t: float, df: int) -> float:
    """P(|T| < t) for Student's t with integer ``df`` >= 1 (the classical finite series in cos(theta))."""
    if df < 1 or int(df) != df:
        raise ValueError(f"df must be a positive integer, got {df}")
    if t <= 0:
        return 0.0
    theta = math.atan(t / math.sqrt(df))
    s, c2 = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:  # (2/pi) (theta + sin cos (1 + 2/3 c^2 + 2*4/(3*5) c^4 + ... up to c^(df-3)))
        term, total = 1.0, 1.0 if df > 1 else 0.0
        for k in range(1, (df - 1) // 2):
            term *= c2 * (2 * k) / (2 * k + 1)
            total += term
        return 2 / math.pi * (theta + s * math.cos(theta) * total)
    term, total = 1.0, 1.0  # even df: sin (1 + 1/2 c^2 + 1*3/(2*4) c^4 + ... up to c^(df-2))
    for k in range(1, df // 2):
        term *= c2 * (2 * k - 1) / (2 * k)
        total += term
    return s * total


def t_quantile(p: float, df: int) -> float:
    """The upper quantile t with P(T < t) = p (p in (0.5, 1)), by bisection on :func:`t_cdf_two_sided`."""
    if not 0.5 < p < 1:
        raise ValueError(f"p must be in (0.5, 1), got {p}")
    target = 2 * p - 1
    lo, hi = 0.0, 1.0
    while t_cdf_two_sided(hi, df) < target:
        hi *= 2
    for _ in range(200):
        mid = (lo + hi) / 2
        if t_cdf_two_sided(mid, df) < target:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return (lo + hi) / 2


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t-interval of the mean, ``mean +- t_{(1+level)/2, n-1} s / sqrt(n)``; None when n < 2."""
    if len(values) < 2:
        return None
    mean, std = mean_std(values)
    half = t_quantile((1 + level) / 2, len(values) - 1) * std / math.sqrt(len(values))
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
