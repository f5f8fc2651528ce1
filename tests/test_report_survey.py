"""delift.report.survey: SDF, PIR and the efficiency residual by hand; the survey's feasibility ranks."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_report_support import write_job

from delift.report.cli import build_report
from delift.report.survey import (
    dense_rank,
    feasibility,
    flexibility_penalty,
    load_survey,
    reference_pir,
    simplicity_penalty,
)

SURVEY_VALUES = {  # the survey's descriptors, as the issue quotes them
    "selectit": (0, 4, True, True, True, True), "nuggets": (0, 4, True, True, True, True),
    "ifd": (1, 3, True, False, False, True), "less": (1, 4, True, False, False, True),
}
FIELDS = ("llms_trained", "pipeline_steps", "public_code", "model_free", "dataset_free", "gpt_free")


def test_the_yaml_holds_the_surveys_values_each_with_a_source():
    survey = load_survey()
    raw = survey["raw"]
    for name, values in SURVEY_VALUES.items():
        assert tuple(survey["methods"][name][f] for f in FIELDS) == values
        assert {raw["methods"][name][f]["source"] for f in FIELDS} == {"survey"}
    for name in ("delift", "delift_se", "lobass", "random"):
        assert {raw["methods"][name][f]["source"] for f in FIELDS} == {"delift_assessment"}
    assert raw["sources"]["delift_assessment"].startswith("delift project's own assessment")
    assert all(v["source"] in raw["sources"] for m in raw["methods"].values() for v in m.values() if isinstance(v, dict))
    assert survey["line"] == {"sdf0": 0.025, "pir0": 1.4, "slope": 1.30303}
    # the line passes through InstructionGPT-4 (0.058, 1.443)
    assert reference_pir(0.058, survey["line"]) == pytest.approx(1.443, abs=1e-5)
    assert survey["points"]["SelectIT"] == (0.2, 1.653) and len(survey["points"]) == 7


def test_feasibility_ranks_of_the_surveys_four_methods_by_hand():
    methods = {name: dict(zip(FIELDS, values)) for name, values in SURVEY_VALUES.items()}
    # simplicity = 2 LLMs + steps + no code: SelectIT 4, Nuggets 4, IFD 2 + 3 = 5, LESS 2 + 4 = 6
    assert {m: simplicity_penalty(d) for m, d in methods.items()} == {"selectit": 4, "nuggets": 4, "ifd": 5, "less": 6}
    # flexibility = 3 (not model-free) + 2 (not dataset-free) + (not GPT-free): 0, 0, 5, 5
    assert {m: flexibility_penalty(d) for m, d in methods.items()} == {"selectit": 0, "nuggets": 0, "ifd": 5, "less": 5}
    ranks = feasibility(methods)
    # dense ranks: simplicity 1, 1, 2, 3; flexibility 1, 1, 2, 2; sums 2, 2, 4, 5 -> 1, 1, 2, 3
    assert {m: (r["simplicity_rank"], r["flexibility_rank"], r["feasibility_rank"]) for m, r in ranks.items()} == {
        "selectit": (1, 1, 1), "nuggets": (1, 1, 1), "ifd": (2, 2, 2), "less": (3, 2, 3)}


def test_dense_rank():
    assert dense_rank({"a": 3, "b": 1, "c": 3, "d": 7}) == {"a": 2, "b": 1, "c": 2, "d": 3}
    assert dense_rank({"a": 0.5, "b": -1.0}, higher_first=True) == {"a": 1, "b": 2}


def test_sdf_pir_and_r_on_a_three_method_table_by_hand(tmp_path):
    """Full Data, Random (budgets 0.1 and 0.2) and DELIFT (0.1, two seeds); QLoRA ROUGE-1 and BGE."""
    def job(name, selector, seed, budget, size, rouge1, bge, selection_s=0.0):
        write_job(tmp_path, name, selector, seed, {"qlora/rouge1": rouge1, "qlora/bge": bge, "subset/size": size,
                                                    "pool/size": 100, "time/selection_s": selection_s},
                  config={"budget_fraction": budget})

    job("full", "full", 0, 0.1, 100, 0.40, 0.80)
    job("r1", "random", 0, 0.1, 10, 0.30, 0.72)
    job("r2", "random", 0, 0.2, 20, 0.34, 0.76)
    job("d0", "delift", 0, 0.1, 10, 0.34, 0.76, selection_s=10.0)
    job("d1", "delift", 1, 0.1, 10, 0.38, 0.76, selection_s=20.0)
    rows = build_report([tmp_path], out=tmp_path / "rep", draw=False)["survey"]
    got = {(r["method"], r["sdf"]): r for r in rows}
    # SDF = 10 / 100; PIR = mean(0.30 / 0.40, 0.72 / 0.80) = mean(0.75, 0.90) = 0.825
    # r = 0.825 - [1.400 + 1.30303 (0.1 - 0.025)] = 0.825 - 1.49772725 = -0.67272725
    random_low = got[("Random", 0.1)]
    assert random_low["pir"] == pytest.approx(0.825) and random_low["r"] == pytest.approx(-0.67272725)
    # DELIFT: seed means 0.36, 0.76 -> PIR = mean(0.9, 0.95) = 0.925; r = 0.925 - 1.49772725
    delift = got[("DELIFT", 0.1)]
    assert delift["pir"] == pytest.approx(0.925) and delift["r"] == pytest.approx(-0.57272725)
    assert delift["selection_s"] == pytest.approx(15.0)
    # Random at 0.2 (Full taken from the 0.1 run, it ignores the budget): PIR = mean(0.85, 0.95) = 0.9
    # r = 0.9 - [1.4 + 1.30303 * 0.175] = 0.9 - 1.62803025
    random_high = got[("Random", 0.2)]
    assert random_high["pir"] == pytest.approx(0.9) and random_high["r"] == pytest.approx(-0.72803025)
    assert got[("Full Data", 1.0)]["pir"] == pytest.approx(1.0)
    assert [delift["efficiency_rank"], random_low["efficiency_rank"], random_high["efficiency_rank"]] == [1, 2, 3]
    assert got[("Full Data", 1.0)]["efficiency_rank"] is None  # a reference, not a selection method
    # the Random line through (0.1, 0.825) and (0.2, 0.9): slope 0.75; DELIFT lies 0.925 - 0.825 = 0.1 above it
    assert delift["r_random"] == pytest.approx(0.1) and random_high["r_random"] == pytest.approx(0.0, abs=1e-12)
    assert (delift["simplicity"], delift["flexibility"]) == (2, 0)
    text = (tmp_path / "rep" / "survey.md").read_text()
    assert "| budget_fraction=0.1 | DELIFT | 0.100 | 0.925 | -0.573 | 1 | +0.100 | 2 | 0 |" in text


def test_every_selecting_method_has_survey_descriptors():
    """Each conf/selector option that selects (not Initial or Full Data) has its feasibility descriptors in
    conf/survey/methods.yaml, each with a source: a new selector is not silently missing from the survey table."""
    import yaml

    conf = Path(__file__).resolve().parents[1] / "conf"
    methods = yaml.safe_load((conf / "survey" / "methods.yaml").read_text())["methods"]
    selecting = {p.stem for p in (conf / "selector").glob("*.yaml")} - {"initial", "full"}
    assert selecting <= set(methods), sorted(selecting - set(methods))
    for name in selecting:
        assert all(isinstance(v, dict) and "source" in v for k, v in methods[name].items() if k != "label"), name
