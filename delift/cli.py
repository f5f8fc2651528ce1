"""The Hydra entry point: ``delift [overrides]`` and ``python -m delift``."""

from __future__ import annotations

import os
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

# conf/ ships inside the wheel as delift/conf; in a source checkout it sits beside the package.
_PACKAGED = Path(__file__).resolve().parent / "conf"
CONFIG_DIR = str(_PACKAGED if _PACKAGED.is_dir() else Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    """Run one experiment; returns the headline metric so sweepers can optimise it."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from delift.pipeline import run_experiment
    from delift.protocol import requested_evaluations

    metrics = run_experiment(cfg, HydraConfig.get().runtime.output_dir)
    return metrics.get(f"{requested_evaluations(cfg)[-1].name}/rouge1")


if __name__ == "__main__":
    main()
