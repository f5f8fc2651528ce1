"""What a run shows on W&B: one-number stage values in the summary, figures as images, names that say what
varies in a sweep, a job type of its own for a kernel shard."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from delift.config.loader import compose_config
from delift.data.records import Example
from delift.run.listeners import Listeners, ResultFiles, RunInfo, Tracking
from delift.selection.base import Selection
from delift.tracking import LaunchInfo, WandbLogger, run_identity
from delift.tracking.offline import offline_runs


@pytest.fixture(autouse=True)
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "wandb_home"
    for var, value in (("WANDB_SILENT", "true"), ("WANDB_CONSOLE", "off"), ("WANDB_DISABLE_GIT", "true"),
                       ("WANDB_DISABLE_CODE", "true")):
        monkeypatch.setenv(var, value)
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    monkeypatch.delenv("WANDB_MODE", raising=False)


def test_sweep_run_names_keep_only_the_swept_overrides() -> None:
    cfg = compose_config(["experiment=smoke", "logger=wandb"])
    overrides = ["experiment=smoke", "logger=wandb", "selector=delift", "seed=2", "paths.cache_dir=/c"]
    swept = LaunchInfo(overrides=overrides, sweep_dir="/m/smoke/2026-01-01_00-00-00", job_num=3,
                       swept=["seed", "selector"])
    assert run_identity(cfg, "delift", swept).name == "seed=2,selector=delift"  # sweep order, constants gone
    nothing_swept = LaunchInfo(overrides=overrides, sweep_dir="/m/smoke/x", job_num=0)
    assert run_identity(cfg, "delift", nothing_swept).name == "experiment=smoke,logger=wandb,seed=2,selector=delift"
    single = LaunchInfo(overrides=overrides)  # a single run: every override tells what it is
    assert run_identity(cfg, "delift", single).name == "experiment=smoke,logger=wandb,seed=2,selector=delift"


def test_a_kernel_shard_run_has_its_own_job_type() -> None:
    shard = compose_config(["experiment=smoke", "kernel.num_shards=2", "kernel.shard=1"])
    assert run_identity(shard, "delift").job_type == "kernel-shard"
    assert run_identity(compose_config(["experiment=smoke"]), "delift").job_type == "instruction_tuning"
    mine = compose_config(["experiment=smoke", "kernel.num_shards=2", "logger=wandb", "logger.job_type=mine"])
    assert run_identity(mine, "delift").job_type == "mine"


def kernel_file(cache: Path, key: str, ids: list[str]) -> None:
    (cache / "kernels").mkdir(parents=True)
    uf = np.arange(len(ids) ** 2, dtype=np.float32).reshape(len(ids), len(ids)) / 100
    meta = {"target_ids": ids, "candidate_ids": ids}  # a dense kernel file as KernelCache writes it
    np.savez(cache / "kernels" / f"{key}.npz", uf=uf, d_one=np.ones_like(uf, dtype=np.float64),
             d_zero=np.ones(len(ids)), meta=np.array(json.dumps(meta)))


def test_stage_numbers_go_to_the_summary_and_figures_to_images(tmp_path: Path) -> None:
    cache, out = tmp_path / "cache", tmp_path / "run"
    cfg = compose_config(["experiment=smoke", "logger=wandb", f"paths.cache_dir={cache}"])
    pool = [Example(f"ex-{i}", f"q{i}", "", f"a{i}", "test") for i in range(5)]
    kernel_file(cache, "k" * 16, [ex.id for ex in pool])
    selection = Selection(indices=[3, 1], gains=[0.5, 0.25], selector="delift", budget=2,
                          info={"kernel_key": "k" * 16, "positive_gain_picks": 2, "kernel_cached": False})
    run = RunInfo(cfg=cfg, output_dir=out, resolved={"seed": 0})
    logger = WandbLogger(project="delift-test", mode="offline", group="g", job_type="j")
    events = Listeners([ResultFiles(run), Tracking(run, logger)])
    events.on_start()
    events.on_data(SimpleNamespace(sources={}), {"pool/size": 5, "test/size": 6, "time/data_s": 0.5})  # type: ignore
    events.on_selection(selection, pool, {"subset/size": 2, "time/selection_s": 0.25, "selection/kernel_cached": False})
    for step, loss in ((1, 2.0), (2, 1.5)):
        events.on_train_step("qlora", step, {"loss": loss})
    events.on_evaluation(SimpleNamespace(name="qlora"), {"qlora/rouge1": 0.125, "time/qlora_s": 3.0},  # type: ignore
                         [{"prediction": "a"}], None)
    events.on_results({"qlora/rouge1": 0.125, "pool/size": 5}, [{"prediction": "a"}])
    events.on_end()

    (decoded,) = offline_runs(out, wait_s=30)
    assert decoded.exit_code == 0
    one_number = ("pool/size", "test/size", "time/data_s", "subset/size", "time/selection_s",
                  "selection/kernel_cached", "qlora/rouge1", "time/qlora_s")
    assert not [key for key in one_number if decoded.series(key)]  # no one-point history series
    assert (decoded.summary["pool/size"], decoded.summary["test/size"], decoded.summary["time/data_s"]) == (5, 6, 0.5)
    assert decoded.summary["subset/size"] == 2 and decoded.summary["selection/kernel_cached"] is False
    assert decoded.summary["qlora/rouge1"] == 0.125
    updates = decoded.summary_updates  # each stage's numbers when the stage ends, in stage order
    first = {key: min(i for i, update in enumerate(updates) if key in update) for key in ("pool/size", "subset/size",
                                                                                         "qlora/rouge1")}
    assert first["pool/size"] < first["subset/size"] < first["qlora/rouge1"]
    assert decoded.series("qlora/train/loss") == [2.0, 1.5]  # the curve stays a history series
    (images,) = [row for row in decoded.history if "figures/kernel" in row]
    for key in ("figures/kernel", "figures/greedy_gains"):
        assert images[key]["_type"] == "image-file" and images[key]["format"] == "png"
        assert images[key]["width"] > 100 and images[key]["height"] > 100


def test_figures_are_skipped_when_the_logger_records_none(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import delift.run.listeners as listeners

    drawn = []
    monkeypatch.setattr(listeners, "selection_figures", lambda run, folder: drawn.append(folder) or {})
    cfg = compose_config(["experiment=smoke"])
    run = RunInfo(cfg=cfg, output_dir=tmp_path, resolved={})
    tracking = Tracking.for_run(run, "random")
    tracking.on_selection(Selection([0], [None], "random", 1), [Example("a", "q", "", "a", "t")], {"subset/size": 1})
    assert drawn == []  # logger=none: no matplotlib work


def test_a_kernel_file_over_the_limit_is_not_reloaded_for_a_figure(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import delift.run.listeners as listeners

    cache, out = tmp_path / "cache", tmp_path / "run"
    out.mkdir()
    pool = [Example(f"ex-{i}", f"q{i}", "", f"a{i}", "test") for i in range(4)]
    kernel_file(cache, "k" * 16, [ex.id for ex in pool])
    (out / "subset.json").write_text(json.dumps({"kernel_hash": "k" * 16, "selected_ids": ["ex-1"], "gains": [0.5],
                                                 "selector": "delift", "info": {}}))
    run = RunInfo(cfg=compose_config(["experiment=smoke", f"paths.cache_dir={cache}"]), output_dir=out, resolved={})
    assert sorted(listeners.selection_figures(run, tmp_path / "a")) == ["figures/greedy_gains", "figures/kernel"]
    monkeypatch.setattr(listeners, "KERNEL_FIGURE_MAX_BYTES", 100)
    assert sorted(listeners.selection_figures(run, tmp_path / "b")) == ["figures/greedy_gains"]


def test_flush_waits_for_the_file_to_be_written_then_to_hold_still(tmp_path: Path) -> None:
    import threading
    import time

    from delift.tracking.wandb_logger import _wait_for_writes

    path = tmp_path / "run.wandb"
    path.write_bytes(b"x" * 7)

    def writer() -> None:  # two writes 0.1 s apart, as W&B's service does every write interval
        for size in (100, 200):
            time.sleep(0.1)
            path.write_bytes(b"x" * size)

    thread = threading.Thread(target=writer)
    start = time.monotonic()
    thread.start()
    assert _wait_for_writes(path, flushed=7, interval_s=0.1, timeout_s=5.0) == 200  # not 100: it waited for stillness
    thread.join()
    assert time.monotonic() - start < 2.0
    start = time.monotonic()
    assert _wait_for_writes(path, flushed=200, interval_s=0.1, timeout_s=0.5) == 200  # nothing new: the timeout ends it
    assert 0.5 <= time.monotonic() - start < 1.5


def test_the_flush_interval_is_set_only_on_a_wandb_that_has_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    from delift.tracking import wandb_logger

    monkeypatch.setattr(wandb_logger, "_flush_settings_supported", lambda: False)
    assert wandb_logger._flush_settings(wandb) == {}
    monkeypatch.setattr(wandb_logger, "_flush_settings_supported", lambda: True)
    if "x_transaction_log_flush_interval" in wandb.Settings.model_fields:
        settings = wandb_logger._flush_settings(wandb)["settings"]
        assert settings.x_transaction_log_flush_interval == wandb_logger.FLUSH_INTERVAL_S


def test_the_run_figures_name_the_configs_seed_before_run_json_exists(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    import delift.run.listeners as listeners
    from delift.report import kernel_figures

    cache, out = tmp_path / "cache", tmp_path / "run"
    cfg = compose_config(["experiment=smoke", "seed=7", f"paths.cache_dir={cache}"])
    pool = [Example(f"ex-{i}", f"q{i}", "", f"a{i}", "test") for i in range(4)]
    kernel_file(cache, "k" * 16, [ex.id for ex in pool])
    run = RunInfo(cfg=cfg, output_dir=out, resolved={})
    selection = Selection(indices=[2, 0], gains=[0.5, 0.25], selector="delift", budget=2,
                          info={"kernel_key": "k" * 16, "positive_gain_picks": 2})
    ResultFiles(run).on_selection(selection, pool, {})  # subset.json only: run.json comes when the run ends
    titles, save = [], kernel_figures.save
    monkeypatch.setattr(kernel_figures, "save", lambda fig, path: titles.append(fig.axes[0].get_title()) or save(fig, path))
    assert set(listeners.selection_figures(run, tmp_path / "figures")) == {"figures/kernel", "figures/greedy_gains"}
    assert not (out / "run.json").exists() and len(titles) == 2
    assert all(title.startswith("DELIFT, seed 7: ") for title in titles), titles
