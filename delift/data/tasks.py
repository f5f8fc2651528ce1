"""The task catalogue of the ``structured`` pool (:mod:`delift.data.structured`): short deterministic
transformations, each with its own output format that the instruction does not spell out."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Sequence

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
