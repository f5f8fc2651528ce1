"""delift.report.stats: sample std, Student-t intervals, the paired bootstrap; cross-checked against scipy."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from delift.report.stats import mean_std, paired_bootstrap, paired_mean, t_interval


def test_mean_and_sample_std_by_hand():
    assert mean_std([0.2, 0.4]) == pytest.approx((0.3, math.sqrt(0.02)))  # ((0.1)^2 + (0.1)^2) / 1
    assert mean_std([1.0, 2.0, 4.0]) == pytest.approx((7 / 3, math.sqrt((16 / 9 + 1 / 9 + 25 / 9) / 2)))
    assert mean_std([0.5]) == (0.5, None)


@pytest.mark.parametrize("df,table", [(1, 12.7062), (2, 4.3027), (3, 3.1824), (4, 2.7764), (9, 2.2622),
                                      (30, 2.0423)])
def test_t_interval_half_width_matches_printed_tables(df, table):
    values = [0.0, 1.0] + [0.5] * (df - 1)  # n = df + 1 values
    mean, std = mean_std(values)
    low, high = t_interval(values)
    assert (high - low) / 2 == pytest.approx(table * std / math.sqrt(df + 1), rel=5e-5)


def test_t_interval_against_scipy():
    rng = np.random.default_rng(3)
    for n in (2, 3, 6, 18, 61):
        values = list(rng.normal(0.4, 0.2, size=n))
        for level in (0.95, 0.8):
            expected = scipy_stats.t.interval(level, n - 1, loc=np.mean(values), scale=scipy_stats.sem(values))
            assert t_interval(values, level) == pytest.approx(expected, rel=1e-12)


def test_t_interval_by_hand():
    # n = 2: mean 0.3, s = 0.141421, half width = 12.7062 * s / sqrt(2) = 1.27062
    low, high = t_interval([0.2, 0.4])
    assert (low, high) == pytest.approx((0.3 - 1.270620, 0.3 + 1.270620), abs=1e-5)
    assert t_interval([0.2]) is None


def test_bootstrap_of_constant_differences_is_a_point():
    mean, low, high = paired_bootstrap([[0.25] * 5, [0.25] * 3], seed=0, resamples=500)
    assert (mean, low, high) == pytest.approx((0.25, 0.25, 0.25))


def test_bootstrap_statistic_is_the_mean_of_seed_means():
    assert paired_mean([np.array([0.1, 0.3, 0.3]), np.array([0.1, 0.0, 0.3])]) == pytest.approx((0.7 / 3 + 0.4 / 3) / 2)


def exact_percentiles(diffs_by_seed, qs):
    """Enumerate every resample (n^n per seed): the exact bootstrap distribution's quantiles."""
    per_seed = []
    for d in diffs_by_seed:
        n = len(d)
        per_seed.append([np.mean([d[i] for i in idx]) for idx in itertools.product(range(n), repeat=n)])
    stats = sorted(np.mean(combo) for combo in itertools.product(*per_seed))
    return [stats[min(len(stats) - 1, math.ceil(q * len(stats)) - 1)] for q in qs]


def test_bootstrap_interval_matches_the_exact_enumeration():
    diffs = [[0.1, 0.3, 0.3], [0.1, 0.0, 0.3]]
    mean, low, high = paired_bootstrap(diffs, seed=0)
    exact_low, exact_high = exact_percentiles(diffs, [0.025, 0.975])
    assert mean == pytest.approx(0.55 / 3)
    # 10,000 draws from a distribution on a 1/60 grid: the percentiles land on or next to the exact ones
    assert low == pytest.approx(exact_low, abs=1 / 60 + 1e-9) and high == pytest.approx(exact_high, abs=1 / 60 + 1e-9)
    assert low > 0  # every difference is >= 0 and seed 0's are >= 0.1: the interval excludes 0


def test_vectorised_bootstrap_equals_the_resample_loop():
    rng = np.random.default_rng(1)
    diffs = [rng.normal(size=7), rng.normal(size=4)]
    _, low, high = paired_bootstrap(diffs, seed=5, resamples=300)
    draws = np.random.default_rng(5)
    seed_means = []
    for d in diffs:  # the documented draw order: one integers(0, n, (resamples, n)) per seed
        idx = draws.integers(0, len(d), size=(300, len(d)))
        seed_means.append([d[row].mean() for row in idx])
    stats = np.mean(seed_means, axis=0)
    assert (low, high) == pytest.approx(tuple(np.percentile(stats, [2.5, 97.5])))


def test_bootstrap_interval_of_a_large_sample_is_the_normal_one():
    d = np.random.default_rng(2).normal(0.1, 1.0, size=2000)
    mean, low, high = paired_bootstrap([d], seed=0)
    half = 1.96 * d.std(ddof=1) / math.sqrt(len(d))
    assert mean == pytest.approx(d.mean())
    assert low == pytest.approx(d.mean() - half, abs=0.1 * half) and high == pytest.approx(d.mean() + half, abs=0.1 * half)


@pytest.mark.parametrize("sizes", [(40,), (30, 25, 12)])
def test_paired_bootstrap_against_scipy_bootstrap(sizes):
    """scipy.stats.bootstrap resamples each sample independently, as the paired bootstrap resamples each
    seed's examples: with the mean of the seed means as statistic both estimate the same percentile interval."""
    rng = np.random.default_rng(7)
    diffs = [rng.normal(0.05 * (s + 1), 0.3, size=n) for s, n in enumerate(sizes)]
    mean, low, high = paired_bootstrap(diffs, seed=0, resamples=20_000)

    def statistic(*samples, axis=-1):
        return np.mean([np.mean(x, axis=axis) for x in samples], axis=0)

    found = scipy_stats.bootstrap(tuple(diffs), statistic, n_resamples=20_000, method="percentile",
                                  confidence_level=0.95, random_state=np.random.default_rng(1))
    width = high - low
    assert mean == pytest.approx(statistic(*diffs))
    # two independent Monte Carlo estimates of the same percentiles: equal to a few % of the interval's width
    assert low == pytest.approx(found.confidence_interval.low, abs=0.03 * width)
    assert high == pytest.approx(found.confidence_interval.high, abs=0.03 * width)
