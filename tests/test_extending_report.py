"""Extending the report: a metric and a selector defined in a temporary package (a module and a conf YAML
each) are labelled, ordered and clipped by their own declarations, not by a list in delift/report/."""

from __future__ import annotations

import json
import sys
import textwrap

import pytest
from test_report_support import rows, write_job

from delift.report import figures
from delift.report.cli import build_report
from delift.report.parts import Parts

MODULE = '''
from dataclasses import dataclass

from delift.evaluation.metrics import Metric, MetricScores
from delift.selection.baselines import RandomSelector


class TenPoint(Metric):
    name = "tenpoint"
    label = "Ten-point"
    bounds = (0.0, 10.0)
    higher_is_better = True

    @dataclass
    class Config:
        _target_: str = "extpkg.parts.TenPoint"

    def score(self, generations, examples):
        return MetricScores({"tenpoint": [10.0 for _ in generations]})


class Mine(RandomSelector):
    name = "mine"
    label = "My Selector"
    row_order = None
'''


@pytest.fixture
def package(tmp_path, monkeypatch):
    """extpkg/parts.py (the module) and its conf YAMLs: the 2 files a new metric or selector costs."""
    root = tmp_path / "pkg"
    (root / "extpkg").mkdir(parents=True)
    (root / "extpkg" / "__init__.py").write_text("")
    (root / "extpkg" / "parts.py").write_text(textwrap.dedent(MODULE))
    (root / "conf" / "metric").mkdir(parents=True)
    (root / "conf" / "metric" / "tenpoint.yaml").write_text("_target_: extpkg.parts.TenPoint\n")
    (root / "conf" / "selector").mkdir(parents=True)
    (root / "conf" / "selector" / "mine.yaml").write_text("_target_: extpkg.parts.Mine\nseed_offset: 0\n")
    monkeypatch.syspath_prepend(str(root))
    yield root
    sys.modules.pop("extpkg.parts", None)
    sys.modules.pop("extpkg", None)


def sweep(tmp_path, target: str = "extpkg.parts.Mine") -> None:
    """Random and the new selector, 2 seeds; the new metric recorded in each run's metric_library."""
    library = {"metric_library": {"tenpoint": {"_target_": "extpkg.parts.TenPoint"},
                                  "bge": {"_target_": "delift.evaluation.metrics.EmbeddingSimilarity"}}}
    scores = {"random": [[9.5, 9.9, 9.0], [9.9, 10.0, 9.8]], "mine": [[9.0, 9.8, 10.0], [9.9, 9.7, 10.0]]}
    for selector, seeds in scores.items():
        for seed, values in enumerate(seeds):
            config = {**library, "selector": {"_target_": target if selector == "mine" else
                                              "delift.selection.baselines.RandomSelector", "seed_offset": 0}}
            write_job(tmp_path / "sweep", f"{selector}_{seed}", selector, seed,
                      {"qlora/tenpoint": sum(values) / 3, "qlora/bge": 0.5, "subset/size": 4, "pool/size": 16},
                      config=config, predictions=rows("qlora", {"tenpoint": values, "bge": [0.5, 0.5, 0.5]}))


def test_a_new_metric_is_labelled_and_clipped_to_its_own_bounds(package, tmp_path):
    sweep(tmp_path)
    out = build_report([tmp_path / "sweep"], tmp_path / "report", seed=0, resamples=200)
    table = out["table"].read_text()
    assert "| QLoRA BGE | QLoRA Ten-point |" in table  # declared column order (BGE: 1) before undeclared ones
    entries = [e for e in out["frame"] if e["metric"] == "tenpoint"]
    assert {e["bounds"] for e in entries} == {(0.0, 10.0)} and {e["metric_label"] for e in entries} == {"Ten-point"}
    mine = next(e for e in entries if e["selector"] == "mine")
    assert mine["ci_high"] > 10.0  # the t-interval of 2 seeds passes the metric's top...
    assert figures.interval(mine) == (mine["ci_low"], 10.0)  # ...and the figures clip it to (0, 10), not (0, 1)
    assert not out["notes"]  # every part imported: no warning


def test_a_new_selector_gets_its_own_label_and_row(package, tmp_path):
    sweep(tmp_path)
    out = build_report([tmp_path / "sweep"], tmp_path / "report", seed=0, resamples=200)
    methods = [line.split(" | ")[0].removeprefix("| ") for line in out["table"].read_text().splitlines()
               if line.startswith("| ") and ("Random" in line or "My Selector" in line) and "±" in line]
    assert methods == ["Random", "My Selector"]  # row_order None: after the ordered selectors
    assert Parts.of([]).selector("initial").order < Parts.of([]).selector("random").order


def test_an_unimportable_part_falls_back_to_its_name_with_a_counted_warning(package, tmp_path):
    sweep(tmp_path, target="gone.module.Mine")
    out = build_report([tmp_path / "sweep"], tmp_path / "report", seed=0, resamples=200)
    assert "| mine |" in out["table"].read_text()
    report = out["report"].read_text()
    assert "1 part warnings" in report and "gone.module.Mine cannot be imported" in report


def test_a_metric_that_declares_nothing_is_an_error_naming_it():
    from delift.evaluation.metrics import Metric

    with pytest.raises(TypeError, match="Bare does not declare label, bounds, higher_is_better"):
        class Bare(Metric):
            name = "bare"

            def score(self, generations, examples):
                raise AssertionError


def test_the_built_in_parts_keep_the_papers_labels_orders_and_bounds():
    parts = Parts.of([])
    assert [parts.selector(n).label for n in ("initial", "random", "selectit", "less", "delift_se", "delift",
                                              "full", "lobass", "ifd", "nuggets")] == [
        "Initial", "Random", "SelectIT", "LESS", "DELIFT (SE)", "DELIFT", "Full Data", "LoBaSS", "IFD", "Nuggets"]
    assert [parts.selector(n).row_order for n in ("initial", "random", "selectit", "less", "delift_se", "delift",
                                                  "full")] == list(range(7))
    assert [n for n in ("initial", "full", "random", "delift") if parts.selector(n).reference] == ["initial", "full"]
    keys = ["exact_match", "judge", "bge", "rougeL", "rouge2", "rouge1"]
    assert sorted(keys, key=lambda k: parts.metric(k).order) == keys[::-1]
    assert {k: parts.metric(k).label for k in keys} == {"rouge1": "ROUGE-1", "rouge2": "ROUGE-2", "rougeL": "ROUGE-L",
                                                        "bge": "BGE", "judge": "LAJ", "exact_match": "EM"}
    assert {k: parts.metric(k).bounds for k in keys} == {**{k: (0.0, 1.0) for k in keys}, "judge": (1.0, 5.0)}
    assert [parts.protocol(n).label for n in ("icl", "qlora", "lora")] == ["ICL", "QLoRA", "LoRA"]
    assert sorted(["lora", "qlora", "icl"], key=lambda n: parts.protocol(n).order) == ["icl", "qlora", "lora"]
    assert json.dumps(parts.warnings) == "[]"
