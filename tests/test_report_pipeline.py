"""delift-report on real run folders: the smoke experiment at two budgets, end to end (slow)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from delift.config.loader import compose_config
from delift.report.cli import build_report
from delift.report.kernel_figures import kernel_path, load_kernel
from delift.run.pipeline import run_experiment


@pytest.mark.slow
def test_report_of_a_budget_sweep_keeps_the_budgets_apart(tmp_path):
    sweep = tmp_path / "multirun"
    jobs = [("random", 0.25), ("random", 0.5), ("delift", 0.25)]
    for num, (selector, budget) in enumerate(jobs):
        cfg = compose_config(["experiment=smoke", f"selector={selector}", f"budget_fraction={budget}",
                              f"paths.cache_dir={tmp_path / 'cache'}", "progress=false",
                              "evaluation.qlora.train.max_steps=1"])
        run_experiment(cfg, sweep / f"{num}_selector={selector},budget_fraction={budget}")
    done = build_report([sweep], out=tmp_path / "report", resamples=500)
    assert done["keys"] == ["budget_fraction"]
    rows = {(e["method"], e["budget_fraction"]): e for e in done["frame"] if e["key"] == "qlora/bge"}
    assert sorted(rows) == [("DELIFT", 0.25), ("Random", 0.25), ("Random", 0.5)]
    for entry in rows.values():  # one job each: the cell is that job's number, not a mix of budgets
        (job,) = entry["jobs"]
        metrics = json.loads((Path(job) / "metrics.json").read_text())
        assert entry["n"] == 1 and entry["mean"] == pytest.approx(metrics["qlora/bge"])
        assert entry["sdf"] == pytest.approx(metrics["subset/size"] / metrics["pool/size"])
    # the paired difference is the mean over the joined test examples of the two predictions files
    delift, random = rows[("DELIFT", 0.25)], rows[("Random", 0.25)]
    scores = [{r["id"]: r["bge"] for r in map(json.loads, (Path(e["jobs"][0]) / "predictions.jsonl").read_text().splitlines())
               if r["evaluation"] == "qlora"} for e in (delift, random)]
    assert delift["vs"]["random"].diff == pytest.approx(np.mean([scores[0][i] - scores[1][i] for i in scores[0]]))
    assert delift["vs"]["random"].pairs == len(scores[0]) == 6
    table = done["table"].read_text()
    assert "| 0.25 | Random | 1 |" in table and "| 0.5 | Random | 1 |" in table
    figures = {p.name for p in done["figures"]}
    assert {"budget_qlora.png", "kernel_delift_budget_fraction-0.25_seed0.png",
            "gains_delift_budget_fraction-0.25_seed0.png"} <= figures
    uf, targets, candidates = load_kernel(kernel_path(delift["jobs"][0]))
    assert uf.shape == (len(targets), len(candidates)) == (16, 16)
    assert "tiny random model" in done["report"].read_text()
