"""Job folders written by the report tests (a delift run's result files, numbers chosen by hand)."""

from __future__ import annotations

import json
from pathlib import Path

SELECTOR_CONFIGS = {
    "random": {"_target_": "delift.selection.baselines.RandomSelector", "seed_offset": 0},
    "delift": {"_target_": "delift.selection.delift.DeliftSelector", "objective": "auto", "postprocess": "clip"},
    "delift_se": {"_target_": "delift.selection.delift_se.DeliftSESelector", "objective": "auto", "batch_size": 64},
    "full": {"_target_": "delift.selection.baselines.FullSelector"},
    "initial": {"_target_": "delift.selection.baselines.InitialSelector"},
}


def merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def write_job(root: Path, name: str, selector: str, seed: int, metrics: dict, config: dict | None = None,
              predictions: list[dict] | None = None, subset: dict | None = None,
              caveats: tuple[str, ...] = ("tiny random model: plumbing check only",)) -> Path:
    """One job folder: metrics.json, subset.json, run.json (resolved config) and predictions.jsonl."""
    job = Path(root) / name
    job.mkdir(parents=True)
    resolved = merge({"name": "synth", "seed": seed, "budget_fraction": 0.3, "progress": False,
                      "paths": {"cache_dir": str(Path(root) / "cache"), "shared_datasets": "../shared"},
                      "data": {"name": "quickstart", "local_path": None, "sizes": {"train": 100, "test": 3}},
                      "model": {"name": "tiny"}, "kernel": {"workers": 0, "max_length": 512, "block_size": 256},
                      "usecase": {"name": "instruction_tuning", "target": None}, "metrics": {"embedder": "e"},
                      "logger": {"name": "none", "mode": "offline"},
                      "selector": SELECTOR_CONFIGS.get(selector, {"_target_": f"x.{selector}"}),
                      "evaluation": {"qlora": {"name": "qlora", "train": {"lr": 2e-4}}}}, config or {})
    (job / "metrics.json").write_text(json.dumps(metrics))
    (job / "subset.json").write_text(json.dumps({"selector": selector, "selected_ids": [], "gains": [],
                                                 "info": {}, **(subset or {})}))
    (job / "run.json").write_text(json.dumps({"name": resolved["name"], "caveats": list(caveats),
                                              "model": {"name": "tiny"}, "config": resolved}))
    if predictions is not None:
        (job / "predictions.jsonl").write_text("".join(json.dumps(row) + "\n" for row in predictions))
    return job


def rows(evaluation: str, scores: dict[str, list], split: str = "test", ids: list[str] | None = None) -> list[dict]:
    """Prediction rows of one evaluation: ``scores[metric][i]`` for example ``ids[i]`` (ex0, ex1, ...)."""
    n = len(next(iter(scores.values())))
    ids = ids or [f"ex{i}" for i in range(n)]
    return [{"evaluation": evaluation, "split": split, "id": ids[i], "prompt": "p", "reference": "r",
             "generation": "g", **{m: v[i] for m, v in scores.items()}} for i in range(n)]


def test_a_written_job_loads_as_a_delift_run(tmp_path):
    from delift.report.jobs import load_jobs

    write_job(tmp_path, "0", "random", 3, {"qlora/bge": 0.5}, predictions=rows("qlora", {"bge": [0.25, 0.75]}))
    (job,) = load_jobs([tmp_path])
    assert (job.selector, job.seed, job.score("qlora/bge"), job.config["budget_fraction"]) == ("random", 3, 0.5, 0.3)
    assert [r["bge"] for r in job.predictions()] == [0.25, 0.75]
