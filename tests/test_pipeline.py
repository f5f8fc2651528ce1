"""The smoke experiment end to end (tiny model): result files, determinism, CLI multiruns (job folder names,
the budget curve), W&B runs decoded from their offline files; plus fast checks of the budget-curve sweep."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from delift.config.loader import CONFIG_DIR, compose_config
from delift.run.pipeline import run_experiment
from delift.run.sweep import duplicate_reference_job, is_budget_independent, swept_fractions, swept_keys
from delift.selection.base import budget_from_fraction
from delift.tracking import LaunchInfo
from delift.tracking.identity import sweep_group
from delift.tracking.naming import NAME_MAX_BYTES
from delift.tracking.offline import offline_runs

REPO = Path(__file__).resolve().parents[1]
slow = pytest.mark.slow  # end-to-end runs and CLI subprocesses
TINY_QUICKSTART = ["model=tiny_llama", "data.sizes.train=16", "data.sizes.test=4", "kernel.max_length=512",
                   "kernel.on_overflow=skip", "evaluation.qlora.train.max_steps=1", "evaluation.qlora.train.max_length=512",
                   "evaluation.qlora.generation.max_new_tokens=4", "progress=false"]


def smoke_config(cache_dir: Path, *overrides: str):
    return compose_config(["experiment=smoke", f"paths.cache_dir={cache_dir}", "progress=false", *overrides])


def isolated_env(tmp_path: Path) -> dict[str, str]:
    """Offline, every cache and W&B file under ``tmp_path``."""
    env = dict(os.environ, DELIFT_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", WANDB_SILENT="true",
               WANDB_CONSOLE="off", WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(tmp_path / "wandb_home" / var.lower())
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        env.pop(var, None)
    return env


@pytest.fixture
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in isolated_env(tmp_path).items():
        if key.startswith("WANDB_"):
            monkeypatch.setenv(key, value)
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(var, raising=False)


def delift_cli(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "delift", "-m", *arguments, f"hydra.sweep.dir={tmp_path / 'multirun'}"]
    done = subprocess.run(cmd, cwd=tmp_path, env=isolated_env(tmp_path), capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("smoke")
    cfg = smoke_config(root / "cache")
    metrics = run_experiment(cfg, root / "run")
    return cfg, metrics, root


@slow
def test_smoke_writes_the_three_result_files(smoke_run):
    cfg, metrics, root = smoke_run
    out = root / "run"
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in ("qlora/rouge1", "qlora/rouge2", "qlora/rougeL", "qlora/bge", "subset/size", "time/selection_s",
                "time/qlora_train_s", "time/total_s"):
        assert key in saved, key
    pool_size = cfg.data.sizes.train
    assert saved["subset/size"] == saved["subset/budget"] == budget_from_fraction(cfg.budget_fraction, pool_size)

    subset = json.loads((out / "subset.json").read_text())
    assert subset["selector"] == "delift" and subset["budget"] == saved["subset/budget"]
    assert len(subset["selected_ids"]) == len(set(subset["selected_ids"])) == subset["budget"]
    assert len(subset["gains"]) == subset["budget"]
    assert all(a >= b - 1e-6 for a, b in zip(subset["gains"], subset["gains"][1:]))  # greedy gains never rise
    assert len(subset["kernel_hash"]) == 64
    assert (root / "cache" / "kernels" / f"{subset['kernel_hash']}.npz").exists()

    record = json.loads((out / "run.json").read_text())
    assert any("tiny random model" in c for c in record["caveats"])
    assert record["model"]["source"] == "tiny_random" and record["embedder"]["source"] == "packaged"
    assert record["config"]["selector"]["postprocess"] == "clip"

    rows = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == cfg.data.sizes.test == saved["test/size"]
    for row in rows:
        assert {"prompt", "reference", "generation", "rouge1", "bge"} <= set(row)
        assert (row["evaluation"], row["split"]) == ("qlora", "test")
        assert row["prompt"].endswith("### Response:\n")
    mean_rouge1 = sum(r["rouge1"] for r in rows) / len(rows)
    assert saved["qlora/rouge1"] == pytest.approx(mean_rouge1)


@slow
def test_same_config_gives_the_same_subset(smoke_run, tmp_path):
    cfg, _, root = smoke_run
    first = json.loads((root / "run" / "subset.json").read_text())
    # a fresh cache: the kernel is recomputed, so this checks the computation, not the cache
    run_experiment(smoke_config(tmp_path / "fresh-cache", "evaluation.qlora.train.max_steps=1"), tmp_path / "again")
    second = json.loads((tmp_path / "again" / "subset.json").read_text())
    assert second["info"]["kernel_cached"] is False
    assert second["selected_ids"] == first["selected_ids"]
    assert second["gains"] == pytest.approx(first["gains"], abs=1e-9)
    # and a rerun on the warm cache reads the same kernel back
    run_experiment(smoke_config(tmp_path / "fresh-cache", "evaluation.qlora.train.max_steps=1"), tmp_path / "cached")
    third = json.loads((tmp_path / "cached" / "subset.json").read_text())
    assert third["info"]["kernel_cached"] is True and third["selected_ids"] == first["selected_ids"]


@slow
def test_cli_multirun_runs_four_jobs(tmp_path):
    env = dict(os.environ, DELIFT_CACHE_DIR=str(tmp_path / "cache"), HF_HUB_OFFLINE="1", WANDB_MODE="disabled")
    cmd = [sys.executable, "-m", "delift", "-m", "experiment=smoke", "selector=delift,random", "seed=0,1",
           f"hydra.sweep.dir={tmp_path / 'multirun'}", "progress=false"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    jobs = sorted(p.parent for p in (tmp_path / "multirun").glob("*/metrics.json"))
    assert len(jobs) == 4
    selectors = sorted(json.loads((job / "subset.json").read_text())["selector"] for job in jobs)
    assert selectors == ["delift", "delift", "random", "random"]


@slow
def test_paper_metrics_with_a_plumbing_judge_are_counted_and_labelled(tmp_path):
    cfg = smoke_config(tmp_path / "cache", "metrics=paper", "judge.model_source=tiny_random", "judge.model=tiny-judge",
                       "judge.max_new_tokens=8", "evaluation=[icl,qlora]", "evaluation.qlora.train.max_steps=1",
                       "evaluation.icl.generation.max_new_tokens=4", "evaluation.icl.k=2")
    metrics = run_experiment(cfg, tmp_path / "run")
    n = metrics["test/size"]
    for protocol in ("icl", "qlora"):
        counts = [metrics[f"{protocol}/judge_{key}"] for key in ("valid", "parse_failures", "out_of_range", "errors")]
        assert metrics[f"{protocol}/judge_n"] == n == sum(counts)
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["judge"]["plumbing_only"] is True
    assert any("LLM judge" in c and "plumbing" in c for c in record["caveats"])


# ------------------------------------------------------------------ the budget curve: the sweep itself (fast)
def budget_curve_sweep() -> dict:
    from hydra import compose, initialize_config_dir

    from delift.config.loader import register

    register()
    with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=budget_curve"], return_hydra_config=True)
    return cfg


def test_budget_curve_sweeps_every_selector_and_runs_reference_lines_once(tmp_path):
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = budget_curve_sweep()
    assert cfg.name == "budget_curve" and cfg.data.name == "quickstart"
    params = dict(cfg.hydra.sweeper.params)
    parse = OverridesParser.create().parse_override
    options = sorted(p.stem for p in (Path(CONFIG_DIR) / "selector").glob("*.yaml"))
    selectors = parse(f"selector={params['selector']}").value().filter(options)  # glob(*), as Hydra expands it
    assert set(selectors) == set(options) and {"random", "delift_se", "delift", "initial", "full"} <= set(selectors)
    assert [float(v) for v in parse(f"budget_fraction={params['budget_fraction']}").sweep_string_iterator()] == [
        0.05, 0.1, 0.2, 0.3, 0.5]
    assert list(parse(f"seed={params['seed']}").sweep_string_iterator()) == ["0", "1", "2"]

    OmegaConf.save(cfg, tmp_path / "multirun.yaml")  # what the basic sweeper saves before it launches the jobs
    assert swept_fractions(tmp_path) == [0.05, 0.1, 0.2, 0.3, 0.5]
    def budget_free(name: str) -> bool:
        return is_budget_independent(OmegaConf.load(Path(CONFIG_DIR) / "selector" / f"{name}.yaml")._target_)

    assert budget_free("initial") and budget_free("full")
    assert not any(budget_free(name) for name in ("random", "delift_se", "delift"))
    # 5 budgets x 3 seeds per curve selector, 1 x 3 seeds per reference line
    runs = sum(1 if name in ("initial", "full") else 5 for name in selectors) * 3
    assert runs == 3 * (5 * (len(selectors) - 2) + 2)


@pytest.mark.parametrize("selector, fraction, swept, skipped", [
    ("full", 0.1, True, 0.05), ("initial", 0.5, True, 0.05), ("full", 0.05, True, None),
    ("delift", 0.1, True, None), ("random", 0.5, True, None), ("full", 0.1, False, None),
])
def test_reference_selectors_run_at_the_first_swept_fraction_only(tmp_path, selector, fraction, swept, skipped):
    OmegaConf.save({"hydra": {"sweeper": {"params": {"budget_fraction": "0.05,0.1,0.5", "seed": "0,1"}},
                              "overrides": {"task": ["experiment=smoke"]}}}, tmp_path / "multirun.yaml")
    cfg = compose_config(["experiment=smoke", f"selector={selector}", f"budget_fraction={fraction}"])
    launch = LaunchInfo(overrides=[f"budget_fraction={fraction}"], sweep_dir=str(tmp_path) if swept else None)
    assert duplicate_reference_job(cfg, launch) == skipped


def test_swept_keys_come_from_sweeper_params_and_command_line_sweeps(tmp_path):
    assert swept_keys(tmp_path, {"seed": "0,1"}) == ["seed"]  # no multirun.yaml: the params' keys
    OmegaConf.save({"hydra": {"sweeper": {"params": {"budget_fraction": "0.1,0.5", "seed": "0,1"}},
                              "overrides": {"task": ["experiment=smoke", "selector=delift,random", "kernel.max_length=512",
                                                     "data@usecase.target=gsm8k,squad", "seed=0,1,2"]}}},
                   tmp_path / "multirun.yaml")
    assert swept_keys(tmp_path) == ["budget_fraction", "seed", "selector", "usecase.target"]


def test_a_command_line_budget_replaces_the_swept_list(tmp_path):
    for task, expected in ((["budget_fraction=0.3"], [0.3]), (["budget_fraction=0.2,0.4"], [0.2, 0.4]), ([], [0.1, 0.5])):
        OmegaConf.save({"hydra": {"sweeper": {"params": {"budget_fraction": "0.1,0.5"}}, "overrides": {"task": task}}},
                       tmp_path / "multirun.yaml")
        assert swept_fractions(tmp_path) == expected
    cfg = compose_config(["experiment=smoke", "selector=full", "budget_fraction=0.3"])
    OmegaConf.save({"hydra": {"sweeper": {"params": {"budget_fraction": "0.1,0.5"}},
                              "overrides": {"task": ["budget_fraction=0.3"]}}}, tmp_path / "multirun.yaml")
    assert duplicate_reference_job(cfg, LaunchInfo(sweep_dir=str(tmp_path))) is None  # one fraction: it runs


# ------------------------------------------------------------------ CLI multiruns (slow)
@slow
def test_cli_job_folders_leave_out_paths_and_fit_a_file_name(tmp_path):
    """A sweep with a path-valued override and a long override list (the use case 2 crash): flat job folders,
    no path in their names, each under 255 bytes, job number first; the W&B runs are grouped by the sweep."""
    deep = tmp_path / ("datasets-" + "d" * 40) / "shared"
    overrides = ["experiment=smoke", "usecase.target.local_path=/x/test.jsonl", f"paths.shared_datasets={deep}",
                 "selector=delift", "selector.exclude_self_pairs=true", "selector.postprocess=clip,minmax",
                 "kernel.block_size=64", "kernel.tokens_per_batch=8192", "evaluation.qlora.train.max_steps=1",
                 "evaluation.qlora.train.logging_steps=1", "evaluation.qlora.train.weight_decay=0.0",
                 "evaluation.qlora.train.warmup_ratio=0.0", "evaluation.qlora.generation.max_new_tokens=4",
                 "evaluation.qlora.generation.batch_size=4", "decontaminate=true", "progress=false",
                 "logger=wandb", "logger.mode=offline"]
    delift_cli(tmp_path, *overrides)
    sweep = tmp_path / "multirun"
    jobs = sorted((p for p in sweep.iterdir() if p.is_dir()), key=lambda p: int(p.name.split("_")[0]))
    assert [p.name.split("_", 1)[0] for p in jobs] == ["0", "1"]
    for job in jobs:
        assert (job / "metrics.json").is_file()  # the job folder is a direct child of the sweep folder
        assert len(job.name.encode()) <= NAME_MAX_BYTES and "/" not in job.name
        assert "local_path" not in job.name and "test.jsonl" not in job.name and "shared_datasets" not in job.name
        assert "usecase.target.local_path=/x/test.jsonl" in (job / ".hydra" / "overrides.yaml").read_text()
    assert all(job.name[-11] == "~" for job in jobs)  # over 255 bytes in full: shortened with a hash tail
    # the swept key leads, so the value that tells the jobs apart survives the cut
    assert [job.name.split(",", 1)[0] for job in jobs] == ["0_selector.postprocess=clip", "1_selector.postprocess=minmax"]

    runs = [offline_runs(job, wait_s=30)[0] for job in jobs]
    assert {run.group for run in runs} == {sweep_group(str(sweep))}
    # the run name is what varies in the sweep: the overrides every job shares are left to the group
    assert [run.name for run in runs] == ["selector.postprocess=clip", "selector.postprocess=minmax"]
    assert all("local_path" not in run.name and run.job_type == "instruction_tuning" for run in runs)
    hydra = runs[1].config["hydra"]
    assert "selector.postprocess=minmax" in hydra["overrides"] and hydra["choices"]["selector"] == "delift"
    assert hydra["job_num"] == 1 and hydra["sweep_dir"] == str(sweep) and hydra["swept"] == ["selector.postprocess"]
    assert runs[1].tags == ["selector:delift", "data:quickstart", "model:tiny_llama", "usecase:instruction_tuning",
                            "seed:0"]


@slow
def test_budget_curve_computes_the_kernel_once_across_budgets(tmp_path):
    delift_cli(tmp_path, "experiment=budget_curve", *TINY_QUICKSTART, "hydra.sweeper.params.selector='delift,full'",
               "hydra.sweeper.params.seed=0", "hydra.sweeper.params.budget_fraction='0.25,0.5'")
    sweep = tmp_path / "multirun"
    jobs = {p.name.split("_", 1)[0]: p for p in sweep.iterdir() if p.is_dir()}
    assert sorted(jobs) == ["0", "1", "2", "3"]
    assert jobs["0"].name.startswith("0_budget_fraction=0.25,selector=delift,data.")  # swept values lead (seed=0 is
    # narrowed to one value here, so it is no longer swept)
    small, full, large = (json.loads((jobs[n] / "subset.json").read_text()) for n in ("0", "1", "2"))
    assert (small["selector"], full["selector"], large["selector"]) == ("delift", "full", "delift")
    assert (small["budget"], large["budget"], full["budget"]) == (4, 8, 16)
    # one kernel computation for both budgets: the second DELIFT job reads it back from the cache
    assert small["info"]["kernel_cached"] is False and large["info"]["kernel_cached"] is True
    assert small["kernel_hash"] == large["kernel_hash"]
    assert len(list((tmp_path / "cache" / "kernels").glob("*.npz"))) == 1
    assert large["selected_ids"][:4] == small["selected_ids"]  # greedy: the larger budget extends the smaller
    # Full ignores the budget: it runs at the first fraction only
    skipped = json.loads((jobs["3"] / "skipped.json").read_text())
    assert skipped["runs_at_budget_fraction"] == 0.25 and not (jobs["3"] / "metrics.json").exists()


# ------------------------------------------------------------------ W&B runs of the pipeline (slow)
@slow
def test_wandb_run_logs_each_stage_the_loss_curve_and_named_artifacts(tmp_path, wandb_env):
    cfg = smoke_config(tmp_path / "cache", "logger=wandb", "logger.mode=offline", "logger.log_adapter=true",
                       "evaluation.qlora.train.max_steps=3", "evaluation.qlora.train.logging_steps=1")
    launch = LaunchInfo(overrides=["experiment=smoke", "logger=wandb", f"paths.cache_dir={tmp_path / 'cache'}"],
                        choices={"selector": "delift", "data": "quickstart", "model": "tiny_llama"})
    metrics = run_experiment(cfg, tmp_path / "run", launch=launch)
    (run,) = offline_runs(tmp_path / "run", wait_s=30)
    assert run.exit_code == 0
    assert (run.name, run.group, run.job_type) == ("experiment=smoke,logger=wandb", "smoke", "instruction_tuning")
    assert run.tags == ["selector:delift", "data:quickstart", "model:tiny_llama", "usecase:instruction_tuning", "seed:0"]
    assert run.config["hydra"]["overrides"] == launch.overrides and run.config["selector"]["postprocess"] == "clip"

    # each stage's numbers go to the summary when it ends: data, then selection, then the evaluation
    first = {key: index for index, row in reversed(list(enumerate(run.summary_updates))) for key in row}
    assert first["pool/size"] < first["subset/size"] < first["qlora/rouge1"]
    assert run.summary["pool/size"] == 16 and run.summary["selection/kernel_cached"] is False
    assert run.summary["qlora/rouge1"] == metrics["qlora/rouge1"]
    assert not run.series("pool/size") and not run.series("qlora/rouge1")  # no one-point history series
    assert {"figures/kernel", "figures/greedy_gains"} <= {key for row in run.history for key in row}
    # the fine-tuning loss, one point per optimiser step on its own axis
    losses = run.series("qlora/train/loss")
    assert len(losses) == 3 and all(isinstance(v, float) for v in losses)
    assert [row["qlora/train/step"] for row in run.history if "qlora/train/loss" in row] == [1, 2, 3]
    assert run.summary["qlora/train/loss"]["min"] == min(losses)
    assert run.summary["qlora/train_loss"] == metrics["qlora/train_loss"]  # the summary holds metrics.json
    # the subset table in pick order, the predictions table, and artifacts named by use case and budget
    subset = json.loads((tmp_path / "run" / "subset.json").read_text())
    (table,) = run.series("subset")
    assert (table["_type"], table["nrows"], table["ncols"]) == ("table-file", subset["budget"], 5)
    assert run.series("qlora/predictions")[0]["nrows"] == metrics["test/size"]
    artifacts = {a["type"]: a for a in run.artifacts if a["type"] in ("subset", "model")}
    assert artifacts["subset"]["name"].startswith(f"subset-smoke-instruction_tuning-delift-f0.3-k{subset['budget']}-seed0-")
    assert artifacts["model"]["name"].startswith("adapter-qlora-smoke-instruction_tuning-delift-f0.3-k")
    assert artifacts["subset"]["metadata"]["kernel_hash"] == subset["kernel_hash"]


@slow
def test_a_crashed_run_finishes_its_wandb_run_with_exit_code_1(tmp_path, wandb_env, monkeypatch):
    from delift.selection.delift import DeliftSelector

    def fail(self, ctx, budget):
        raise RuntimeError("selection exploded")

    monkeypatch.setattr(DeliftSelector, "select", fail)
    cfg = smoke_config(tmp_path / "cache", "logger=wandb", "logger.mode=offline")
    with pytest.raises(RuntimeError, match="selection exploded"):
        run_experiment(cfg, tmp_path / "run")
    (run,) = offline_runs(tmp_path / "run", wait_s=30)
    assert run.exit_code == 1
    assert run.summary["pool/size"] == 16  # what was logged before the crash is kept
    assert "subset/size" not in run.summary
    assert run.summary["error"] == "RuntimeError: selection exploded"
    assert not (tmp_path / "run" / "metrics.json").exists()


SHARED = Path(os.environ.get("DELIFT_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))


@slow
@pytest.mark.parametrize("usecase", ["task_specific", "continual"])
def test_smoke_runs_under_every_usecase(tmp_path, usecase):
    """experiment=smoke stays small under use cases 2 and 3 (a few GSM8K / SQuAD rows, skip overlong ones)."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the default target (GSM8K) and existing data (SQuAD) are read from it")
    cfg = smoke_config(tmp_path / "cache", f"usecase={usecase}", f"paths.shared_datasets={SHARED}",
                       "evaluation=[icl,qlora]")
    metrics = run_experiment(cfg, tmp_path / "run")
    assert metrics["subset/size"] == budget_from_fraction(cfg.budget_fraction, metrics["pool/size"])
    key = "query/size" if usecase == "task_specific" else "existing/size"
    assert 0 < metrics[key] <= 6 and metrics["test/size"] == 6
    rows = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    shown = [len(r["shown_ids"]) for r in rows if r["evaluation"] == "icl"]  # every test split
    assert metrics["icl/k"] == pytest.approx(sum(shown) / len(shown)) and metrics["icl/k_setting"] == 5
    assert max(shown) <= min(5, metrics["subset/size"] + metrics["existing/size"])


