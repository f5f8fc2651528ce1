"""A SYNTHETIC pool with known structure (``data=structured``): T tasks x m examples, seeded.

Each task is a short deterministic transformation with its own output format, which the instruction
does not spell out (``upper_count``: ``planet`` -> ``PLANET 6``): one shown example of a task tells the
model the format of every other example of that task, examples of other tasks do not. So the exact
utility kernel has blocks off the diagonal, and a kernel approximation or a selector can be judged on
them (task coverage, the share of picks from a target task): see :mod:`delift.kernel.agreement`.

Every example records its task in ``metadata["task"]`` (and its index within the task in
``metadata["index"]``); rows mixed in from a real dataset (``mix_rows``) get ``task = MIX_TASK``.
The pool is shuffled with the seed, so the first n rows mix the tasks. This is NOT a real dataset.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import replace
from pathlib import Path
from typing import Sequence

from delift.data.readers import check_exists, iter_rows
from delift.data.records import DataFormatError, Example, get_formatter, register_generated
from delift.data.tasks import task_examples, task_list

log = logging.getLogger(__name__)

SOURCE = "structured"
MIX_TASK = "mix"  # metadata["task"] of the real rows mixed in


def mix_examples(path: str | os.PathLike, count: int, rng: random.Random,
                 fmt: str = "alpaca") -> tuple[list[Example], int]:
    """``count`` rows of the ``fmt`` file at ``path`` drawn with ``rng``, tagged :data:`MIX_TASK`, and how many bad
    rows were skipped (counted in the source record and logged)."""
    formatter = get_formatter(fmt)
    rows, skipped = [], 0
    for location, row in iter_rows(Path(path)):
        try:
            rows.append(formatter(row, str(location)))
        except DataFormatError:
            skipped += 1
    if skipped:
        log.warning("data.structured.mix_file %s: %d bad %s rows skipped", path, skipped, fmt)
    if len(rows) < count:
        raise ValueError(f"data.structured.mix_rows={count}: {path} has only {len(rows)} usable {fmt} rows "
                         f"({skipped} bad ones skipped)")
    picked = sorted(rng.sample(range(len(rows)), count))
    return [replace(rows[i], metadata={**rows[i].metadata, "task": MIX_TASK}) for i in picked], skipped


def generate_structured(num_tasks: int, per_task: int, seed: int, tasks: Sequence[str] | None = None,
                        mix: Sequence[Example] = ()) -> list[Example]:
    """``num_tasks`` x ``per_task`` SYNTHETIC examples plus the ``mix`` rows, shuffled with ``seed``."""
    if per_task < 1:
        raise ValueError(f"data.structured.per_task={per_task}: must be >= 1")
    chosen = task_list(num_tasks, tasks)
    rng = random.Random(seed)
    pool: list[tuple[str, str, str, dict]] = []
    for task in chosen:
        for index, (text, answer) in enumerate(task_examples(task, per_task, rng)):
            pool.append((task.instruction, text, answer, {"task": task.name, "index": index}))
    items: list[Example | tuple] = [*pool, *mix]
    rng.shuffle(items)
    width = max(4, len(str(len(items) - 1)))
    return [item if isinstance(item, Example) else
            Example(f"structured-{position:0{width}d}", item[0], item[1], item[2], SOURCE, item[3])
            for position, item in enumerate(items)]


def mix_path(mix_file: str, shared_datasets: str | os.PathLike | None) -> Path:
    """``mix_file`` as is when absolute, else under the shared datasets folder ``shared_datasets``."""
    path = Path(mix_file).expanduser()
    if not path.is_absolute():
        if shared_datasets is None:
            raise ValueError(f"data.structured.mix_file={mix_file!r} is relative, but no shared datasets folder "
                             "is given (paths.shared_datasets / DELIFT_SHARED_DATASETS)")
        path = Path(str(shared_datasets)).expanduser() / path
    check_exists(path, "data.structured.mix_file")  # absent, dangling or looping: named, exit 2 in the CLI
    return path


def load_structured(settings, max_rows: int | None, name: str,
                    shared_datasets: str | os.PathLike | None) -> tuple[list[Example], dict]:
    """The pool a ``structured`` data config (a ``StructuredConfig``) describes, and its source record;
    ``shared_datasets`` is the folder a relative ``mix_file`` is under."""
    if settings is None:
        raise ValueError(f"data '{name}': format structured needs data.structured {{num_tasks, per_task, seed, ...}}")
    mix: list[Example] = []
    source, skipped = None, 0
    if settings.mix_rows:
        source = mix_path(settings.mix_file, shared_datasets)
        mix, skipped = mix_examples(source, int(settings.mix_rows), random.Random(f"mix-{settings.seed}"),
                                    settings.mix_format)
    examples = generate_structured(int(settings.num_tasks), int(settings.per_task), int(settings.seed),
                                   settings.tasks, mix)
    if max_rows is not None:
        examples = examples[:max_rows]
    record = {"kind": SOURCE, "fixture": False, "note": "SYNTHETIC tasks generated by delift",
              "sources": [str(source)] if source else [], "skipped_bad_rows": skipped, "filtered_out": 0}
    return examples, record


@register_generated(SOURCE, needs="format structured needs {num_tasks, per_task, seed, ...}",
                    caveat="structured synthetic tasks generated by delift (data=structured), not a real instruction "
                           "dataset")
def load_generated(data_cfg, max_rows: int | None, shared_datasets: str | os.PathLike | None) -> tuple[list[Example], dict]:
    """``data.format=structured``: :func:`load_structured` of ``data.structured``."""
    return load_structured(data_cfg.structured, max_rows, data_cfg.name, shared_datasets)
