"""exact_match: GSM8K final numbers and MMLU letters, extracted from generations by the documented rules."""

from __future__ import annotations

import math

import pytest

from delift.data.records import Example
from delift.evaluation.exact_match import ExactMatch, normalise_number, predicted_letter, predicted_number
from delift.evaluation.metrics import score_all


def gsm8k(final: str) -> Example:
    return Example("g", "How many?", "", f"work\n#### {final}", "gsm8k", {"final_answer": final})


def mmlu(letter: str, choices=("4", "5", "Paris", "London")) -> Example:
    return Example("m", "Pick one", "", f"{letter}. x", "mmlu", {"answer_letter": letter, "choices": list(choices)})


@pytest.mark.parametrize("text,expected", [("1,234", "1234"), ("$5", "5"), ("7.", "7"), ("2.50", "2.5"),
                                           ("-3", "-3"), ("0.0", "0"), ("no number", None)])
def test_number_normalisation(text, expected):
    assert normalise_number(text) == expected


@pytest.mark.parametrize("generation,expected", [
    ("3 + 4 = 7 apples, so 7", "7"),                  # last number
    ("She has 12. The answer is 1,000.", "1000"),     # after the cue, not the last number
    ("first 2 then #### $18", "18"),                  # after ####
    ("nothing here", None)])
def test_predicted_number(generation, expected):
    assert predicted_number(generation) == expected


@pytest.mark.parametrize("generation,expected", [("B. 5", "B"), ("(C) Paris", "C"), ("D", "D"), ("A)", "A"),
                                                 ("The answer is c", "C"), ("Paris is right", "C"),
                                                 ("Because", None)])
def test_predicted_letter(generation, expected):
    assert predicted_letter(generation, ["4", "5", "Paris", "London"]) == expected


def test_exact_match_scores_and_counts_by_hand():
    tests = [gsm8k("18"), gsm8k("1,000"), mmlu("C"), mmlu("A"), Example("o", "Say hi", "", "hi", "alpaca")]
    generations = ["so #### 18", "about 999", "C. Paris", "B. 5", "hi"]
    per_example, means = score_all([ExactMatch()], generations, tests)
    values = [row["exact_match"] for row in per_example]
    assert values[:4] == [1.0, 0.0, 1.0, 0.0] and math.isnan(values[4])
    assert means["exact_match"] == 0.5 and means["exact_match_n"] == 4.0
