"""SYNTHETIC quickstart data generated in code: runs anywhere offline, same seed -> same examples.

This is NOT a real dataset. Every example has ``source="synthetic"`` and
``metadata["family"]``; near-duplicates also carry ``metadata["near_duplicate_of"]`` (the id of
an earlier original example with the same input payload and the same answer but a reworded
instruction). Near-duplicates give subset-selection methods redundancy to find.

Families (short answers a 135M instruct model can sometimes produce): ``sum``, ``reverse``,
``uppercase``, ``sort``, ``capital``, ``antonym``, ``count_letter``, ``unit_conversion``; each
has three instruction paraphrases, some of which put the payload in ``input``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from typing import Any, Callable

from delift.data.config import SyntheticConfig
from delift.data.records import Example, register_generated

log = logging.getLogger(__name__)
FORMAT = "synthetic"  # data.format of this generator

CAPITALS: dict[str, str] = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Spain": "Madrid",
    "Germany": "Berlin", "Canada": "Ottawa", "Egypt": "Cairo", "Kenya": "Nairobi",
    "Peru": "Lima", "Norway": "Oslo", "Greece": "Athens", "Portugal": "Lisbon",
    "Russia": "Moscow", "China": "Beijing", "Australia": "Canberra", "Ireland": "Dublin",
    "Poland": "Warsaw", "Sweden": "Stockholm", "Thailand": "Bangkok", "Cuba": "Havana",
    "Austria": "Vienna", "Chile": "Santiago", "Finland": "Helsinki", "Hungary": "Budapest",
}
ANTONYMS: tuple[tuple[str, str], ...] = (
    ("hot", "cold"), ("wet", "dry"), ("fast", "slow"), ("happy", "sad"), ("open", "closed"),
    ("full", "empty"), ("strong", "weak"), ("rich", "poor"), ("push", "pull"), ("win", "lose"),
    ("buy", "sell"), ("true", "false"), ("inside", "outside"), ("above", "below"),
    ("first", "last"), ("north", "south"), ("love", "hate"), ("alive", "dead"),
    ("arrive", "depart"), ("always", "never"),
)
WORDS: tuple[str, ...] = (
    "apple", "banana", "planet", "garden", "window", "rocket", "pencil", "orange", "silver",
    "castle", "bottle", "dragon", "forest", "mirror", "summer", "yellow", "button", "candle",
    "jacket", "turtle", "letter", "coffee", "parrot", "cherry",
)
ADJECTIVES: tuple[str, ...] = ("good", "blue", "quiet", "happy", "little", "bright", "cold", "old")
NOUNS: tuple[str, ...] = ("morning", "river", "house", "garden", "dog", "star", "tea", "road")
UNITS: tuple[tuple[str, str, int], ...] = (
    ("kilometers", "meters", 1000), ("meters", "centimeters", 100),
    ("kilograms", "grams", 1000), ("hours", "minutes", 60), ("minutes", "seconds", 60),
    ("days", "hours", 24),
)

Params = dict[str, str]


@dataclass(frozen=True)
class Family:
    """One task: draws a payload, renders it with a paraphrase, and computes the answer."""

    name: str
    templates: tuple[tuple[str, str], ...]  # (instruction format, input format) paraphrases
    draw: Callable[[random.Random], Params]
    answer: Callable[[Params], str]


def _draw_sum(rng: random.Random) -> Params:
    return {"a": str(rng.randint(1, 50)), "b": str(rng.randint(1, 50))}


def _draw_word(rng: random.Random) -> Params:
    return {"word": rng.choice(WORDS)}


def _draw_phrase(rng: random.Random) -> Params:
    return {"phrase": f"{rng.choice(ADJECTIVES)} {rng.choice(NOUNS)}"}


def _draw_numbers(rng: random.Random) -> Params:
    return {"numbers": ", ".join(str(x) for x in rng.sample(range(1, 100), rng.randint(3, 5)))}


def _draw_country(rng: random.Random) -> Params:
    return {"country": rng.choice(sorted(CAPITALS))}


def _draw_antonym(rng: random.Random) -> Params:
    pair = rng.choice(ANTONYMS)
    word, opposite = pair if rng.random() < 0.5 else pair[::-1]
    return {"word": word, "opposite": opposite}


def _draw_letter(rng: random.Random) -> Params:
    word = rng.choice(WORDS)
    return {"word": word, "letter": rng.choice(sorted(set(word)))}


def _draw_units(rng: random.Random) -> Params:
    src, dst, factor = rng.choice(UNITS)
    return {"value": str(rng.randint(1, 12)), "src": src, "dst": dst, "factor": str(factor)}


FAMILIES: tuple[Family, ...] = (
    Family("sum", (("What is {a} + {b}?", ""), ("Add the two numbers.", "{a} and {b}"),
                   ("Compute the sum of {a} and {b}. Answer with a number.", "")),
           _draw_sum, lambda p: str(int(p["a"]) + int(p["b"]))),
    Family("reverse", (("Reverse the word '{word}'.", ""), ("Write this word backwards.", "{word}"),
                       ("Spell '{word}' in reverse order.", "")),
           _draw_word, lambda p: p["word"][::-1]),
    Family("uppercase", (("Convert '{phrase}' to uppercase.", ""),
                         ("Rewrite the phrase in capital letters.", "{phrase}"),
                         ("Write '{phrase}' in all caps.", "")),
           _draw_phrase, lambda p: p["phrase"].upper()),
    Family("sort", (("Sort these numbers from smallest to largest: {numbers}", ""),
                    ("Put the numbers in ascending order.", "{numbers}"),
                    ("Arrange in increasing order: {numbers}", "")),
           _draw_numbers,
           lambda p: ", ".join(str(x) for x in sorted(int(s) for s in p["numbers"].split(", ")))),
    Family("capital", (("What is the capital of {country}?", ""),
                       ("Name the capital city of the country.", "{country}"),
                       ("Which city is the capital of {country}?", "")),
           _draw_country, lambda p: CAPITALS[p["country"]]),
    Family("antonym", (("What is the opposite of '{word}'?", ""),
                       ("Give an antonym of the word.", "{word}"),
                       ("Write the antonym of '{word}'.", "")),
           _draw_antonym, lambda p: p["opposite"]),
    Family("count_letter", (("How many times does the letter '{letter}' appear in '{word}'?", ""),
                            ("Count the letter '{letter}' in the word.", "{word}"),
                            ("In the word '{word}', how many '{letter}' are there?", "")),
           _draw_letter, lambda p: str(p["word"].count(p["letter"]))),
    Family("unit_conversion", (("Convert {value} {src} to {dst}. Answer with a number.", ""),
                               ("How many {dst} are in {value} {src}?", ""),
                               ("Convert to {dst}.", "{value} {src}")),
           _draw_units, lambda p: str(int(p["value"]) * int(p["factor"]))),
)
_FAMILY_BY_NAME = {family.name: family for family in FAMILIES}
_MAX_REDRAWS = 20


def _tweak(instruction: str, rng: random.Random) -> str:
    """A tiny surface change that keeps the meaning (used on half the near-duplicates)."""
    options = [f"Please answer: {instruction}", f"{instruction} Be brief.",
               instruction[:1].lower() + instruction[1:]]
    return rng.choice(options)


def generate_synthetic(n: int, seed: int, near_duplicate_rate: float = 0.2) -> list[Example]:
    """``n`` SYNTHETIC examples; exactly ``round(n * rate)`` (at most n-1) are near-duplicates."""
    if n < 0:
        raise ValueError(f"synthetic.n must be >= 0, got {n}")
    if not 0.0 <= near_duplicate_rate < 1.0:
        raise ValueError(
            f"synthetic.near_duplicate_rate must be in [0, 1), got {near_duplicate_rate}"
        )
    rng = random.Random(seed)
    n_dups = min(round(n * near_duplicate_rate), max(n - 1, 0))
    dup_positions = set(rng.sample(range(1, n), n_dups)) if n_dups else set()
    width = max(4, len(str(max(n - 1, 0))))
    examples: list[Example] = []
    originals: list[tuple[Example, Params]] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for position in range(n):
        example_id = f"synth-{position:0{width}d}"
        if position in dup_positions:
            base, params = rng.choice(originals)
            family = _FAMILY_BY_NAME[base.metadata["family"]]
            template = rng.choice(
                [i for i in range(len(family.templates)) if i != base.metadata["template"]]
            )
            instruction, input_text = (fmt.format(**params) for fmt in family.templates[template])
            if rng.random() < 0.5:
                instruction = _tweak(instruction, rng)
            metadata = {"family": family.name, "template": template, "near_duplicate_of": base.id}
            examples.append(Example(example_id, instruction, input_text, base.output,
                                    "synthetic", metadata))
            continue
        family = rng.choice(FAMILIES)
        for _ in range(_MAX_REDRAWS):  # avoid accidental exact repeats among originals
            params = family.draw(rng)
            key = (family.name, tuple(sorted(params.items())))
            if key not in seen:
                break
        seen.add(key)
        template = rng.randrange(len(family.templates))
        instruction, input_text = (fmt.format(**params) for fmt in family.templates[template])
        example = Example(example_id, instruction, input_text, family.answer(params),
                          "synthetic", {"family": family.name, "template": template})
        examples.append(example)
        originals.append((example, params))
    return examples


@register_generated(FORMAT, needs="format synthetic needs {n, near_duplicate_rate, seed}",
                    caveat="synthetic quickstart data generated by delift, not a real instruction dataset")
def load_synthetic(data_cfg: Any, max_rows: int | None, shared_datasets: Any) -> tuple[list[Example], dict]:
    """``data.format=synthetic``: the examples ``data.synthetic`` describes (at most ``max_rows``), and their
    source record."""
    if data_cfg.local_path is not None:
        raise ValueError("data.local_path is set but data.format is 'synthetic'; pick one")
    synth = data_cfg.synthetic or SyntheticConfig()
    n = int(synth.n)
    if max_rows is not None:
        n = min(n, max_rows)
    examples = generate_synthetic(n, seed=int(synth.seed), near_duplicate_rate=float(synth.near_duplicate_rate))
    log.info("generated %d SYNTHETIC examples for data '%s'", len(examples), data_cfg.name)
    return examples, {"kind": "synthetic", "fixture": False, "note": None, "sources": [], "skipped_bad_rows": 0,
                      "filtered_out": 0}
