"""experiments/make_table.py: paper layout, method order, mean and sample std over seeds."""

from __future__ import annotations

import csv
import importlib.util
import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("make_table", REPO / "experiments" / "make_table.py")
make_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_table)


def write_job(root: Path, name: str, selector: str, seed: int, metrics: dict) -> None:
    job = root / name
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "subset.json").write_text(json.dumps({"selector": selector}))
    config = {"seed": seed, "usecase": {"name": "instruction_tuning"}, "data": {"name": "alpaca"},
              "model": {"name": "m"}, "budget_fraction": 0.3, "metrics": {"embedder": "e"}}
    (job / "run.json").write_text(json.dumps({"name": "uc1_test", "caveats": ["135M model"], "model": {"name": "m"},
                                              "embedder": {"name": "e"}, "config": config}))


def test_table_rows_follow_the_paper_and_cells_are_mean_and_std(tmp_path):
    root = tmp_path / "multirun"
    write_job(root, "0", "delift", 0, {"icl/rouge1": 0.2, "qlora/rouge1": 0.40, "qlora/bge": 0.5})
    write_job(root, "1", "delift", 1, {"icl/rouge1": 0.4, "qlora/rouge1": 0.44, "qlora/bge": 0.7})
    write_job(root, "2", "random", 0, {"icl/rouge1": 0.1, "qlora/rouge1": 0.30, "qlora/judge": float("nan")})
    write_job(root, "3", "initial", 0, {"icl/rouge1": 0.05, "qlora/rouge1": 0.1})
    out = make_table.main([str(root), "--out-dir", str(tmp_path / "results")])
    text = out.read_text()
    lines = [line for line in text.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0][2:] for line in lines[1:]] == ["Initial", "Random", "DELIFT"]
    delift = lines[3].split(" | ")
    # icl rouge: mean 0.3, sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.1414
    assert delift[2] == "0.3000 ± 0.1414"
    assert delift[5] == "0.4200 ± 0.0283" and delift[6] == "0.6000 ± 0.1414"
    assert lines[2].split(" | ")[7] == "– |"  # a NaN judge score is no value, not a number
    assert "> caveat: 135M model" in text
    rows = list(csv.DictReader((tmp_path / "results" / "uc1_test.csv").open()))
    assert float(rows[2]["qlora/rouge1_mean"]) == pytest.approx(0.42)
    assert float(rows[2]["qlora/rouge1_std"]) == pytest.approx(0.0282843, abs=1e-6)
    assert rows[0]["qlora/rouge1_std"] == ""  # one seed: no std


def test_existing_split_table_reads_the_forgetting_metrics(tmp_path):
    root = tmp_path / "multirun"
    write_job(root, "0", "delift", 0, {"qlora/rouge1": 0.4, "qlora/existing/rouge1": 0.25})
    out = make_table.main([str(root), "--out-dir", str(tmp_path / "results"), "--split", "existing"])
    assert out.name == "uc1_test_existing.md"
    assert "| DELIFT | 0 | – | – | – | 0.2500 | – | – |" in out.read_text()
