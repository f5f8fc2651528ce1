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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from delift.data.errors import DataFormatError
from delift.data.fields import register_generated
from delift.data.formatters import get_formatter
from delift.data.readers import check_exists, iter_rows
from delift.data.records import Example

log = logging.getLogger(__name__)

SOURCE = "structured"
MIX_TASK = "mix"  # metadata["task"] of the real rows mixed in
_REDRAWS = 50  # payload redraws before accepting a repeat (tiny payload spaces)

WORDS: tuple[str, ...] = (
    "cat", "dog", "sun", "map", "cup", "red", "box", "hat", "pen", "owl", "fig", "bus", "jam", "key", "ink",
    "apple", "river", "stone", "cloud", "bread", "chair", "plant", "train", "light", "ocean", "tiger", "lemon",
    "music", "paper", "house", "green", "table",
)
VOWELS = set("aeiou")

Payload = tuple  # what a task draws: words or numbers


@dataclass(frozen=True)
class Task:
    """One transformation: the fixed instruction, a payload drawer, how the payload reads, the answer."""

    name: str
    instruction: str
    draw: Callable[[random.Random], Payload]
    show: Callable[[Payload], str]
    answer: Callable[[Payload], str]


def _words(low: int, high: int) -> Callable[[random.Random], Payload]:
    return lambda rng: tuple(rng.sample(WORDS, rng.randint(low, high)))


def _numbers(low: int, high: int, top: int) -> Callable[[random.Random], Payload]:
    return lambda rng: tuple(rng.randint(1, top) for _ in range(rng.randint(low, high)))


def _spaced(payload: Payload) -> str:
    return " ".join(str(x) for x in payload)


def _shift(word: str) -> str:
    return "".join("a" if c == "z" else chr(ord(c) + 1) for c in word)


TASKS: tuple[Task, ...] = (
    Task("reverse_words", "Reverse the order of the words.", _words(3, 4), _spaced, lambda p: " ".join(p[::-1])),
    Task("sort_digits", "Sort the digits.", _numbers(4, 5, 9), _spaced, lambda p: " ".join(map(str, sorted(p)))),
    Task("upper_count", "Uppercase the word and count its letters.", _words(1, 1), _spaced,
         lambda p: f"{p[0].upper()} {len(p[0])}"),
    Task("initials", "Give the first letter of each word.", _words(3, 4), _spaced,
         lambda p: "".join(f"{w[0].upper()}." for w in p)),
    Task("add", "Add the two numbers.", _numbers(2, 2, 50), lambda p: f"{p[0]}+{p[1]}",
         lambda p: f"{p[0]}+{p[1]}={p[0] + p[1]}"),
    Task("last_letters", "Write the last letter of each word.", _words(3, 4), _spaced,
         lambda p: ",".join(w[-1] for w in p)),
    Task("double_each", "Double each number.", _numbers(3, 3, 20), _spaced, lambda p: " ".join(str(2 * x) for x in p)),
    Task("count_vowels", "Count the vowels in the word.", _words(1, 1), _spaced,
         lambda p: f"vowels: {sum(c in VOWELS for c in p[0])}"),
    Task("bracket", "Wrap each word in brackets.", _words(2, 3), _spaced, lambda p: " ".join(f"[{w}]" for w in p)),
    Task("shift_letters", "Shift each letter forward by one.", _words(1, 1), _spaced, lambda p: _shift(p[0])),
    Task("max_number", "Find the largest number.", _numbers(3, 4, 99), _spaced, lambda p: f"max {max(p)}"),
    Task("repeat_three", "Repeat the word three times.", _words(1, 1), _spaced, lambda p: "-".join([p[0]] * 3)),
    Task("drop_vowels", "Remove the vowels from the word.", _words(1, 1), _spaced,
         lambda p: "".join(c for c in p[0] if c not in VOWELS) or "-"),
    Task("parity", "Label each number even or odd.", _numbers(3, 3, 30), _spaced,
         lambda p: " ".join("E" if x % 2 == 0 else "O" for x in p)),
    Task("word_lengths", "Give the length of each word.", _words(2, 3), _spaced,
         lambda p: "/".join(str(len(w)) for w in p)),
    Task("first_last", "Give the first and the last word.", _words(3, 4), _spaced, lambda p: f"{p[0]} ... {p[-1]}"),
)
TASK_NAMES: tuple[str, ...] = tuple(task.name for task in TASKS)
_BY_NAME = {task.name: task for task in TASKS}


def task_list(num_tasks: int, tasks: Sequence[str] | None = None) -> list[Task]:
    """The first ``num_tasks`` of ``tasks`` (default: the catalogue :data:`TASK_NAMES`, in order)."""
    names = list(TASK_NAMES if tasks is None else tasks)
    unknown = [name for name in names if name not in _BY_NAME]
    if unknown:
        raise ValueError(f"data.structured.tasks: unknown task(s) {unknown}; known: {', '.join(TASK_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"data.structured.tasks: a task is listed twice in {names}")
    if not 1 <= num_tasks <= len(names):
        raise ValueError(f"data.structured.num_tasks={num_tasks}: must be in [1, {len(names)}] (the tasks available)")
    return [_BY_NAME[name] for name in names[:num_tasks]]


def task_examples(task: Task, count: int, rng: random.Random) -> list[tuple[str, str]]:
    """``count`` (input, output) pairs of ``task``; payloads repeat only when the task has too few."""
    pairs, seen = [], set()
    for _ in range(count):
        for _ in range(_REDRAWS):
            payload = task.draw(rng)
            if payload not in seen:
                break
        seen.add(payload)
        pairs.append((task.show(payload), task.answer(payload)))
    return pairs


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
