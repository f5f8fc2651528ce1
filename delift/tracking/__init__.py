"""Experiment tracking: a logger interface, a do-nothing logger and a W&B logger.

``make_logger(cfg)`` builds one from ``conf/logger/*.yaml``::

    name: wandb        # or "none"
    project: delift
    mode: offline      # online | offline | disabled
    entity: null
    group: null        # null: the sweep, or the experiment (delift.tracking.identity)
    job_type: null     # null: the use case
    tags: []           # added after selector:, data:, model:, usecase:, seed: tags
    run_name: null     # null: from the job's overrides
    log_adapter: false # also log each trained LoRA adapter as a model artifact

Also here: :mod:`~delift.tracking.naming` (sweep folder and run names from overrides),
:mod:`~delift.tracking.identity` (run name, group, tags, artifact names) and
:mod:`~delift.tracking.offline` (reading an offline run's ``.wandb`` file).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields, replace
from typing import Any

from delift.config.schema import LoggerConfig
from delift.tracking.base import ExperimentLogger, NullLogger
from delift.tracking.identity import LaunchInfo, RunIdentity, artifact_name, run_identity
from delift.tracking.wandb_logger import WandbLogger

LOGGER_NAMES = ("none", "wandb")


def logger_config(cfg: LoggerConfig | Mapping[str, Any]) -> LoggerConfig:
    """The typed logger config; a mapping (a ``conf/logger/*.yaml``) is checked and converted once here."""
    if isinstance(cfg, LoggerConfig):
        return cfg
    data = {str(k): v for k, v in cfg.items()}
    known = {f.name for f in fields(LoggerConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(f"logger: unknown keys {unknown}; expected a subset of {sorted(known)}")
    if data.get("name") not in LOGGER_NAMES:
        raise ValueError(f"logger.name must be one of {', '.join(LOGGER_NAMES)}; got {data.get('name')!r}")
    typed = LoggerConfig(**{**data, "tags": list(data.get("tags") or [])})
    problems = typed.problems()
    if problems:
        key, message = next(iter(problems.items()))
        raise ValueError(f"logger.{key}: {message}")
    return typed


def make_logger(cfg: LoggerConfig | Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> ExperimentLogger:
    """Build the logger ``cfg.name`` names (``none`` or ``wandb``) from the typed config (or a mapping).

    ``defaults`` supplies values for W&B fields that are null in ``cfg`` (e.g. a run's name, group, job
    type and tags; the pipeline sets them on ``cfg`` itself, :meth:`delift.run.listeners.Tracking.for_run`). Unknown names or keys raise ``ValueError`` naming ``logger.<key>``.
    """
    cfg = logger_config(cfg)
    if cfg.name == "none":
        return NullLogger()
    settable = {f.name for f in fields(LoggerConfig)} - {"name"}
    for key, value in (defaults or {}).items():
        if key not in settable:
            raise ValueError(f"logger defaults: unknown key {key!r}")
        if getattr(cfg, key) in (None, []):
            cfg = replace(cfg, **{key: value})
    return WandbLogger(project=cfg.project, mode=cfg.mode, group=cfg.group, job_type=cfg.job_type,
                       entity=cfg.entity, tags=[str(t) for t in cfg.tags] or None, name=cfg.run_name)


__all__ = ["ExperimentLogger", "LOGGER_NAMES", "LaunchInfo", "NullLogger", "RunIdentity", "WandbLogger",
           "artifact_name", "logger_config", "make_logger", "run_identity"]
