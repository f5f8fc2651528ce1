"""experiments/make_table.py: paper layout, method order, seed means with std and t-interval, no averaging
over settings (a thin wrapper around delift.report)."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest
from test_report_support import write_job

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_table", REPO / "experiments" / "make_table.py")
make_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_table)


def job(root: Path, name: str, selector: str, seed: int, metrics: dict, **config) -> None:
    write_job(root, name, selector, seed, metrics, config={"name": "uc1_test", **config}, caveats=("135M model",))


def table_rows(text: str) -> list[list[str]]:
    return [line[2:-2].split(" | ") for line in text.splitlines() if line.startswith("| ")]


def test_table_rows_follow_the_paper_and_cells_are_mean_std_and_interval(tmp_path):
    root = tmp_path / "multirun"
    job(root, "0", "delift", 0, {"icl/rouge1": 0.2, "qlora/rouge1": 0.40, "qlora/bge": 0.5})
    job(root, "1", "delift", 1, {"icl/rouge1": 0.4, "qlora/rouge1": 0.44, "qlora/bge": 0.7})
    job(root, "2", "random", 0, {"icl/rouge1": 0.1, "qlora/rouge1": 0.30, "qlora/judge": None})
    job(root, "3", "initial", 0, {"icl/rouge1": 0.05, "qlora/rouge1": 0.1})
    (root / "3" / "metrics.json").write_text('{"icl/rouge1": 0.05, "qlora/rouge1": 0.1, "qlora/judge": NaN}')
    out = make_table.main([str(root), "--out-dir", str(tmp_path / "results")])
    text = out.read_text()
    header, *rows = table_rows(text)
    assert header == ["method", "n", "ICL ROUGE-1", "QLoRA ROUGE-1", "QLoRA BGE", "QLoRA LAJ"]
    assert [row[0] for row in rows] == ["Initial", "Random", "DELIFT"]
    delift = rows[2]
    # icl rouge: mean 0.3, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414, t-interval 0.3 +- 12.7062 * 0.1
    assert delift[1:3] == ["2", "0.3000 ± 0.1414 [-0.9706, 1.5706]"]
    assert delift[3].startswith("0.4200 ± 0.0283 [") and delift[4].startswith("0.6000 ± 0.1414 [")
    assert rows[0][5] == "–" and rows[1][5] == "–"  # NaN (old files) and null judge scores are no value
    assert "> caveat: 135M model" in text
    rows_csv = list(csv.DictReader((tmp_path / "results" / "uc1_test.csv").open()))
    assert float(rows_csv[2]["qlora/rouge1_mean"]) == pytest.approx(0.42)
    assert float(rows_csv[2]["qlora/rouge1_std"]) == pytest.approx(0.0282843, abs=1e-6)
    assert float(rows_csv[2]["qlora/rouge1_ci_low"]) == pytest.approx(0.42 - 12.7062047 * 0.02, abs=1e-6)
    assert rows_csv[0]["qlora/rouge1_std"] == ""  # one seed: no std


def test_two_budgets_give_two_rows_not_one_averaged_row(tmp_path):
    """The issue's case: selector=random budget_fraction=0.25,0.5 used to give ONE row whose std was the
    spread across budgets."""
    root = tmp_path / "multirun"
    job(root, "0", "random", 0, {"qlora/rouge1": 0.2}, budget_fraction=0.25)
    job(root, "1", "random", 0, {"qlora/rouge1": 0.6}, budget_fraction=0.5)
    out = make_table.main([str(root), "--out-dir", str(tmp_path / "results")])
    assert table_rows(out.read_text()) == [["budget_fraction", "method", "n", "QLoRA ROUGE-1"],
                                           ["0.25", "Random", "1", "0.2000"], ["0.5", "Random", "1", "0.6000"]]


def test_existing_split_table_reads_the_forgetting_metrics(tmp_path):
    root = tmp_path / "multirun"
    job(root, "0", "delift", 0, {"qlora/rouge1": 0.4, "qlora/existing/rouge1": 0.25})
    out = make_table.main([str(root), "--out-dir", str(tmp_path / "results"), "--split", "existing"])
    assert out.name == "uc1_test_existing.md"
    text = out.read_text()
    assert "## existing task's test (forgetting)" in text and "| DELIFT | 1 | 0.2500 |" in text
    assert "| 0.4000 |" not in text
