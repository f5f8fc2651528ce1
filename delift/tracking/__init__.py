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
from typing import Any

from delift.tracking.base import ExperimentLogger, NullLogger
from delift.tracking.identity import LaunchInfo, RunIdentity, artifact_name, run_identity
from delift.tracking.wandb_logger import WandbLogger

LOGGER_NAMES = ("none", "wandb")
_WANDB_KEYS = frozenset({"name", "project", "mode", "entity", "group", "job_type", "tags", "run_name", "log_adapter"})


def make_logger(cfg: Mapping[str, Any], defaults: Mapping[str, Any] | None = None) -> ExperimentLogger:
    """Build the logger named by ``cfg["name"]`` (``none`` or ``wandb``).

    ``defaults`` supplies values for W&B fields that are null/missing in ``cfg`` (the pipeline
    passes ``group`` per experiment and ``job_type`` per stage). Unknown names or keys raise
    ``ValueError`` naming ``logger.<key>``.
    """
    data = {str(k): v for k, v in cfg.items()}
    name = data.get("name")
    if name == "none":
        return NullLogger()
    if name != "wandb":
        raise ValueError(f"logger.name must be one of {', '.join(LOGGER_NAMES)}; got {name!r}")

    unknown = set(data) - _WANDB_KEYS
    if unknown:
        raise ValueError(f"logger: unknown keys {sorted(unknown)} for logger.name=wandb; "
                         f"expected a subset of {sorted(_WANDB_KEYS)}")
    for key, value in (defaults or {}).items():
        if key not in _WANDB_KEYS - {"name"}:
            raise ValueError(f"logger defaults: unknown key {key!r}")
        if data.get(key) is None:
            data[key] = value
    tags = data.get("tags")
    return WandbLogger(
        project=str(data.get("project") or "delift"),
        mode=str(data.get("mode") or "offline"),
        group=data.get("group"),
        job_type=data.get("job_type"),
        entity=data.get("entity"),
        tags=[str(t) for t in tags] if tags else None,
        name=data.get("run_name"),
    )


__all__ = ["ExperimentLogger", "LOGGER_NAMES", "LaunchInfo", "NullLogger", "RunIdentity", "WandbLogger",
           "artifact_name", "make_logger", "run_identity"]
