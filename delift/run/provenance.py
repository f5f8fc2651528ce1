"""What produced a run's numbers: model and embedder identity, library versions, and caveats.

Each function takes the parts of the config it reads: the model and the scorer (``ModelConfig``; the
scorer is None when the run's model scores), the data configs a run reads (:func:`delift.run.usecases.data_configs`), ``metrics`` and
``metric_library`` (a metric declares its own record: ``Metric.provenance``), ``paths.shared_datasets``.
"""

from __future__ import annotations

import platform
from typing import Any, Mapping

from hydra.utils import get_class

from delift.config.schema import MetricsConfig
from delift.data.config import DataConfig
from delift.data.records import generated_format
from delift.data.sources import is_fixture
from delift.fsutil import distribution_version
from delift.models.config import ModelConfig
from delift.models.embeddings import embedder_identity
from delift.models.loading import model_identity, source_of

PACKAGES = ("delift", "torch", "transformers", "peft", "bitsandbytes", "submodlib-py", "sentence-transformers",
            "rouge-score", "hydra-core", "wandb")


def caveats(spec: ModelConfig, data: Mapping[str, DataConfig], shared_datasets: str | None,
            judge: Mapping[str, Any] | None = None) -> list[str]:
    """Labels a reader must see next to the numbers (tiny or small models, synthetic or fixture data,
    a judge too small to mean anything); ``data``: config key -> data config, ``judge``: the judge metric's record (:func:`metric_records`)."""
    notes = []
    caveat = source_of(spec).caveat
    if caveat is not None:
        notes.append(caveat)
    elif "135m" in spec.name.lower():
        notes.append("135M-parameter model: small-model figures, not paper-scale evidence")
    generated = generated_format(data["data"].format)
    if generated is not None:
        notes.append(generated.caveat)
    for key, data_cfg in data.items():
        if is_fixture(data_cfg, shared_datasets):
            notes.append(f"{key}={data_cfg.name}: a small FIXTURE written by delift in the dataset's schema, "
                         "not the real dataset")
    if judge is not None and judge["plumbing_only"]:
        notes.append("LLM judge is a tiny or 135M model: its scores are plumbing, not evidence")
    return notes


def metric_records(metrics: MetricsConfig, metric_library: Mapping[str, Any]) -> dict[str, Any]:
    """What each metric of ``metrics.names`` declares produced its scores (``Metric.provenance``): run.json key
    -> record (the judge's identity under ``judge``)."""
    records = {}
    for name in metrics.names:
        block = metric_library.get(name)
        declared = None if block is None else get_class(block._target_).provenance(block)
        if declared is not None:
            records[declared[0]] = declared[1]
    return records


def _versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {"python": platform.python_version()}
    found.update({name: distribution_version(name) for name in PACKAGES})
    return found


def scorer_record(scorer: ModelConfig | None) -> dict[str, Any] | None:
    """The scoring model's name and identity, or None when the run's model scored (``scorer: null``)."""
    return None if scorer is None else {"name": scorer.name, **model_identity(scorer)}


def run_record(name: str, spec: ModelConfig, data: Mapping[str, DataConfig], metrics: MetricsConfig,
               metric_library: Mapping[str, Any], shared_datasets: str | None, resolved_config: dict[str, Any],
               scorer: ModelConfig | None = None) -> dict[str, Any]:
    """The content of run.json, less what only the run itself knows (its data sources, an error);
    ``metric_library``: the metrics' ``Config`` blocks (each declares its own record)."""
    judged = metric_records(metrics, metric_library).get("judge")
    return {
        "name": name,
        "caveats": caveats(spec, data, shared_datasets, judged),
        "model": model_identity(spec),
        "scorer": scorer_record(scorer),
        "embedder": embedder_identity(metrics.embedder) if "bge" in metrics.names else None,
        "judge": judged,
        "versions": _versions(),
        "config": resolved_config,
    }
