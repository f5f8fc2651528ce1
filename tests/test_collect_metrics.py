"""experiments/collect_metrics.py (delift.report.listing) turns job folders into one table, caveats first."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "experiments" / "collect_metrics.py"


def test_collects_every_job_with_overrides_and_caveats(tmp_path):
    for num, (selector, rouge1) in enumerate([("delift", 0.25), ("random", 0.5)]):
        job = tmp_path / "sweep" / f"{num}_selector={selector}"
        (job / ".hydra").mkdir(parents=True)
        (job / ".hydra" / "overrides.yaml").write_text(f"- selector={selector}\n")
        (job / "metrics.json").write_text(json.dumps({"qlora/rouge1": rouge1, "subset/size": 3}))
        (job / "run.json").write_text(json.dumps({"caveats": ["tiny random model: plumbing check only"]}))
    out = tmp_path / "results" / "table"
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "sweep"), "--out", str(out),
                           "--columns", "qlora/rouge1", "subset/size"], capture_output=True, text=True, check=True)
    lines = done.stdout.splitlines()
    assert lines[0] == "> caveat: tiny random model: plumbing check only"
    assert "| selector=delift | 0.2500 | 3 |" in lines and "| selector=random | 0.5000 | 3 |" in lines
    assert out.with_suffix(".md").read_text() == done.stdout
    with out.with_suffix(".csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["overrides"], float(r["qlora/rouge1"])) for r in rows] == [("selector=delift", 0.25),
                                                                          ("selector=random", 0.5)]


def test_default_columns_follow_the_evaluation_prefix(tmp_path):
    job = tmp_path / "run"
    job.mkdir()
    (job / "metrics.json").write_text(json.dumps({"lora/rouge1": 0.125, "lora/bge": 0.5, "subset/size": 2}))
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True, check=True)
    header, _, row = done.stdout.splitlines()[:3]
    assert header.split(" | ")[1:3] == ["lora/rouge1", "lora/bge"]
    assert "| 0.1250 | 0.5000 | 2 |" in row


def test_null_values_are_missing_and_the_listing_module_is_the_same_table(tmp_path):
    from delift.report.listing import collect, expand_columns, to_markdown

    job = tmp_path / "sweep" / "0_seed=0"
    job.mkdir(parents=True)
    (job / "metrics.json").write_text(json.dumps({"qlora/rouge1": 0.25, "qlora/judge": None}))
    done = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "sweep"), "--columns", "qlora/rouge1",
                           "qlora/judge"], capture_output=True, text=True, check=True)
    assert done.stdout.splitlines()[2] == "|  | 0.2500 | – |"
    rows = collect(tmp_path / "sweep")
    assert to_markdown(rows, expand_columns(["*/rouge1", "*/judge"], rows)) == done.stdout
