"""Who a run is on W&B: its name, group, job type, tags, extra config, and its artifacts' names.

- name: ``logger.run_name``, else the job's overrides (``budget_fraction=0.1,selector=delift,seed=0``,
  path-valued ones left out, see :mod:`delift.tracking.naming`); in a sweep only those of the swept keys
  (the overrides every job shares, e.g. ``experiment=smoke,logger=wandb``, are the group's, not the
  run's), all of them when the sweep varies nothing; else the experiment name;
- group: ``logger.group``, else the sweep (``<parent>/<multirun folder>``, e.g.
  ``budget_curve/2025-06-01_10-00-00``) for a multirun job, else the experiment name;
- job_type: ``logger.job_type``, else ``kernel-shard`` for a shard-only run (``kernel.num_shards`` > 1: it
  fills kernel blocks, selects and trains nothing), else the use case;
- tags: ``selector:<choice>``, ``data:<choice>``, ``model:<choice>``, ``usecase:<name>``, ``seed:<n>``,
  ``scorer:<scorer.name>`` when a scorer is set, then ``logger.tags``;
- config: the resolved config plus ``hydra: {overrides, choices, sweep_dir, job_num}`` when Hydra
  launched the run.

Artifact names carry the experiment, use case, selector, budget (fraction and k), seed and a digest of
the resolved config, so runs that differ in anything but tracking settings never become versions of
one artifact, while a rerun of the same config adds a version.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from delift.tracking.naming import fit_bytes, override_key, run_label
from delift.tracking.wandb_logger import sanitize_artifact_name

SHARD_JOB_TYPE = "kernel-shard"
GROUP_MAX_BYTES = 128  # W&B limits run groups and job types to 128 characters
TAG_MAX_BYTES = 64  # and tags to 64
ARTIFACT_MAX_BYTES = 128
_NOT_IDENTITY = ("logger", "paths", "progress")  # settings that do not change what a run computes


@dataclass
class LaunchInfo:
    """How Hydra launched the run (``delift.cli`` fills it); in-process callers may pass nothing."""

    overrides: list[str] = field(default_factory=list)  # HydraConfig.get().overrides.task
    choices: dict[str, Any] = field(default_factory=dict)  # HydraConfig.get().runtime.choices (group -> option)
    sweep_dir: str | None = None  # the multirun folder (hydra.sweep.dir); None for a single run
    job_num: int | None = None  # hydra.job.num in a multirun
    swept: list[str] = field(default_factory=list)  # the keys the sweep varies: they lead the run name

    def as_config(self) -> dict[str, Any]:
        return {"overrides": list(self.overrides), "choices": dict(self.choices), "sweep_dir": self.sweep_dir,
                "job_num": self.job_num, "swept": list(self.swept)}


@dataclass
class RunIdentity:
    name: str
    group: str
    job_type: str
    tags: list[str]


def sweep_group(sweep_dir: str) -> str:
    """``<parent>/<multirun folder>`` of a sweep folder (the default layout: ``<experiment>/<date_time>``)."""
    parts = Path(sweep_dir).parts
    return fit_bytes("/".join(parts[-2:]) if len(parts) >= 2 else str(sweep_dir), GROUP_MAX_BYTES)


def run_identity(cfg: Any, selector_name: str, launch: LaunchInfo | None = None) -> RunIdentity:
    """Name, group, job type and tags of ``cfg``'s run (explicit ``logger.*`` values win)."""
    launch = launch or LaunchInfo()
    choices = {str(k): v for k, v in launch.choices.items()}
    logger = cfg.logger
    swept = set(launch.swept)
    varied = [o for o in launch.overrides if override_key(str(o)) in swept] if swept else []
    name = logger.run_name or run_label(varied or launch.overrides, cfg.name, first=launch.swept)
    if logger.group:
        group = logger.group
    elif launch.sweep_dir:
        group = sweep_group(launch.sweep_dir)
    else:
        group = cfg.name
    pairs = (("selector", choices.get("selector") or selector_name), ("data", choices.get("data") or cfg.data.name),
             ("model", choices.get("model") or cfg.model.name), ("usecase", cfg.usecase.name), ("seed", cfg.seed))
    if cfg.scorer is not None:  # only when set: the tags of a run scored by its model stay
        pairs += (("scorer", cfg.scorer.name),)
    tags = [fit_bytes(f"{key}:{value}", TAG_MAX_BYTES) for key, value in pairs]
    tags += [fit_bytes(str(tag), TAG_MAX_BYTES) for tag in logger.tags if str(tag) not in tags]
    job_type = logger.job_type or (SHARD_JOB_TYPE if cfg.kernel.num_shards > 1 else cfg.usecase.name)
    return RunIdentity(name=name, group=fit_bytes(str(group), GROUP_MAX_BYTES),
                       job_type=fit_bytes(str(job_type), GROUP_MAX_BYTES), tags=tags)


def config_digest(resolved: Mapping[str, Any], length: int = 8) -> str:
    """Hex digest of a resolved config without its tracking, path and progress settings (``model.cache_dir``
    and ``scorer.cache_dir``, copies of ``paths.cache_dir``, included) and the models' ``shape`` (the cost
    plan's figures, not a setting)."""
    kept = {k: v for k, v in resolved.items() if k not in _NOT_IDENTITY}
    for key in ("model", "scorer"):
        if isinstance(kept.get(key), Mapping):
            kept[key] = {k: v for k, v in kept[key].items() if k not in ("cache_dir", "shape")}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:length]


def artifact_name(kind: str, cfg: Any, selector_name: str, budget: int, resolved: Mapping[str, Any]) -> str:
    """``<kind>-<experiment>-<usecase>-<selector>-f<fraction>-k<budget>-seed<n>-<config digest>``."""
    name = (f"{kind}-{cfg.name}-{cfg.usecase.name}-{selector_name}-f{cfg.budget_fraction:g}-k{budget}-seed{cfg.seed}"
            f"-{config_digest(resolved)}")
    if len(name.encode()) > ARTIFACT_MAX_BYTES:  # keep the digest: it is what makes the name unique
        digest = name.rsplit("-", 1)[1]
        name = fit_bytes(name[:-len(digest) - 1], ARTIFACT_MAX_BYTES - len(digest) - 1) + "-" + digest
    return sanitize_artifact_name(name)
