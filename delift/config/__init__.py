"""Typed configuration: the checks every settings class uses (:mod:`~delift.config.checks`, the bottom of the
package graph), the schemas (:mod:`~delift.config.schema`) and the loader the entry point calls
(:mod:`~delift.config.loader`).

This ``__init__`` imports nothing, so the settings classes below the schema (data, model, kernel) can use the
checks without an import cycle. Importing :mod:`delift.config.loader` registers the top-level schema in Hydra's
ConfigStore, so Hydra's own compose API (``initialize_config_dir`` + ``compose`` on
:data:`delift.config.loader.CONFIG_DIR`) works in a notebook after ``import delift.config.loader`` alone.
"""
