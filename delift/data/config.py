"""The ``data`` config group's dataclasses (``conf/data/*.yaml``; also ``usecase.target`` / ``usecase.existing``).

Schema and runtime settings alike: :mod:`delift.config.schema` composes them into the experiment config,
and the data layer reads them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, List, Optional

from omegaconf import MISSING

from delift.config.checks import Problems, at_least, choice
from delift.data.records import generated_format
from delift.data.tasks import TASK_NAMES


@dataclass
class OfflineCopyConfig:
    root: str = "shared"  # shared (paths.shared_datasets) | fixtures (packaged samples)
    files: List[str] = field(default_factory=list)
    note: Optional[str] = None

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "root", self.root, ("shared", "fixtures"))
        if not self.files:
            found["files"] = "empty: name at least one file"
        return found


@dataclass
class RowFilterConfig:
    key: str = MISSING  # metadata key, e.g. template
    include: Optional[List[str]] = None  # null = any value
    exclude: List[str] = field(default_factory=list)


@dataclass
class SizesConfig:
    train: Optional[int] = None  # null = all remaining (one split at most)
    valid: Optional[int] = 0
    test: Optional[int] = None

    def problems(self) -> Problems:
        found: Problems = {}
        for name in ("train", "valid", "test"):
            at_least(found, name, getattr(self, name), 0)
        if [self.train, self.valid, self.test].count(None) > 1:
            found["train"] = "at most one of train/valid/test may be null (all remaining)"
        return found


@dataclass
class SyntheticConfig:
    """``format: synthetic`` (delift.data.synthetic), ``data.synthetic``: how many examples, the near-duplicate share and the seed."""

    n: int = 120
    near_duplicate_rate: float = 0.2
    seed: int = 0

    def problems(self) -> Problems:
        found: Problems = {}
        at_least(found, "n", self.n, 1)
        if not 0.0 <= self.near_duplicate_rate < 1.0:
            found["near_duplicate_rate"] = f"{self.near_duplicate_rate!r}: must be in [0, 1)"
        return found


@dataclass
class StructuredConfig:
    """``format: structured`` (delift.data.structured): T tasks x m examples, optionally mixed with real rows."""

    num_tasks: int = 8  # T: the first T of ``tasks`` (default: the generator's catalogue, in order)
    per_task: int = 25  # m: examples of each task
    tasks: Optional[List[str]] = None  # task names to draw from; null = the catalogue
    seed: int = 0  # fixes the pool itself; the run seed only changes the split
    mix_rows: int = 0  # real rows mixed in (metadata task "mix"), drawn with the seed
    mix_file: str = "alpaca/train.jsonl"  # their file: absolute, or relative to paths.shared_datasets
    mix_format: str = "alpaca"

    def problems(self) -> Problems:
        found: Problems = {}
        names = list(TASK_NAMES if self.tasks is None else self.tasks)
        unknown = [name for name in names if name not in TASK_NAMES]
        if unknown:
            found["tasks"] = f"unknown task(s) {unknown}; known: {', '.join(TASK_NAMES)}"
        elif len(set(names)) != len(names):
            found["tasks"] = "a task is listed twice"
        if not 1 <= self.num_tasks <= len(names):
            found["num_tasks"] = f"{self.num_tasks!r}: must be in [1, {len(names)}] (the tasks available)"
        at_least(found, "per_task", self.per_task, 1)
        at_least(found, "mix_rows", self.mix_rows, 0)
        return found


@dataclass
class DataConfig:
    """One dataset (``conf/data/*.yaml``); also the nested ``usecase.target`` / ``usecase.existing``."""

    name: str = MISSING
    format: str = MISSING  # a formatter name (delift.data.formatters), synthetic or structured
    hub_id: Optional[str] = None
    hub_config: Any = None  # one config name, a list of them (P3 templates), or null
    hub_split: Optional[str] = "train"
    revision: Optional[str] = None
    local_path: Optional[str] = None  # a local file or save_to_disk folder read INSTEAD of hub / offline copy
    offline_copy: Optional[OfflineCopyConfig] = None
    max_rows: Optional[int] = None
    on_bad_row: str = "error"  # error | skip
    row_filter: Optional[RowFilterConfig] = None
    sizes: SizesConfig = field(default_factory=SizesConfig)
    split_seed: Optional[int] = None  # seeds the train/valid/test split; null = the run seed (``seed``)
    synthetic: Optional[SyntheticConfig] = None
    structured: Optional[StructuredConfig] = None

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "on_bad_row", self.on_bad_row, ("error", "skip"))
        at_least(found, "max_rows", self.max_rows, 0)
        at_least(found, "split_seed", self.split_seed, 0)  # numpy seeds are non-negative
        generated = generated_format(self.format)
        if generated is not None and generated.needs is not None and getattr(self, generated.name, None) is None:
            found[generated.name] = generated.needs
        if self.local_path is not None and not str(self.local_path).strip():
            found["local_path"] = "empty: give a file or folder, or null to use the hub / offline copy"
        elif generated is not None and self.local_path is not None:
            found["local_path"] = f"set, but format is {self.format} (generated, never read): pick one"
        return found
