"""Typed configuration: the schemas, their checks, and the loader the entry point calls.

Importing this package registers the top-level schema in Hydra's ConfigStore, so Hydra's own compose
API (``initialize_config_dir`` + ``compose`` on :data:`delift.config.loader.CONFIG_DIR`) works in a
notebook that imports nothing else of delift.
"""

from delift.checks import ConfigError, collect_problems, raise_problems
from delift.config.loader import register
from delift.config.schema import ExperimentConfig

register()

__all__ = ["ConfigError", "ExperimentConfig", "collect_problems", "raise_problems"]
