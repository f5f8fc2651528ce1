"""Statistics of the validity experiments (experiments/validity.py): exact match of the structured tasks read
from a multirun's predictions.jsonl, per selector, seed, split and task; t-intervals over seeds; the difference
against Random as a paired t-interval over seeds and a paired bootstrap over seeds x test examples.

SmolLM2-135M on synthetic tasks: a validity check of the framework, not evidence about paper-scale models.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np
import yaml
from scipy import stats


def structured_em(generation: str, reference: str) -> float:
    """1.0 when the generation's first line, stripped, equals the reference (stripped), else 0.0 (the rule of
    delift.evaluation.exact_match for the structured tasks)."""
    lines = str(generation).strip().splitlines()
    return float(bool(lines) and lines[0].strip() == str(reference).strip())


@dataclass
class JobScores:
    """One job: its selector, seed and per-example exact match by split (``test``, ``existing``...)."""

    folder: Path
    selector: str
    seed: int
    em: dict[str, dict[str, float]] = field(default_factory=dict)  # split -> example id -> 0/1


def read_job(folder: Path, evaluation: str = "lora") -> JobScores | None:
    """The job in ``folder``; None when it has no predictions (skipped, or not finished)."""
    subset, preds = folder / "subset.json", folder / "predictions.jsonl"
    if not preds.exists() or not subset.exists():
        return None
    selector = json.loads(subset.read_text())["selector"]
    config = yaml.safe_load((folder / ".hydra" / "config.yaml").read_text())
    job = JobScores(folder, str(selector), int(config["seed"]))
    for line in preds.read_text().splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        if row.get("evaluation", evaluation) != evaluation:
            continue
        job.em.setdefault(str(row["split"]), {})[str(row["id"])] = structured_em(row["generation"], row["reference"])
    return job


def read_sweep(roots: Sequence[Path], evaluation: str = "lora") -> list[JobScores]:
    """Every finished job under the multirun folders ``roots`` (job folders hold subset.json)."""
    jobs = []
    for root in roots:
        for subset in sorted(Path(root).rglob("subset.json")):
            job = read_job(subset.parent, evaluation)
            if job is not None:
                jobs.append(job)
    return jobs


def t_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, lo, hi): the t-interval of the mean; lo = hi = mean for one value."""
    values = np.asarray(values, np.float64)
    mean = float(values.mean())
    if len(values) < 2:
        return mean, mean, mean
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / math.sqrt(len(values)))
    return mean, mean - half, mean + half


def seed_means(jobs: Sequence[JobScores], split: str, ids: Sequence[str] | None = None) -> dict[int, float]:
    """seed -> mean exact match over ``split`` (restricted to ``ids`` when given)."""
    out = {}
    for job in jobs:
        scores = job.em.get(split, {})
        chosen = [scores[i] for i in (ids if ids is not None else scores) if i in scores]
        if chosen:
            out[job.seed] = float(np.mean(chosen))
    return out


def paired_t(method: dict[int, float], baseline: dict[int, float], level: float = 0.95):
    """(mean diff, lo, hi, n seeds) of method - baseline over the seeds both have."""
    seeds = sorted(set(method) & set(baseline))
    if not seeds:
        return None
    mean, lo, hi = t_interval([method[s] - baseline[s] for s in seeds], level)
    return mean, lo, hi, len(seeds)


def paired_bootstrap(method: Sequence[JobScores], baseline: Sequence[JobScores], split: str, resamples: int = 10000,
                     seed: int = 0, level: float = 0.95, ids: Sequence[str] | None = None):
    """(mean diff, lo, hi): percentile interval of the mean over seeds of the per-seed mean difference, the test
    examples resampled with replacement within each seed (the same draw for method and baseline)."""
    by_seed = {job.seed: job.em.get(split, {}) for job in baseline}
    diffs = []
    for job in method:
        base = by_seed.get(job.seed)
        if not base:
            continue
        keys = [k for k in (ids if ids is not None else job.em.get(split, {})) if k in base and k in job.em[split]]
        if keys:
            diffs.append(np.array([job.em[split][k] - base[k] for k in keys]))
    if not diffs:
        return None
    rng = np.random.default_rng(seed)
    totals = np.zeros(resamples)
    for d in diffs:
        picks = rng.integers(0, len(d), size=(resamples, len(d)))
        totals += d[picks].mean(axis=1)
    totals /= len(diffs)
    point = float(np.mean([d.mean() for d in diffs]))
    tail = (1 - level) / 2 * 100
    return point, float(np.percentile(totals, tail)), float(np.percentile(totals, 100 - tail))
