"""The Hydra entry point: ``delift [overrides]`` and ``python -m delift``.

The only place a ``DictConfig`` exists: it is typed and checked (:func:`delift.config.loader.load_config`)
before anything is loaded, and the pipeline gets the typed object plus how Hydra launched it
(:class:`delift.tracking.LaunchInfo`: overrides, group choices, sweep folder). The sweep rules (job folder
names, budget-independent selectors run once) are :mod:`delift.run.sweep`'s; how errors, Ctrl-C, output-folder
locks and failed sweep jobs are handled is :mod:`delift.run.entry`'s and :mod:`delift.run.guard`'s.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from delift.config.checks import ConfigError
from delift.config.loader import CONFIG_DIR, check_group_choices, load_config
from delift.run import entry
from delift.run.preflight import check_models
from delift.run.sweep import duplicate_reference_job, launch_info

log = logging.getLogger("delift")

def main() -> float | None:
    """``delift [overrides]``: a misspelt group option (``selector=delfit``) exits 2 with a did-you-mean before
    Hydra composes; then Hydra runs :func:`run` (once, or per sweep job)."""
    try:
        check_group_choices(sys.argv[1:])
    except ConfigError as exc:
        print(f"delift: {exc}", file=sys.stderr)
        sys.exit(2)
    return entry.launch(run, sys.argv[1:])


@hydra.main(config_path=CONFIG_DIR, config_name="config", version_base="1.3")
def run(cfg: DictConfig) -> float | None:
    """Run one experiment; returns the headline metric so sweepers can optimise it."""
    hc = HydraConfig.get()
    return entry.job(lambda: _experiment(cfg), hc.runtime.output_dir, hc.mode == RunMode.MULTIRUN,
               cache_dir=lambda: cfg.get("paths", {}).get("cache_dir"))


def _experiment(cfg: DictConfig) -> float | None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    config = load_config(cfg)  # a ConfigError here comes before any data or model is loaded
    from delift.fsutil import write_json

    launch = launch_info()
    output_dir = HydraConfig.get().runtime.output_dir
    reference = duplicate_reference_job(config, launch)
    if reference is not None:
        reason = (f"selector {config.selector._target_} ignores the budget: this sweep runs it once per seed, "
                  f"at budget_fraction={reference:g}")
        write_json(Path(output_dir) / "skipped.json", {"skipped": True, "reason": reason,
                                                       "budget_fraction": config.budget_fraction,
                                                       "runs_at_budget_fraction": reference})
        log.info("skipped: %s", reason)
        return None
    check_models(config)  # before the pipeline's slow imports: a model no source has fails in seconds
    from delift.run.pipeline import run_experiment

    metrics = run_experiment(config, output_dir, launch=launch, models_checked=True)  # run.json records errors
    headline = f"{list(config.evaluation)[-1]}/rouge1"
    return metrics.get(headline)


__all__ = ["CONFIG_DIR", "main", "run"]

if __name__ == "__main__":
    main()
