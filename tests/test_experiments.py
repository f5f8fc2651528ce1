"""Smoke run of every paper-setting experiment config on the tiny model (plumbing, seconds each).

Experiments whose data lives in ../shared/datasets are skipped where that folder is absent (a clean
clone in CI); the MixInstruct and MT-Bench fixtures ship with the package, so those always run.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from delift.config.loader import CONFIG_DIR, compose_config
from delift.run.pipeline import run_experiment

SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", Path(__file__).resolve().parents[2] / "shared" / "datasets"))
TINY = ["model=tiny_llama", "progress=false", "kernel.max_length=512", "kernel.on_overflow=skip",
        "evaluation.qlora.train.max_steps=1", "evaluation.qlora.train.max_length=512",
        "evaluation.qlora.generation.max_new_tokens=4", "evaluation.icl.generation.max_new_tokens=4",
        "evaluation.icl.k=2", "evaluation.icl.max_prompt_length=1024"]
SIZES = {  # experiment -> (overrides shrinking every split it reads, datasets it needs from ../shared)
    "uc1_alpaca": (["data.sizes.train=8", "data.sizes.test=3"], True),
    "uc1_mixinstruct": (["data.sizes.train=8", "data.sizes.test=3"], False),
    "uc2_mixinstruct_gsm8k": (["data.sizes.train=8", "usecase.target.sizes.valid=3", "usecase.target.sizes.test=3"],
                              True),
    "uc2_hotpotqa_mmlu": (["data.sizes.train=8", "usecase.target.sizes.valid=3", "usecase.target.sizes.test=3"], True),
    "uc2_mixinstruct_mtbench": (["data.sizes.train=8", "usecase.target.sizes.valid=3",
                                 "usecase.target.sizes.test=3"], False),
    "uc3_squad_hotpotqa": (["data.sizes.train=8", "data.sizes.test=3", "usecase.existing.sizes.train=3",
                            "usecase.existing.sizes.test=3"], True),
}

pytestmark = pytest.mark.slow  # every paper experiment end to end on the tiny model


def experiment_names() -> list[str]:
    return sorted(p.stem for p in Path(CONFIG_DIR, "experiment").glob("uc*.yaml"))


def test_every_paper_experiment_has_a_smoke_setting():
    assert experiment_names() == sorted(SIZES)


@pytest.mark.parametrize("experiment", sorted(SIZES))
def test_experiment_runs_end_to_end_on_the_tiny_model(experiment, tmp_path):
    sizes, needs_shared = SIZES[experiment]
    if needs_shared and not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: this experiment reads real data from it")
    overrides = [f"experiment={experiment}", f"paths.cache_dir={tmp_path / 'cache'}",
                 f"paths.shared_datasets={SHARED}", "selector=delift", *TINY, *sizes]
    cfg = compose_config(overrides)
    metrics = run_experiment(cfg, tmp_path / "run")

    usecase = cfg.usecase.name
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    assert subset["usecase"] == usecase
    expected_objective = {"instruction_tuning": "facility_location", "task_specific": "flmi",
                          "continual": "flcg"}[usecase]
    assert subset["info"]["objective"] == expected_objective
    assert metrics["subset/size"] == len(subset["selected_ids"]) > 0
    for protocol in ("icl", "qlora"):
        assert 0.0 <= metrics[f"{protocol}/rouge1"] <= 1.0
        assert f"{protocol}/bge" in metrics
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    test_size = metrics["test/size"]
    assert sum(r["evaluation"] == "icl" and r["split"] == "test" for r in rows) == test_size
    assert all(len(r["shown_ids"]) <= 2 for r in rows if r["evaluation"] == "icl")
    if usecase == "continual":  # forgetting: P's test split is scored too, and P is trained on
        assert metrics["test/existing/size"] == 3 and "qlora/existing/rouge1" in metrics
        assert metrics["qlora/train_size"] == metrics["existing/size"] + metrics["subset/size"]
    else:
        assert metrics["qlora/train_size"] == metrics["subset/size"]
    if usecase == "task_specific":
        assert metrics["query/size"] == 3
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert any("tiny random model" in c for c in record["caveats"])
