"""The launcher presets of conf/hydra/launcher (issue 24.2): ray_cluster refuses a local Ray before submitting
anything, ray_local asks for no GPU, submitit_local_sweep names no literal %j folder."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from omegaconf import OmegaConf

from delift.config.loader import CONFIG_DIR
from delift.run.launch_checks import RayClusterAddress

LAUNCHERS = Path(CONFIG_DIR) / "hydra" / "launcher"


def ray_config(address):
    return OmegaConf.create({"hydra": {"launcher": {"ray": {"init": {"address": address},
                                                            "remote": {"num_gpus": 1, "num_cpus": 8}}}}})


def test_ray_cluster_with_a_null_address_stops_before_submitting_jobs(caplog):
    with caplog.at_level("ERROR", logger="delift"), pytest.raises(SystemExit) as stopped:
        RayClusterAddress().on_multirun_start(config=ray_config(None))
    assert stopped.value.code == 2
    assert "hydra.launcher.ray.init.address=null" in caplog.text and "'num_gpus': 1" in caplog.text
    assert "hydra/launcher=ray_local" in caplog.text
    for address in ("auto", "ray://head:10001"):  # a cluster to connect to: nothing to say
        RayClusterAddress().on_multirun_start(config=ray_config(address))


def test_ray_cluster_preset_installs_the_check_and_ray_local_asks_for_no_gpu():
    cluster = yaml.safe_load((LAUNCHERS / "ray_cluster.yaml").read_text())
    assert "/hydra/callbacks/ray_cluster_address" in cluster["defaults"]
    callback = (Path(CONFIG_DIR) / "hydra" / "callbacks" / "ray_cluster_address.yaml").read_text()
    assert "# @package hydra.callbacks.ray_cluster_address" in callback
    assert yaml.safe_load(callback)["_target_"] == "delift.run.launch_checks.RayClusterAddress"
    local = yaml.safe_load((LAUNCHERS / "ray_local.yaml").read_text())["ray"]
    assert local["init"]["address"] is None and local["init"]["num_gpus"] == 0 and local["remote"]["num_gpus"] == 0


def test_submitit_local_sweep_keeps_its_logs_in_one_folder_without_a_literal_job_id():
    sweep = yaml.safe_load((LAUNCHERS / "submitit_local_sweep.yaml").read_text())
    assert sweep["defaults"] == ["submitit_local"]
    assert sweep["submitit_folder"] == "${hydra.sweep.dir}/.submitit"  # the plugin's default ends in /%j