def test_an_emptied_pool_names_what_emptied_it():
    from delift.run.pipeline import _why_small
    from delift.run.usecases import UsecaseData

    data = UsecaseData(name="instruction_tuning", pool=[], counts={"pool/decontaminated": 48})
    with pytest.raises(ValueError, match=r"a pool of 0 selects nothing; the pool lost 48 dropped by decontamination"):
        budget_from_fraction(0.3, 0, _why_small(data, []))
    with pytest.raises(ValueError, match=r"3 dropped by kernel.on_overflow=skip"):
        budget_from_fraction(0.3, 2, _why_small(UsecaseData(name="x", pool=[]), ["a", "b", "c"]))


def test_result_files_are_strict_json(tmp_path):
    from delift.fsutil import write_json, write_jsonl

    write_json(tmp_path / "m.json", {"judge": float("nan"), "n": [1.0, float("inf")], "ok": 0.5})
    write_jsonl(tmp_path / "p.jsonl", [{"judge": float("nan")}])
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: pytest.fail(c)) == {
        "judge": None, "n": [1.0, None], "ok": 0.5}
    assert json.loads((tmp_path / "p.jsonl").read_text()) == {"judge": None}


def test_a_failed_run_still_writes_run_json_with_its_error(tmp_path):
    cfg = smoke_config(tmp_path / "cache", "data.sizes.test=0")  # fails in the data stage
    with pytest.raises(ValueError, match="the test split is empty"):
        run_experiment(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["error"].startswith("ValueError: use case instruction_tuning: the test split is empty")
    assert any("tiny random model" in c for c in record["caveats"]) and record["config"]["name"] == "smoke"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == ["run.json"]


def test_every_listener_hears_an_error_even_when_one_fails():
    from delift.run.listeners import Listeners, RunListener

    heard = []

    class Broken(RunListener):
        def on_error(self, error):
            raise OSError("disk full")

    class Recorder(RunListener):
        def on_error(self, error):
            heard.append(str(error))

    Listeners([Broken(), Recorder()]).on_error(RuntimeError("boom"))
    assert heard == ["boom"]


def test_the_protocol_contract_names_training_settings_and_adapter_folder(tmp_path):
    from delift.run.pipeline import build_parts, reference_training

    parts = build_parts(smoke_config(tmp_path / "cache", "evaluation=[icl,qlora]"))
    icl, qlora = parts.protocols
    assert icl.finetune_settings() is None and icl.adapter_dir(tmp_path) is None
    assert reference_training(parts) is qlora.finetune_settings() is qlora.train
    assert qlora.adapter_dir(tmp_path) == tmp_path / "finetune_qlora" / "adapter"
