"""Seeded train/valid/test splits, so every method in a comparison sees the same partition."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Mapping, Sequence, Union

import numpy as np

from delift.data.config import SizesConfig
from delift.data.records import DataFormatError, Example

SPLIT_NAMES = ("train", "valid", "test")

Sizes = Union[SizesConfig, Mapping[str, Union[int, None]]]


@dataclass
class DataSplits:
    """Disjoint example lists; ``valid`` may be empty. ``source``: where the examples came from
    (filled by :func:`delift.data.loading.load_splits`; not part of equality)."""

    train: list[Example]
    valid: list[Example]
    test: list[Example]
    source: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in SPLIT_NAMES}


def check_unique_ids(examples: Sequence[Example]) -> None:
    """Selection and results are keyed by id, so a repeated id would silently merge two rows."""
    first_seen: dict[str, int] = {}
    for index, example in enumerate(examples):
        if example.id in first_seen:
            raise DataFormatError(
                f"examples[{index}] (source '{example.source}')", "id",
                f"duplicate id {example.id!r}, first seen at examples[{first_seen[example.id]}]",
            )
        first_seen[example.id] = index


def _resolve_sizes(sizes: Mapping[str, int | None], available: int, where: str) -> dict[str, int]:
    """Concrete sizes; a ``None`` size takes whatever the fixed sizes leave. ``where`` prefixes errors."""
    unknown = sorted(set(sizes) - set(SPLIT_NAMES))
    if unknown:
        raise ValueError(f"{where}unknown split(s) {unknown} in data.sizes; expected {list(SPLIT_NAMES)}")
    requested = {name: sizes.get(name, 0) for name in SPLIT_NAMES}
    open_ended = [name for name, size in requested.items() if size is None]
    if len(open_ended) > 1:
        raise ValueError(f"{where}at most one of data.sizes may be null (all remaining), got {open_ended}")
    resolved: dict[str, int] = {}
    used = 0
    for name in SPLIT_NAMES:
        size = requested[name]
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
            raise ValueError(f"{where}data.sizes.{name} must be a non-negative int or null, got {size!r}")
        if used + size > available:
            raise ValueError(
                f"{where}data.sizes.{name}={size} but only {available - used} of {available} examples "
                f"remain after {dict(resolved)}; lower data.sizes or load more rows"
            )
        resolved[name] = int(size)
        used += int(size)
    for name in open_ended:
        resolved[name] = available - used
    return {name: resolved[name] for name in SPLIT_NAMES}


def near_duplicate_groups(examples: Sequence[Example]) -> list[str]:
    """Each example's group: the id at the root of its ``metadata["near_duplicate_of"]`` chain."""
    by_id = {ex.id: ex for ex in examples}

    def root(example: Example) -> str:
        seen = {example.id}
        while (parent := example.metadata.get("near_duplicate_of")) in by_id and parent not in seen:
            seen.add(parent)
            example = by_id[parent]
        return example.id

    return [root(ex) for ex in examples]


def make_splits(
    examples: Sequence[Example], sizes: Sizes, seed: int, *, data_name: str | None = None
) -> DataSplits:
    """Permute with ``numpy.random.default_rng(seed)``, then take train, valid, test in order.

    Near-duplicates (``metadata["near_duplicate_of"]``) stay in the split of their original, so a
    test example never has a copy in the training pool; without them this is a plain permutation.
    ``data_name`` (the data config's name) prefixes size errors, so the dataset at fault is named.
    """
    check_unique_ids(examples)
    if isinstance(sizes, SizesConfig):
        sizes = asdict(sizes)
    where = f"data '{data_name}': " if data_name else ""
    resolved = _resolve_sizes(sizes, len(examples), where)
    groups = near_duplicate_groups(examples)
    members: dict[str, list[int]] = {}
    for index, group in enumerate(groups):
        members.setdefault(group, []).append(index)
    units = list(members.values())  # singletons unless the data has near-duplicates
    order = np.random.default_rng(seed).permutation(len(units))
    parts: dict[str, list[Example]] = {name: [] for name in SPLIT_NAMES}
    for unit in (units[int(i)] for i in order):
        for name in SPLIT_NAMES:  # the first split with room for the whole group takes it
            if len(parts[name]) + len(unit) <= resolved[name]:
                parts[name].extend(examples[i] for i in unit)
                break
    short = {name: f"{len(parts[name])}/{resolved[name]}" for name in SPLIT_NAMES if len(parts[name]) < resolved[name]}
    if short:
        raise ValueError(f"{where}cannot fill data.sizes {short} without splitting near-duplicate groups; "
                         "lower data.sizes or generate more examples")
    return DataSplits(**parts)
