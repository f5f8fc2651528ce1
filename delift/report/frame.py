"""The tidy results frame: one dict per (setting, method, evaluation, split, metric) with its statistics.

Columns are found in the jobs, not fixed: every ``<evaluation>[/<split>]/<metric>`` key of
metrics.json whose metric is a per-example score (a score key a metric class declares, see
:mod:`delift.report.parts`, or a numeric field of predictions.jsonl). Values are the seeds' numbers (null and NaN
are missing); a row never mixes settings. Each frame row also carries the paired comparisons of its
method against Random and any other named baseline of the same setting.
"""

from __future__ import annotations

import math
from typing import Any

from delift.evaluation.metrics import metric_key
from delift.report.jobs import Group, Job, cache_reads, display_keys, number
from delift.report.labels import setting_label
from delift.report.paired import Comparison, compare
from delift.report.parts import Parts
from delift.report.stats import BOOTSTRAP_RESAMPLES, mean_std, t_interval

BOOKKEEPING = {"evaluation", "split", "id", "prompt", "reference", "generation", "shown_ids"}
BUDGET_KEY = "budget_fraction"


def score_names(jobs: list[Job], parts: Parts) -> set[str]:
    """The score keys the metrics declare plus every numeric per-example field of the jobs' predictions."""
    names = set(parts.metrics)
    for job in jobs:
        for row in job.predictions():
            names.update(k for k, v in row.items() if k not in BOOKKEEPING and number(v) is not None)
    return names


def columns(jobs: list[Job], parts: Parts | None = None) -> list[tuple[str, str, str]]:
    """(evaluation, split, metric) of every score key in the jobs' metrics.json, in table order (the
    protocols' and metrics' declared column orders, then the others by name)."""
    parts = parts or Parts.of(jobs)
    names = score_names(jobs, parts)
    found: set[tuple[str, str, str]] = set()
    for job in jobs:
        for key in job.metrics:
            pieces = key.split("/")
            if len(pieces) in (2, 3) and pieces[-1] in names:
                found.add((pieces[0], pieces[1] if len(pieces) == 3 else "", pieces[-1]))
    evaluations = sorted({c[0] for c in found}, key=lambda name: parts.protocol(name).order)
    metrics = sorted({c[2] for c in found}, key=lambda key: parts.metric(key).order)
    splits = sorted({c[1] for c in found}, key=lambda s: (s != "", s))
    return [(e, s, m) for s in splits for e in evaluations for m in metrics if (e, s, m) in found]


def group_parts(groups: list[Group]) -> Parts:
    return Parts.of([job for group in groups for job in group.jobs])


def sort_groups(groups: list[Group], keys: list[str], parts: Parts | None = None) -> list[Group]:
    """Row order: by setting (budget first when it varies), then the selectors' declared row order."""
    parts = parts or group_parts(groups)
    keys = sorted(keys, key=lambda k: k != BUDGET_KEY)

    def value_key(value: Any) -> tuple:
        return (0, value, "") if isinstance(value, (int, float)) and not isinstance(value, bool) else (1, 0, str(value))

    return sorted(groups, key=lambda g: ([value_key(g.setting[k]) for k in keys], parts.selector(g.selector).order,
                                         sorted((k, str(v)) for k, v in g.variant.items())))


def reference(groups: list[Group], group: Group, selector: str, parts: Parts) -> Group | None:
    """The ``selector`` group of ``group``'s setting. Initial and Full ignore the budget: without one at
    this budget, the one whose setting differs only in ``budget_fraction`` (lowest budget first)."""
    same = [g for g in groups if g.selector == selector and g.setting == group.setting]
    if not same and parts.selector(selector).reference:
        rest = {k: v for k, v in group.setting.items() if k != BUDGET_KEY}
        same = sorted((g for g in groups if g.selector == selector
                       and {k: v for k, v in g.setting.items() if k != BUDGET_KEY} == rest),
                      key=lambda g: number(g.setting.get(BUDGET_KEY)) or 0.0)
    plain = [g for g in same if not g.variant]
    return (plain or same or [None])[0]


def group_summary(group: Group, shown: list[str], parts: Parts) -> dict[str, Any]:
    """What every frame row of a group shares: identity, budget, SDF and selection cost (seed means);
    labels name the ``shown`` keys only (:func:`~delift.report.jobs.display_keys`)."""
    sdf = [s / p for s, p in ((job.score("subset/size"), job.score("pool/size")) for job in group.jobs)
           if s is not None and p]
    budget = number(group.jobs[0].config.get(BUDGET_KEY))
    label = {k: group.setting[k] for k in shown}
    panel = {k: v for k, v in label.items() if k != BUDGET_KEY}
    return {"setting": group.setting, "setting_label": setting_label(label), "panel": setting_label(panel),
            "selector": group.selector, "variant": group.variant, "method": parts.method_label(group.selector, group.variant), "budget_fraction": budget,
            "selector_label": parts.selector(group.selector).label, "reference": parts.selector(group.selector).reference, "whole_pool": parts.selector(group.selector).whole_pool,
            "skip_training": parts.selector(group.selector).skip_training,
            "reference_baseline": parts.selector(group.selector).baseline,
            "sdf": math.fsum(sdf) / len(sdf) if sdf else None, "selection_s": group.mean("time/selection_s"),
            "total_s": group.mean("time/total_s"),
            "selection_cached": sum(1 for job in group.jobs if cache_reads(job.subset.get("info"))),  # seeds
            "seeds": group.seeds, "jobs": [str(job.path) for job in group.jobs]}


def build_frame(groups: list[Group], keys: list[str], cols: list[tuple[str, str, str]],
                baselines: tuple[str, ...] = ("random",), seed: int = 0,
                resamples: int = BOOTSTRAP_RESAMPLES, parts: Parts | None = None) -> list[dict[str, Any]]:
    """The tidy frame of ``groups`` (already grouped by setting) over ``cols``; see the module docstring.
    Each entry also carries what the parts declare: its protocol's and metric's labels, the metric's bounds."""
    parts = parts or group_parts(groups)
    frame = []
    ordered_groups = sort_groups(groups, keys, parts)
    row_of = {id(g): i for i, g in enumerate(ordered_groups)}
    shown = display_keys(groups, keys)
    for index, group in enumerate(ordered_groups):
        shared = group_summary(group, shown, parts)
        refs = {b: reference(groups, group, b, parts) for b in baselines}
        shared["ref_rows"] = {name: None if ref is None else row_of[id(ref)]  # row index of each reference
                              for name, ref in {**refs, **{m: reference(groups, group, m, parts)
                                                           for m in parts.references()}}.items()}
        for evaluation, split, metric in cols:
            values = group.values(metric_key(evaluation, split, metric))
            mean, std = mean_std(values) if values else (None, None)
            interval = t_interval(values)
            vs: dict[str, Comparison] = {}
            for name, ref in refs.items():
                if ref is not None and ref is not group:
                    found = compare(group, ref, evaluation, split, metric, seed=seed, resamples=resamples)
                    if found is not None:
                        vs[name] = found
            frame.append({**shared, "row": index, "evaluation": evaluation, "split": split, "metric": metric,
                          "evaluation_label": parts.protocol(evaluation).label, "metric_label": parts.metric(metric).label,
                          "bounds": parts.metric(metric).bounds,
                          "key": metric_key(evaluation, split, metric), "n": len(values), "values": values,
                          "mean": mean, "std": std, "ci_low": interval[0] if interval else None,
                          "ci_high": interval[1] if interval else None, "vs": vs})
    return frame
