"""Checks that run in the launching process before a sweep's jobs start (``hydra.callbacks`` added by presets in
``conf/hydra/launcher``): a launcher setting that would stall every job stops the sweep with one clear error."""

from __future__ import annotations

import logging
import sys
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import OmegaConf

log = logging.getLogger(__name__)


class RayClusterAddress(Callback):
    """``hydra/launcher=ray_cluster`` needs a running cluster: with ``hydra.launcher.ray.init.address=null`` Ray starts
    a local instance, and jobs asking for CPUs or a GPU it lacks wait forever ("No available node types can fulfill
    resource request"), so that setting is refused before any job is submitted (exit status 2, like a config error;
    Hydra turns a callback's exception into a warning, so it exits)."""

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        if OmegaConf.select(config, "hydra.launcher.ray.init.address") is None:
            remote = OmegaConf.to_container(config.hydra.launcher.ray.remote, resolve=True)
            log.error(
                f"hydra.launcher.ray.init.address=null: hydra/launcher=ray_cluster connects to a running Ray cluster "
                f"(address auto, or ray://<head>:10001); a local Ray started here would leave jobs asking {remote} "
                f"waiting forever where this machine lacks them. On one machine use hydra/launcher=ray_local "
                f"(local Ray, CPU only).")
            sys.exit(2)
