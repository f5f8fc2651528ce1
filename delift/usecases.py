"""The data each fine-tuning stage needs (METHOD.md sections 2 and 5), assembled from the configs.

- ``instruction_tuning`` (use case 1): pool = ``data`` train split; train on the subset; test =
  ``data`` test split.
- ``task_specific`` (use case 2): pool = ``data`` train split; Q = the TARGET task's own
  ``usecase.query_split`` (``usecase.target`` data config); train on the subset; test = the
  target's test split.
- ``continual`` (use case 3): pool = ``data`` (the new task) train split; P = ``usecase.existing``
  train split; train on P + subset; test = the new task's test split, plus P's test split under
  ``existing`` (forgetting).

Every training-side list (pool, Q, P) is decontaminated against every test split (``decontaminate:
true``, the default, :func:`delift.data.decontaminate.decontaminate`): an example whose instruction,
input or whole prompt equals or contains a test example's prompt is dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

from delift.config.schema import ExperimentConfig
from delift.data.decontaminate import decontaminate
from delift.data.loading import load_splits
from delift.data.records import Example

USECASES = ("instruction_tuning", "task_specific", "continual")
HEADLINE = ""  # key of the test split whose metrics are logged as <evaluation>/<metric>


@dataclass
class UsecaseData:
    """Everything a run selects from, conditions on, trains with and tests on."""

    name: str
    pool: list[Example]
    query: list[Example] | None = None  # Q, use case 2
    existing: list[Example] | None = None  # P, use case 3
    valid: list[Example] = field(default_factory=list)  # the pool's own valid split (``data.sizes.valid``)
    tests: dict[str, list[Example]] = field(default_factory=dict)  # HEADLINE -> main test split
    counts: dict[str, int] = field(default_factory=dict)  # sizes and decontamination counts, logged as metrics
    sources: dict[str, Any] = field(default_factory=dict)  # config key -> where its rows came from (run.json)

    def train_set(self, subset: Sequence[Example]) -> list[Example]:
        """What fine-tuning (and ICL retrieval) uses: the subset, or P + subset in use case 3."""
        if self.existing is None:
            return list(subset)
        chosen = {ex.id for ex in self.existing}
        return list(self.existing) + [ex for ex in subset if ex.id not in chosen]


def _query_split(cfg: ExperimentConfig, target: Any) -> list[Example]:
    split = cfg.usecase.query_split
    query = list(getattr(target, split))
    if cfg.usecase.query_size is not None:
        query = query[: cfg.usecase.query_size]
    if not query:
        raise ValueError(f"usecase.query_split={split!r} of usecase.target ({cfg.usecase.target.name}) is empty; "
                         f"give usecase.target.sizes.{split} a size")
    return query


def load_usecase_data(cfg: ExperimentConfig) -> UsecaseData:
    """Load and split every dataset the configured use case needs, with the run's seed."""
    name = cfg.usecase.name
    shared = cfg.paths.shared_datasets
    main = load_splits(cfg.data, cfg.seed, shared)
    data = UsecaseData(name=name, pool=list(main.train), valid=list(main.valid), sources={"data": main.source})
    if name == "task_specific":
        target = load_splits(cfg.usecase.target, cfg.seed, shared)
        data.sources["usecase.target"] = target.source
        data.query = _query_split(cfg, target)
        data.tests[HEADLINE] = list(target.test)
    else:
        data.tests[HEADLINE] = list(main.test)
    if name == "continual":
        existing = load_splits(cfg.usecase.existing, cfg.seed, shared)
        data.sources["usecase.existing"] = existing.source
        data.existing = list(existing.train)
        data.tests["existing"] = list(existing.test)
    if not data.tests[HEADLINE]:
        raise ValueError(f"use case {name}: the test split is empty; set its data.sizes.test")

    tests = list(data.tests.values())
    for part in (("pool", "query", "existing", "valid") if cfg.decontaminate else ()):
        examples = getattr(data, part)
        if not examples:
            continue
        kept, dropped = decontaminate(examples, [ex for split in tests for ex in split], name=part)
        setattr(data, part, kept)
        data.counts[f"{part}/decontaminated"] = dropped
    data.counts.update({"query/size": len(data.query or []), "existing/size": len(data.existing or []),
                        **{f"test{'/' + key if key else ''}/size": len(split) for key, split in data.tests.items()}})
    return data
