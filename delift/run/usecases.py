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
from typing import Any, Callable, Mapping, Sequence

from delift.config.schema import UsecaseConfig
from delift.data.config import DataConfig
from delift.data.decontaminate import decontaminate
from delift.data.loading import load_splits
from delift.data.records import Example
from delift.data.splits import DataSplits

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


# assemble(data, main splits, nested splits by key, use-case config): set the tests and Q or P on ``data``
Assemble = Callable[[UsecaseData, DataSplits, Mapping[str, DataSplits], UsecaseConfig], None]


@dataclass(frozen=True)
class Usecase:
    """One use case: the nested data configs it reads (``usecase.<key>``) and how it assembles the data."""

    reads: tuple[str, ...]
    assemble: Assemble


def _instruction_tuning(data: UsecaseData, main: DataSplits, nested: Mapping[str, DataSplits],
                        cfg: UsecaseConfig) -> None:
    data.tests[HEADLINE] = list(main.test)


def _task_specific(data: UsecaseData, main: DataSplits, nested: Mapping[str, DataSplits], cfg: UsecaseConfig) -> None:
    target = nested["target"]
    data.query = _query_split(cfg, target)
    data.tests[HEADLINE] = list(target.test)


def _continual(data: UsecaseData, main: DataSplits, nested: Mapping[str, DataSplits], cfg: UsecaseConfig) -> None:
    data.tests[HEADLINE] = list(main.test)
    data.existing = list(nested["existing"].train)
    data.tests["existing"] = list(nested["existing"].test)


USECASES: dict[str, Usecase] = {
    "instruction_tuning": Usecase(reads=(), assemble=_instruction_tuning),
    "task_specific": Usecase(reads=("target",), assemble=_task_specific),
    "continual": Usecase(reads=("existing",), assemble=_continual),
}


def usecase_of(cfg: UsecaseConfig) -> Usecase:
    if cfg.name not in USECASES:
        raise ValueError(f"usecase.name={cfg.name!r}: expected one of {', '.join(USECASES)}")
    return USECASES[cfg.name]


def data_configs(data: DataConfig, usecase: UsecaseConfig) -> dict[str, DataConfig]:
    """Every data config a run reads: ``data`` and the use case's nested ones (``usecase.target``, ...)."""
    found = {"data": data}
    for key in usecase_of(usecase).reads:
        nested = getattr(usecase, key)
        if nested is not None:
            found[f"usecase.{key}"] = nested
    return found


def _query_split(cfg: UsecaseConfig, target: DataSplits) -> list[Example]:
    split = cfg.query_split
    query = list(getattr(target, split))
    if cfg.query_size is not None:
        query = query[: cfg.query_size]
    if not query:
        raise ValueError(f"usecase.query_split={split!r} of usecase.target ({cfg.target.name}) is empty; "
                         f"give usecase.target.sizes.{split} a size")
    return query


def load_usecase_data(usecase: UsecaseConfig, data: DataConfig, seed: int, shared_datasets: str | None = None,
                      decontaminate_data: bool = True) -> UsecaseData:
    """Load and split every dataset the use case needs (``data``, then its nested ones) with ``seed``;
    ``decontaminate_data``: the run's ``decontaminate``."""
    kind = usecase_of(usecase)
    name = usecase.name
    main = load_splits(data, seed, shared_datasets)
    found = UsecaseData(name=name, pool=list(main.train), valid=list(main.valid), sources={"data": main.source})
    nested = {}
    for key in kind.reads:
        nested[key] = load_splits(getattr(usecase, key), seed, shared_datasets)
        found.sources[f"usecase.{key}"] = nested[key].source
    kind.assemble(found, main, nested, usecase)
    if not found.tests[HEADLINE]:
        raise ValueError(f"use case {name}: the test split is empty; set its data.sizes.test")

    tests = list(found.tests.values())
    for part in (("pool", "query", "existing", "valid") if decontaminate_data else ()):
        examples = getattr(found, part)
        if not examples:
            continue
        kept, dropped = decontaminate(examples, [ex for split in tests for ex in split], name=part)
        setattr(found, part, kept)
        found.counts[f"{part}/decontaminated"] = dropped
    found.counts.update({"query/size": len(found.query or []), "existing/size": len(found.existing or []),
                         **{f"test{'/' + key if key else ''}/size": len(split) for key, split in found.tests.items()}})
    return found
