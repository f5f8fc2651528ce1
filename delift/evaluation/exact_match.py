"""``exact_match``: accuracy on tasks with one right answer, from what the model generated.

The answer key comes from the test example's metadata, written by its formatter:

- GSM8K (``metadata.final_answer``, the text after ``####``): the reference and the prediction are
  normalised (commas, ``$`` and a trailing ``.`` removed; ``2.50`` and ``2.5`` are the same number).
  The prediction's answer is the number after its own ``####`` when it wrote one, else after the
  last "answer is" / "answer:", else the LAST number in the generation.
- MMLU (``metadata.answer_letter``): the prediction's choice is the first standalone letter A-D at
  the start of the generation (``B``, ``B.``, ``(B)``, ``B)``), else after "answer is" /
  "answer:", else the choice whose full text the generation starts with.

Per example 1.0 (match) or 0.0, NaN for an example without an answer key (another task): the mean
skips those, and ``exact_match_n`` counts the examples that had one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from delift.data.records import Example
from delift.evaluation.metrics import Metric, MetricScores

NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
ANSWER_CUE = re.compile(r"(?:####|answer is|answer:)\s*", re.IGNORECASE)
LEADING_LETTER = re.compile(r"^\s*\(?([A-D])(?:[).:\s]|$)")
CUED_LETTER = re.compile(r"(?:answer is|answer:)\s*\(?([A-D])\b", re.IGNORECASE)


def normalise_number(text: str) -> str | None:
    """``"$1,234.50."`` -> ``"1234.5"``; None when ``text`` holds no number."""
    found = NUMBER.search(text.strip().rstrip("."))
    if found is None:
        return None
    cleaned = found.group(0).replace(",", "").replace("$", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return None
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


def predicted_number(generation: str) -> str | None:
    """The number a generation answers with (see the module docstring for the rule)."""
    cues = list(ANSWER_CUE.finditer(generation))
    if cues:
        after = normalise_number(generation[cues[-1].end():])
        if after is not None:
            return after
    numbers = NUMBER.findall(generation)
    return normalise_number(numbers[-1]) if numbers else None


def predicted_letter(generation: str, choices: Sequence[str] = ()) -> str | None:
    """The choice letter a generation answers with (see the module docstring for the rule)."""
    found = LEADING_LETTER.match(generation) or CUED_LETTER.search(generation)
    if found:
        return found.group(1).upper()
    text = generation.strip().lower()
    for index, choice in enumerate(choices):
        if choice and text.startswith(str(choice).strip().lower()):
            return "ABCD"[index]
    return None


def exact_match(generation: str, example: Example) -> float:
    """1.0 or 0.0 against the example's answer key; NaN when it has none."""
    meta = example.metadata
    if meta.get("final_answer") is not None:
        reference = normalise_number(str(meta["final_answer"]))
        return float(reference is not None and predicted_number(generation) == reference)
    if meta.get("answer_letter") is not None:
        return float(predicted_letter(generation, meta.get("choices") or ()) == str(meta["answer_letter"]).upper())
    return math.nan


class ExactMatch(Metric):
    """GSM8K final-number and MMLU choice-letter accuracy."""

    name = "exact_match"

    @dataclass
    class Config:
        _target_: str = "delift.evaluation.exact_match.ExactMatch"

    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        values = [exact_match(g, ex) for g, ex in zip(generations, examples)]
        keyed = sum(not math.isnan(v) for v in values)
        return MetricScores({"exact_match": values}, {"exact_match_n": float(keyed)}, nan_ok=True)
