"""Experiment loggers: W&B offline runs land in the output folder; W&B failures never propagate."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from delift.tracking import NullLogger, WandbLogger, make_logger
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

        def finish(self):
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

    assert isinstance(make_logger(OmegaConf.load(CONF / "none.yaml")), NullLogger)
    logger = make_logger(OmegaConf.load(CONF / "wandb.yaml"), defaults={"group": "exp1", "job_type": "train"})
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
