"""Every config group option and every experiment composes, and its parts instantiate."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from delift.cli import CONFIG_DIR
from delift.data.formatters import get_formatter
from delift.kernel.utility import KernelSettings
from delift.models.loading import ModelSpec
from delift.protocol import requested_evaluations
from delift.selection.base import Selector
from delift.tracking import make_logger
from delift.training.finetune import FinetuneConfig

CONF = Path(CONFIG_DIR)
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_config(overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=overrides, return_hydra_config=False)


def check_parts(cfg, tmp_path) -> None:
    OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    assert isinstance(instantiate(cfg.selector), Selector)
    ModelSpec.from_config(cfg.model, tmp_path).torch_dtype
    KernelSettings.from_config(cfg.kernel)
    for block in requested_evaluations(cfg):
        if block.kind == "finetune":
            FinetuneConfig.from_config(block.train)
    if cfg.data.format != "synthetic":
        get_formatter(cfg.data.format)
    make_logger(OmegaConf.to_container(cfg.logger))


def test_expected_groups_exist():
    for group in ("data", "model", "kernel", "selector", "usecase", "evaluation", "metrics", "logger", "experiment"):
        assert group in GROUPS and options(group), group


@pytest.mark.parametrize("group,option", [(g, o) for g in GROUPS if g != "experiment" for o in options(g)])
def test_every_group_option_composes_and_instantiates(group, option, tmp_path):
    cfg = compose_config([f"{group}={option}"])
    check_parts(cfg, tmp_path)


@pytest.mark.parametrize("experiment", options("experiment"))
def test_every_experiment_composes_and_instantiates(experiment, tmp_path):
    cfg = compose_config([f"experiment={experiment}"])
    assert cfg.name == experiment
    check_parts(cfg, tmp_path)


def test_default_config_is_the_quickstart():
    cfg = compose_config([])
    assert (cfg.data.name, cfg.model.source, cfg.selector._target_.rsplit(".", 1)[-1], list(cfg.evaluation)) == (
        "quickstart", "packaged_gguf", "DeliftSelector", ["qlora"])
    assert list(cfg.metrics.names) == ["rouge", "bge"] and cfg.logger.name == "none"
