"""Experiment loggers: W&B offline runs land in the output folder; W&B failures never propagate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from delift.tracking import NullLogger, WandbLogger, make_logger
from delift.tracking.offline import offline_runs, read_offline_run
from delift.tracking.wandb_logger import rows_to_columns, sanitize_artifact_name

CONF = Path(__file__).resolve().parents[1] / "conf" / "logger"


@pytest.fixture(autouse=True)
def wandb_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep every W&B file (settings, cache, artifacts) under the test's temp folder."""
    home = tmp_path / "wandb_home"
    home.mkdir()
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_CONSOLE", "off")
    monkeypatch.setenv("WANDB_DISABLE_GIT", "true")
    monkeypatch.setenv("WANDB_DISABLE_CODE", "true")
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        monkeypatch.setenv(var, str(home / var.lower()))
    for var in ("WANDB_MODE", "WANDB_PROJECT", "WANDB_ENTITY", "WANDB_RUN_GROUP", "WANDB_JOB_TYPE"):
        monkeypatch.delenv(var, raising=False)
    return home


def test_wandb_offline_run_files_inside_output_dir(tmp_path: Path) -> None:
    out = tmp_path / "run"
    subset = tmp_path / "subset.json"
    subset.write_text(json.dumps({"indices": [3, 1, 4]}))
    logger = WandbLogger(project="delift-test", mode="offline", group="exp", job_type="evaluate")
    logger.start({"method": "delift", "budget": 0.3, "model": {"name": "tiny"}}, str(out))
    assert logger.active
    logger.log_metrics({"rouge1": 0.5, "bge": 0.8}, step=0)
    logger.log_table("predictions", [{"prompt": "q", "prediction": "a", "rouge1": 0.5},
                                     {"prompt": "q2", "prediction": "b", "extra": [1, 2]}])
    logger.log_artifact("subset/delift 30%", "subset", [str(subset)], {"n": 3})
    logger.finish()
    logger.finish()  # idempotent
    assert not logger.active

    runs = list((out / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list((out / "wandb").iterdir()) if (out / "wandb").exists() else "no wandb dir"
    assert list(runs[0].glob("*.wandb")), sorted(p.name for p in runs[0].iterdir())
    run = read_offline_run(runs[0], wait_s=30)  # W&B's service finishes the file in the background
    assert run.exit_code == 0
    assert (run.group, run.job_type) == ("exp", "evaluate")
    assert run.config["model"] == {"name": "tiny"} and run.config["budget"] == 0.3
    assert run.series("rouge1") == [0.5] and run.series("bge") == [0.8]
    table = run.series("predictions")[0]
    assert (table["_type"], table["nrows"], table["ncols"]) == ("table-file", 2, 4)
    assert {"name": "subset-delift-30", "type": "subset", "metadata": {"n": 3}} in run.artifacts


def test_failed_init_warns_and_later_calls_are_noops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    import wandb

    def boom(*args, **kwargs):
        raise RuntimeError("no network here")

    def must_not_be_called(*args, **kwargs):
        raise AssertionError("W&B used after a failed start")

    monkeypatch.setattr(wandb, "init", boom)
    monkeypatch.setattr(wandb, "Table", must_not_be_called)
    monkeypatch.setattr(wandb, "Artifact", must_not_be_called)
    logger = WandbLogger(project="delift-test", mode="online", group=None, job_type=None)
    with caplog.at_level(logging.WARNING, logger="delift.tracking.wandb_logger"):
        logger.start({"a": 1}, str(tmp_path / "run"))
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "init failed" in messages and "RuntimeError: no network here" in messages
    assert not logger.active

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="delift.tracking.wandb_logger"):
        logger.log_metrics({"x": 1.0})
        logger.log_table("t", [{"a": 1}])
        logger.log_artifact("s", "subset", [str(tmp_path / "missing.json")], {})
        logger.finish()
        logger.finish()
    assert caplog.records == []


def test_failing_call_on_active_run_is_swallowed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    import wandb

    class FlakyRun:
        dir = str(tmp_path / "wandb" / "run-x" / "files")
        finished = 0
        logged: list[dict] = []

        def log(self, data, step=None):
            if "bad" in data:
                raise OSError("disk full")
            self.logged.append(data)

        def log_artifact(self, artifact):
            raise ValueError("artifact rejected")

        def finish(self, exit_code=0):
            self.finished += 1

    run = FlakyRun()
    seen: dict = {}

    def fake_init(**kwargs):
        seen.update(kwargs)
        return run

    monkeypatch.setattr(wandb, "init", fake_init)
    logger = WandbLogger(project="p", mode="offline", group="g", job_type="select", tags=["t1"], name="r")
    out = tmp_path / "out"
    logger.start({"k": 1}, str(out))
    assert seen["dir"] == str(out) and out.is_dir()
    assert seen["reinit"] == "create_new" and seen["config"] == {"k": 1}
    assert (seen["group"], seen["job_type"], seen["tags"], seen["name"]) == ("g", "select", ["t1"], "r")
    with caplog.at_level(logging.WARNING, logger="delift.tracking.wandb_logger"):
        logger.log_metrics({"bad": 1.0})
        logger.log_metrics({"good": 2.0}, step=1)
        logger.log_artifact("a", "subset", [], {})
    messages = " | ".join(r.getMessage() for r in caplog.records)
    assert "OSError: disk full" in messages and "ValueError: artifact rejected" in messages
    assert run.logged == [{"good": 2.0}]
    logger.finish()
    logger.finish()
    assert run.finished == 1


def test_null_logger_does_nothing(tmp_path: Path) -> None:
    logger = NullLogger()
    with logger:
        logger.start({"a": 1}, str(tmp_path / "run"))
        logger.log_metrics({"x": 1.0}, step=3)
        logger.log_table("t", [{"a": 1}])
        logger.log_artifact("s", "subset", ["/nonexistent"], {})
    logger.finish()
    assert not (tmp_path / "run").exists()


def test_make_logger_from_conf_files() -> None:
    from omegaconf import OmegaConf

    from delift.config.schema import LoggerConfig

    def conf(name: str):  # a logger YAML sets only what differs from LoggerConfig
        return OmegaConf.merge(OmegaConf.structured(LoggerConfig), OmegaConf.load(CONF / name))

    assert isinstance(make_logger(conf("none.yaml")), NullLogger)
    logger = make_logger(conf("wandb.yaml"), defaults={"group": "exp1", "job_type": "train"})
    assert isinstance(logger, WandbLogger)
    assert (logger.project, logger.mode, logger.group, logger.job_type, logger.tags) == (
        "delift", "offline", "exp1", "train", [])
    explicit = make_logger({"name": "wandb", "project": "p", "mode": "disabled", "group": "mine"},
                           defaults={"group": "exp1"})
    assert explicit.group == "mine"  # type: ignore[attr-defined]


def test_make_logger_errors() -> None:
    with pytest.raises(ValueError, match=r"logger\.name.*'tensorboard'"):
        make_logger({"name": "tensorboard"})
    with pytest.raises(ValueError, match="unknown keys"):
        make_logger({"name": "wandb", "projct": "x"})
    with pytest.raises(ValueError, match=r"logger\.mode"):
        make_logger({"name": "wandb", "mode": "sometimes"})


def test_helpers() -> None:
    assert sanitize_artifact_name("subset/delift 30%") == "subset-delift-30"
    columns, data = rows_to_columns([{"a": 1}, {"b": {"x": 1}, "a": 2}])
    assert columns == ["a", "b"] and data == [[1, None], [2, '{"x": 1}']]


def only_run(out: Path):
    runs = offline_runs(out, wait_s=30)
    assert len(runs) == 1, runs
    return runs[0]


def test_crashed_run_finishes_with_exit_code_1_and_keeps_what_was_logged(tmp_path: Path) -> None:
    out = tmp_path / "run"
    logger = WandbLogger(project="delift-test", mode="offline", group="uc3/2026-01-02_03-04-05", job_type="continual",
                         tags=["selector:delift", "seed:2"], name="selector=delift,seed=2")
    logger.start({"seed": 2}, str(out))
    logger.log_metrics({"pool/size": 16, "time/data_s": 0.25, "note": "text", "missing": None})
    logger.log_summary({"error": "RuntimeError: selection failed"})
    logger.finish(exit_code=1)
    logger.finish()  # a second finish neither reopens nor changes the exit code

    run = only_run(out)
    assert run.exit_code == 1
    assert (run.name, run.group, run.job_type) == ("selector=delift,seed=2", "uc3/2026-01-02_03-04-05", "continual")
    assert run.tags == ["selector:delift", "seed:2"]
    assert run.series("pool/size") == [16] and run.series("time/data_s") == [0.25]
    assert not run.series("note") and not run.series("missing")  # only numbers go to the history
    assert run.summary["error"] == "RuntimeError: selection failed"


def test_context_manager_marks_an_exception_as_a_failed_run(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with pytest.raises(KeyError):
        with WandbLogger(project="delift-test", mode="offline", group=None, job_type=None) as logger:
            logger.start({}, str(out))
            raise KeyError("boom")
    assert only_run(out).exit_code == 1


def test_loss_curve_through_the_finetune_callback_hook(tmp_path: Path) -> None:
    """The pipeline's loss hook: a plain on_log(step, logs) function, wrapped in a TrainerCallback by
    delift.training.finetune, gives one W&B point per logged step on its own x-axis."""
    from functools import partial
    from importlib import import_module

    from transformers import TrainerCallback, TrainerControl, TrainerState

    finetune_module = import_module("delift.training.finetune")  # the package re-exports the function

    out = tmp_path / "run"
    logger = WandbLogger(project="delift-test", mode="offline", group="g", job_type="instruction_tuning")
    logger.start({}, str(out))
    hook = partial(logger.log_series, "qlora/train")
    with finetune_module.training_callbacks(hook):
        scoped = finetune_module._SCOPED_CALLBACKS.get()
    assert scoped == (hook,) and finetune_module._SCOPED_CALLBACKS.get() == ()  # only inside the block
    callback = finetune_module._trainer_callback(hook)
    assert isinstance(callback, TrainerCallback)
    state, losses = TrainerState(), [2.5, 2.0, 1.75]
    for step, loss in enumerate(losses, start=1):
        state.global_step = step
        callback.on_log(None, state, TrainerControl(), logs={"loss": loss, "learning_rate": 1e-4, "epoch": step / 3})
    callback.on_log(None, state, TrainerControl(), logs={"train_loss": 2.08, "train_runtime": 1.5})
    logger.finish()

    run = only_run(out)
    assert run.series("qlora/train/loss") == losses
    assert run.series("qlora/train/step") == [1, 2, 3, 3]
    assert run.series("qlora/train/train_loss") == [2.08]
    defined = {m["name"]: m for m in run.metrics}
    assert defined["qlora/train/*"]["step_metric"] == "qlora/train/step"
    assert defined["qlora/train/loss"]["summary"] == ["min", "last"]
    assert run.summary["qlora/train/loss"] == {"min": 1.75, "last": 1.75}
    with pytest.raises(TypeError, match="TrainerCallback or a function"):
        finetune_module._trainer_callback(42)


def test_adapter_folder_logged_as_an_artifact(tmp_path: Path) -> None:
    adapter = tmp_path / "finetune_qlora" / "adapter"
    adapter.mkdir(parents=True)
    (adapter / "adapter_config.json").write_text("{}")
    (adapter / "adapter_model.safetensors").write_bytes(b"\0" * 16)
    out = tmp_path / "run"
    logger = WandbLogger(project="delift-test", mode="offline", group="g", job_type="j")
    logger.start({}, str(out))
    logger.log_artifact("adapter-qlora-smoke-instruction_tuning-delift-f0.3-k4-seed0-0123abcd", "model",
                        [str(adapter)], {"evaluation": "qlora"})
    logger.finish()
    (artifact,) = only_run(out).artifacts
    assert artifact == {"name": "adapter-qlora-smoke-instruction_tuning-delift-f0.3-k4-seed0-0123abcd",
                        "type": "model", "metadata": {"evaluation": "qlora"}}


def test_offline_reader_rejects_other_files(tmp_path: Path) -> None:
    bogus = tmp_path / "run-x.wandb"
    bogus.write_bytes(b"not a wandb file")
    with pytest.raises(ValueError, match="not a W&B transaction log"):
        read_offline_run(bogus)


# ------------------------------------------------------------------ sweep folder and run names
from delift.tracking.naming import (  # noqa: E402
    NAME_MAX_BYTES,
    fit_bytes,
    is_path_override,
    job_dirname,
    override_label,
)

UC2_SWEEP_JOB = [  # a use case 2 job of the kind that used to fail with [Errno 36] File name too long
    "experiment=uc2_mixinstruct_gsm8k", "data.local_path=/data/mixinstruct/train.jsonl",
    "usecase.target.local_path=/x/test.jsonl", "data@usecase.target=gsm8k", "paths.cache_dir=/scratch/delift-cache",
    "usecase.eta=0.5", "usecase.query_size=50", "kernel.max_length=1024", "kernel.on_overflow=skip",
    "evaluation=[icl,qlora]", "evaluation.qlora.train.lr=2.5e-5", "evaluation.qlora.train.epochs=5",
    "selector=delift", "selector.postprocess=minmax", "selector.exclude_self_pairs=true", "seed=2",
]


@pytest.mark.parametrize("override, is_path", [
    ("usecase.target.local_path=/x/test.jsonl", True), ("data.local_path=rel/train.jsonl", True),
    ("+model.local_path=/ckpt", True), ("paths.cache_dir=/scratch", True), ("paths.shared_datasets=../d", True),
    ("judge.model=/models/prometheus", True), ("judge.model=./prometheus", True), ("data.hub_id=~/alpaca", True),
    ("data@usecase.target=gsm8k", False), ("model.hub_id=HuggingFaceTB/SmolLM2-135M", False), ("seed=1", False),
    ("selector.exclude_self_pairs=true", False), ("evaluation=[icl,qlora]", False),
])
def test_path_overrides_are_recognised(override: str, is_path: bool) -> None:
    assert is_path_override(override) is is_path


def test_job_dirname_short_names_are_sorted_overrides_after_the_job_number() -> None:
    assert job_dirname(0, ["selector=delift", "seed=1", "paths.cache_dir=/c"]) == "0_seed=1,selector=delift"
    assert job_dirname(3, []) == job_dirname(3, ["data.local_path=/only/a/path"]) == "3"
    assert job_dirname(1, ["model.hub_id=HuggingFaceTB/SmolLM2-135M"]) == "1_model.hub_id=HuggingFaceTB_SmolLM2-135M"
    assert job_dirname(2, ["a=1", "seed=0", "selector=x", "z=2"], first=["selector", "seed"]) == (
        "2_selector=x,seed=0,a=1,z=2")


def test_job_dirname_of_a_long_uc2_job_fits_and_can_be_created(tmp_path: Path) -> None:
    assert len(f"12_{override_label(UC2_SWEEP_JOB)}".encode()) > NAME_MAX_BYTES  # shortening is exercised
    name = job_dirname(12, UC2_SWEEP_JOB)
    assert name.startswith("12_data@usecase.target=gsm8k,evaluation.qlora.train.epochs=5,")  # sorted, number first
    assert len(name.encode()) == NAME_MAX_BYTES and "/" not in name
    assert "local_path" not in name and "cache_dir" not in name and "test.jsonl" not in name
    (tmp_path / name).mkdir()  # the file system takes it
    assert job_dirname(12, UC2_SWEEP_JOB) == name  # stable
    sibling = job_dirname(12, [*UC2_SWEEP_JOB[:-1], "seed=3"])  # differs only past the cut
    assert sibling != name and sibling[:200] == name[:200]
    assert job_dirname(13, UC2_SWEEP_JOB).startswith("13_")
    swept = job_dirname(12, UC2_SWEEP_JOB, first=["seed", "selector.postprocess"])  # swept values survive the cut
    assert swept.startswith("12_seed=2,selector.postprocess=minmax,data@usecase.target=gsm8k,")
    assert len(swept.encode()) == NAME_MAX_BYTES


def test_fit_bytes_never_splits_a_character() -> None:
    long = "é" * 200  # 400 bytes
    fitted = fit_bytes(long, 255)
    assert len(fitted.encode()) <= 255 and fitted.startswith("é") and fitted[-11] == "~"
    assert fit_bytes("short", 255) == "short"
    with pytest.raises(ValueError):
        fit_bytes(long, 5)


def test_sweep_subdir_is_named_by_the_resolver() -> None:
    """conf/config.yaml's hydra.sweep.subdir goes through delift.cli's resolver."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    import delift.cli  # noqa: F401 - registers the resolver, as the entry point does
    from delift.config.loader import CONFIG_DIR, register

    register()

    def subdir(experiment: str, job: list[str]) -> str:
        with initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
            cfg = compose(config_name="config", overrides=[f"experiment={experiment}"], return_hydra_config=True)
        OmegaConf.set_readonly(cfg, False)
        with open_dict(cfg):
            cfg.hydra.job.num = 12
            cfg.hydra.overrides.task = job
        return cfg.hydra.sweep.subdir

    assert subdir("smoke", UC2_SWEEP_JOB) == job_dirname(12, UC2_SWEEP_JOB)  # no sweeper params: all sorted
    job = ["experiment=budget_curve", "paths.cache_dir=/scratch", "kernel.max_length=512", "seed=1",
           "selector=delift", "budget_fraction=0.1"]
    assert subdir("budget_curve", job) == ("12_budget_fraction=0.1,selector=delift,seed=1,experiment=budget_curve,"
                                           "kernel.max_length=512")  # the swept values lead


# ------------------------------------------------------------------ run identity and artifact names
def test_run_identity_in_a_sweep_and_in_process() -> None:
    from delift.config.loader import compose_config
    from delift.tracking import LaunchInfo, run_identity

    cfg = compose_config(["experiment=smoke", "seed=2", "logger=wandb"])
    launch = LaunchInfo(overrides=["experiment=smoke", "seed=2", "paths.cache_dir=/scratch/c"],
                        choices={"selector": "delift", "data": "quickstart", "model": "tiny_llama"},
                        sweep_dir="/work/multirun/smoke/2026-01-02_03-04-05", job_num=4)
    identity = run_identity(cfg, "delift", launch)
    assert identity.name == "experiment=smoke,seed=2"
    assert identity.group == "smoke/2026-01-02_03-04-05"
    assert identity.job_type == "instruction_tuning"
    assert identity.tags == ["selector:delift", "data:quickstart", "model:tiny_llama", "usecase:instruction_tuning",
                             "seed:2"]
    alone = run_identity(cfg, "delift")  # no Hydra: the experiment names and groups the run
    assert (alone.name, alone.group) == ("smoke", "smoke") and "model:tiny-llama" in alone.tags
    mine = compose_config(["experiment=smoke", "logger=wandb", "logger.run_name=mine", "logger.group=grp",
                           "logger.job_type=jt", "logger.tags=[extra]"])
    explicit = run_identity(mine, "delift", launch)
    assert (explicit.name, explicit.group, explicit.job_type, explicit.tags[-1]) == ("mine", "grp", "jt", "extra")


def test_artifact_names_differ_by_budget_and_usecase() -> None:
    from dataclasses import asdict

    from delift.config.loader import compose_config
    from delift.tracking import artifact_name

    def name(*overrides: str, budget: int = 4) -> str:
        cfg = compose_config(["experiment=smoke", *overrides])
        return artifact_name("subset", cfg, "delift", budget, asdict(cfg))

    base = name()
    assert base.startswith("subset-smoke-instruction_tuning-delift-f0.3-k4-seed0-")
    assert name() == base  # a rerun of the same config adds a version of the same artifact
    assert name("logger=wandb", "progress=false") == base  # tracking settings do not change the name
    assert name("budget_fraction=0.5", budget=8) != base
    assert "-continual-" in name("usecase=continual")
    assert name("selector.exclude_self_pairs=true") != base  # any other difference changes the digest
    assert sanitize_artifact_name(base) == base and len(base) <= 128


def test_logger_config_values_fail_naming_their_key() -> None:
    from hydra.errors import ConfigCompositionException

    from delift.config.checks import ConfigError
    from delift.config.loader import compose_config

    assert compose_config(["logger=wandb"]).logger.log_adapter is False
    assert compose_config(["logger=wandb", "logger.log_adapter=true"]).logger.log_adapter is True
    with pytest.raises(ConfigCompositionException) as caught:  # a wrong type: Hydra rejects it while composing
        compose_config(["logger=wandb", "logger.log_adapter=maybe"])
    assert "log_adapter" in f"{caught.value} {caught.value.__cause__}"
    for overrides, key in ((["logger=wandb", "logger.run_name=''"], "logger.run_name: empty"),
                           (["logger=wandb", f"logger.tags=[{'x' * 65}]"], "logger.tags[0]")):
        with pytest.raises(ConfigError) as caught:
            compose_config(overrides)
        assert key in str(caught.value)


def test_artifact_digest_ignores_where_the_cache_is():
    from dataclasses import asdict

    from delift.config.loader import compose_config
    from delift.tracking.identity import config_digest

    here, there = (compose_config(["experiment=smoke", f"paths.cache_dir={root}"]) for root in ("/a", "/b"))
    assert here.model.cache_dir == "/a" and there.model.cache_dir == "/b"  # filled from paths.cache_dir
    assert config_digest(asdict(here)) == config_digest(asdict(there))
    other_seed = compose_config(["experiment=smoke", "paths.cache_dir=/a", "model.seed=1"])
    assert config_digest(asdict(other_seed)) != config_digest(asdict(here))
    scored_here, scored_there = (compose_config(["experiment=smoke", f"paths.cache_dir={root}", "scorer=tiny_llama_b"])
                                 for root in ("/a", "/b"))
    assert scored_here.scorer.cache_dir == "/a" and scored_there.scorer.cache_dir == "/b"
    assert config_digest(asdict(scored_here)) == config_digest(asdict(scored_there)) != config_digest(asdict(here))
    shaped, bare = (compose_config(["model=llama3_8b", *more]) for more in ([], ["model.shape=null"]))
    assert shaped.model.shape.hidden == 4096 and bare.model.shape is None  # the cost plan's figures: not a setting
    assert config_digest(asdict(shaped)) == config_digest(asdict(bare))
