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


# lm-evaluation-harness's GSM8K filters, by hand: strict takes the first "#### <number>", flexible the last
# number-like run; both drop commas, "$" and one trailing "." and compare strings.
@pytest.mark.parametrize("generation,strict,flexible", [
    ("so #### 18", "18", "18"),
    ("#### 1,000 apples", "1000", "1000"),                       # commas dropped on both sides
    ("#### 18. Then 20 more", "18", "20"),                       # strict: first ####; flexible: last number
    ("#### $18", None, "18"),                                    # strict's number may not start with "$"
    ("The answer is 18.", None, "18"),                           # no "####": strict finds nothing
    ("#### 5 and #### 7", "5", "7"),                             # strict takes the first
    ("she pays $2.50 in total", None, "2.50"),                   # no numeric normalisation (2.50 is not 2.5)
    ("-3 degrees, so #### -3", "-3", "-3"),
    ("nothing here", None, None),
    ("costs 4", None, "4"),                                      # a single digit: the second alternative
])
def test_harness_gsm8k_extractions(generation, strict, flexible):
    from delift.evaluation.exact_match import harness_answer

    assert harness_answer(generation, "strict") == strict
    assert harness_answer(generation, "flexible") == flexible


def test_gsm8k_extract_options_score_the_same_generations_differently_by_hand():
    tests = [gsm8k("18"), gsm8k("1,000"), gsm8k("2.5"), gsm8k("7"), mmlu("C")]
    generations = ["The answer is 18.", "#### 1,000", "she pays $2.50", "#### 7 then 8", "C. Paris"]
    expected = {"delift": [1.0, 1.0, 1.0, 1.0, 1.0],    # cue, ####, 2.50 == 2.5 as numbers, #### wins
                "strict": [0.0, 1.0, 0.0, 1.0, 1.0],    # needs "####"; MMLU letters are unchanged
                "flexible": [1.0, 1.0, 0.0, 0.0, 1.0]}  # last number: "2.50" != "2.5", "8" != "7"
    for rule, values in expected.items():
        per_example, means = score_all([ExactMatch(ExactMatch.Config(gsm8k_extract=rule))], generations, tests)
        assert [row["exact_match"] for row in per_example] == values, rule
        assert means["exact_match"] == sum(values) / 5 and means["exact_match_n"] == 5.0
    assert ExactMatch().config.gsm8k_extract == "delift"  # the default stays the current rule
    with pytest.raises(ValueError, match="metric_library.exact_match.gsm8k_extract: 'loose'"):
        ExactMatch(ExactMatch.Config(gsm8k_extract="loose"))


def test_gsm8k_extract_is_a_checked_config_choice():
    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config

    cfg = compose_config(["experiment=smoke", "metrics=exact_match", "+metric_library.exact_match.gsm8k_extract=strict"])
    assert cfg.metric_library["exact_match"].gsm8k_extract == "strict"
    assert compose_config(["experiment=smoke", "metrics=exact_match"]).metric_library["exact_match"].gsm8k_extract == (
        "delift")
    with pytest.raises(ConfigError, match=r"metric_library\.exact_match\.gsm8k_extract"):
        compose_config(["experiment=smoke", "metrics=exact_match", "+metric_library.exact_match.gsm8k_extract=loose"])
