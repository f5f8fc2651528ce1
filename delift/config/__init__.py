"""Typed configuration: the schemas, their checks, and the loader the entry point calls."""

from delift.checks import ConfigError, collect_problems, raise_problems
from delift.config.schema import ExperimentConfig

__all__ = ["ConfigError", "ExperimentConfig", "collect_problems", "raise_problems"]
