"""The Hydra entry point: ``delift [overrides]`` and ``python -m delift``.

The only place a ``DictConfig`` exists: it is typed and checked (:func:`delift.config.loader.load_config`)
before anything is loaded, and the pipeline gets the typed object.
"""

from __future__ import annotations

import logging
import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from delift.config.checks import ConfigError
from delift.config.loader import CONFIG_DIR, load_config, register

register()  # the schema must be in the ConfigStore before Hydra composes conf/config.yaml
log = logging.getLogger("delift")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one experiment; returns the headline metric so sweepers can optimise it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        config = load_config(cfg)
    except ConfigError as exc:
        log.error("%s", exc)
        sys.exit(2)  # before any data or model is loaded
    from delift.pipeline import run_experiment

    metrics = run_experiment(config, HydraConfig.get().runtime.output_dir)
    headline = f"{list(config.evaluation)[-1]}/rouge1"
    return metrics.get(headline)


__all__ = ["CONFIG_DIR", "main"]

if __name__ == "__main__":
    main()
