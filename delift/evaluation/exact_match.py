"""``exact_match``: accuracy on tasks with one right answer, from what the model generated.

The answer key comes from the test example's metadata, written by its formatter:

- GSM8K (``metadata.final_answer``, the text after ``####``), by ``gsm8k_extract``:

  - ``delift`` (the default): the reference and the prediction are normalised (commas, ``$`` and a
    trailing ``.`` removed; ``2.50`` and ``2.5`` are the same number). The prediction's answer is the
    number after its own ``####`` when it wrote one, else after the last "answer is" / "answer:",
    else the LAST number in the generation.
  - ``strict`` and ``flexible``: lm-evaluation-harness's two GSM8K filters, so scores compare with
    published ones. ``strict`` takes the first ``#### <number>`` (none: wrong); ``flexible`` the last
    number-like run in the text (``-?[$0-9.,]{2,}`` or ``-?[0-9]+``). Both then drop commas, ``$`` and
    one trailing ``.`` from answer and reference and compare the strings (``2.50`` is not ``2.5``).
- MMLU (``metadata.answer_letter``): the prediction's choice is the first standalone letter A-D at
  the start of the generation (``B``, ``B.``, ``(B)``, ``B)``), else after "answer is" /
  "answer:", else the choice whose full text the generation starts with.
- the SYNTHETIC structured tasks (``source == "structured"``, ``data=structured``; not the real rows mixed
  in): one right answer, the reference itself; the generation's first line, stripped, must equal it.

Per example 1.0 (match) or 0.0, NaN for an example without an answer key (another task): the mean
skips those, and ``exact_match_n`` counts the examples that had one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from delift.config.checks import Problems, choice
from delift.data.records import Example
from delift.data.structured import MIX_TASK
from delift.data.structured import SOURCE as STRUCTURED_SOURCE
from delift.evaluation.metrics import Metric, MetricScores

NUMBER = re.compile(r"-?\$?\d[\d,]*(?:\.\d+)?")
ANSWER_CUE = re.compile(r"(?:####|answer is|answer:)\s*", re.IGNORECASE)
LEADING_LETTER = re.compile(r"^\s*\(?([A-D])(?:[).:\s]|$)")
CUED_LETTER = re.compile(r"(?:answer is|answer:)\s*\(?([A-D])\b", re.IGNORECASE)
STRICT_ANSWER = re.compile(r"#### (-?[0-9.,]+)")  # lm-evaluation-harness gsm8k "strict-match"
FLEXIBLE_NUMBER = re.compile(r"(-?[$0-9.,]{2,})|(-?[0-9]+)")  # its "flexible-extract"; the last match counts
GSM8K_EXTRACTIONS = ("delift", "strict", "flexible")


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


def harness_cleanup(text: str) -> str:
    """lm-evaluation-harness's GSM8K answer cleanup: commas and ``$`` removed, then one trailing ``.``."""
    text = text.replace(",", "").replace("$", "")
    return text[:-1] if text.endswith(".") else text


def harness_answer(generation: str, extraction: str) -> str | None:
    """The answer lm-evaluation-harness's ``strict`` or ``flexible`` GSM8K filter extracts, cleaned up;
    None when the filter finds nothing (the harness scores that as wrong)."""
    if extraction == "strict":
        found = STRICT_ANSWER.search(generation)
        return harness_cleanup(found.group(1)) if found else None
    matches = FLEXIBLE_NUMBER.findall(generation)
    if not matches:
        return None
    return harness_cleanup(next(group for group in matches[-1] if group))


def predicted_letter(generation: str, choices: Sequence[str] = ()) -> str | None:
    """The choice letter a generation answers with (see the module docstring for the rule)."""
    found = LEADING_LETTER.match(generation) or CUED_LETTER.search(generation)
    if found:
        return found.group(1).upper()
    text = generation.strip().lower()
    for index, option in enumerate(choices):
        if option and text.startswith(str(option).strip().lower()):
            return "ABCD"[index]
    return None


def exact_match(generation: str, example: Example, gsm8k_extract: str = "delift") -> float:
    """1.0 or 0.0 against the example's answer key; NaN when it has none. ``gsm8k_extract``: one of
    :data:`GSM8K_EXTRACTIONS` (see the module docstring)."""
    meta = example.metadata
    if meta.get("final_answer") is not None:
        if gsm8k_extract != "delift":
            reference_text = harness_cleanup(str(meta["final_answer"]).strip())
            return float(harness_answer(generation, gsm8k_extract) == reference_text)
        reference = normalise_number(str(meta["final_answer"]))
        return float(reference is not None and predicted_number(generation) == reference)
    if meta.get("answer_letter") is not None:
        return float(predicted_letter(generation, meta.get("choices") or ()) == str(meta["answer_letter"]).upper())
    if example.source == STRUCTURED_SOURCE and meta.get("task") not in (None, MIX_TASK):
        lines = generation.strip().splitlines()
        return float(bool(lines) and lines[0].strip() == example.output.strip())
    return math.nan


class ExactMatch(Metric):
    """GSM8K final-number, MMLU choice-letter and structured-task accuracy."""

    name = "exact_match"
    label = "EM"
    bounds = (0.0, 1.0)
    higher_is_better = True
    column_order = 3

    @dataclass
    class Config:
        _target_: str = "delift.evaluation.exact_match.ExactMatch"
        gsm8k_extract: str = "delift"  # delift | strict | flexible (lm-evaluation-harness's filters)

        def problems(self) -> Problems:
            found: Problems = {}
            choice(found, "gsm8k_extract", self.gsm8k_extract, GSM8K_EXTRACTIONS)
            return found

    def score(self, generations: Sequence[str], examples: Sequence[Example]) -> MetricScores:
        values = [exact_match(g, ex, self.config.gsm8k_extract) for g, ex in zip(generations, examples)]
        keyed = sum(not math.isnan(v) for v in values)
        return MetricScores({"exact_match": values}, {"exact_match_n": float(keyed)}, nan_ok=True)
