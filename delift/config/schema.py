"""Typed schemas of every config group (registered in Hydra's ConfigStore by :func:`delift.config.loader.register`).

Each ``conf/<group>/*.yaml`` is merged into its schema when Hydra composes the config, so a misspelt
key or a value of the wrong type fails at compose time, naming the key. Ranges and choices are
checked by each schema's ``problems()`` (local key -> message), walked with full key paths by
:func:`delift.config.checks.collect_problems` before any data or model is loaded.

Polymorphic nodes (``selector``, ``judge``, the blocks of ``evaluation`` and ``metric_library``) are
typed ``Any`` here; their schema is the ``Config`` dataclass of the class their ``_target_`` (or, for
the judge, ``backend``) names, and :mod:`delift.config.loader` merges them into it. ``selector``,
``judge`` and ``evaluation`` are open nodes (:func:`open_node`): their YAMLs set only what differs from
that ``Config``, and ``selector.batch_size=4`` overrides a key the YAML does not list (no ``+``).

The kernel's and the model's schemas are their own runtime settings classes
(``delift.kernel.config.KernelConfig``, :class:`~delift.models.config.ModelConfig`), as are the data's
(``delift.data.config``); none of them imports torch: composing a config stays light.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf

from delift.config.checks import Problems, at_least, choice  # noqa: F401 (re-exported for selector schemas)
from delift.data.config import DataConfig
from delift.kernel.config import KernelConfig
from delift.models.config import ModelConfig
from delift.models.embeddings import DEFAULT_EMBEDDER
from delift.training.settings import TrainConfig  # noqa: F401 (the evaluation.<name>.train schema)


# ---------------------------------------------------------------------------------------- use case
@dataclass
class UsecaseConfig:
    name: str = "instruction_tuning"  # instruction_tuning | task_specific | continual
    eta: float = 1.0  # task_specific: FLMI magnification, min(max_A s, eta * max_Q s_Q)
    nu: float = 1.0  # continual: FLCG privacy hardness, max(max_A s - nu * max_P s_P, 0)
    query_split: str = "valid"  # task_specific: valid | train split of the target
    query_size: Optional[int] = None  # task_specific: cap on |Q| (first examples of that split); null = all
    # Nested data configs (data@usecase.target=<data config>); values set for a use case that does not
    # read them (e.g. smoke sizes) are checked for typos, then dropped by the loader.
    target: Optional[DataConfig] = field(default_factory=DataConfig)  # task_specific: the target task
    existing: Optional[DataConfig] = field(default_factory=DataConfig)  # continual: data already learned

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "name", self.name, ("instruction_tuning", "task_specific", "continual"))
        choice(found, "query_split", self.query_split, ("valid", "train"))
        at_least(found, "eta", self.eta, 0.0, strict=True)
        at_least(found, "nu", self.nu, 0.0)
        at_least(found, "query_size", self.query_size, 1)
        return found


# -------------------------------------------------------------------------------------- evaluation
@dataclass
class GenerationConfig:
    max_new_tokens: int = 64
    batch_size: int = 8  # prompts per generate call (left-padded)
    do_sample: bool = False  # greedy; true = seeded sampling with temperature/top_p
    temperature: float = 1.0
    top_p: float = 1.0

    def problems(self) -> Problems:
        found: Problems = {}
        at_least(found, "max_new_tokens", self.max_new_tokens, 1)
        at_least(found, "batch_size", self.batch_size, 1)
        at_least(found, "temperature", self.temperature, 0.0, strict=True)
        if not 0.0 < self.top_p <= 1.0:
            found["top_p"] = f"{self.top_p!r}: must be in (0, 1]"
        return found


# --------------------------------------------------------------------------------- metrics, logger
@dataclass
class MetricsConfig:
    names: List[str] = field(default_factory=lambda: ["rouge", "bge"])  # each one is conf/metric/<name>.yaml
    embedder: str = DEFAULT_EMBEDDER  # sentence embedder of bge (and of ICL retrieval by default)

    def problems(self) -> Problems:
        return {} if self.names else {"names": "empty: name at least one metric"}


@dataclass
class LoggerConfig:
    name: str = "none"  # none | wandb
    project: str = "delift"
    mode: str = "offline"  # online | offline | disabled
    entity: Optional[str] = None
    group: Optional[str] = None  # null = the sweep (multirun folder) in a multirun, else the experiment name
    job_type: Optional[str] = None  # null = the use case ("kernel-shard" for a shard-only run)
    tags: List[str] = field(default_factory=list)  # added after the selector/data/model/usecase/seed tags
    run_name: Optional[str] = None  # null = the job's overrides (in a sweep the swept ones only; path-valued ones left out), else the experiment
    log_adapter: bool = False  # also log each trained LoRA adapter as a W&B model artifact

    def problems(self) -> Problems:
        found: Problems = {}
        choice(found, "name", self.name, ("none", "wandb"))
        choice(found, "mode", self.mode, ("online", "offline", "disabled"))
        if not str(self.project).strip():
            found["project"] = "empty: W&B needs a project name"
        for key in ("group", "job_type", "run_name"):
            value = getattr(self, key)
            if value is not None and not str(value).strip():
                found[key] = "empty: use null for the default"
        for index, tag in enumerate(self.tags):
            if not str(tag).strip() or len(str(tag)) > 64:
                found[f"tags[{index}]"] = f"{tag!r}: W&B tags are 1 to 64 characters"
        return found


@dataclass
class PromptConfig:
    """One prompt template for the kernel, training and inference (METHOD.md section 5)."""

    with_input: str = "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n"
    without_input: str = "### Instruction:\n{instruction}\n\n### Response:\n"

    def problems(self) -> Problems:
        found: Problems = {}
        if "{instruction}" not in self.with_input or "{input}" not in self.with_input:
            found["with_input"] = "must contain {instruction} and {input}"
        if "{instruction}" not in self.without_input:
            found["without_input"] = "must contain {instruction}"
        return found


@dataclass
class PathsConfig:
    cache_dir: str = ".cache/delift"
    shared_datasets: str = "../shared/datasets"

    def problems(self) -> Problems:
        return {} if str(self.cache_dir).strip() else {"cache_dir": "empty: give a folder"}


# -------------------------------------------------------------------------------------- top level
def open_node() -> DictConfig:
    """An empty node in which Hydra's overrides may add keys (``selector.batch_size=4`` without ``+``): the
    loader merges it into the part's Config, which rejects a key it does not declare."""
    return OmegaConf.create({}, flags={"struct": False})


@dataclass
class ExperimentConfig:
    """The whole composed config (``conf/config.yaml``)."""

    name: str = "quickstart"  # experiment name: W&B group, output folder names
    seed: int = 0  # seeds splits, random selection, LoRA init and training order
    budget_fraction: float = 0.3  # k = floor(budget_fraction * pool size)
    progress: bool = True  # progress bars on long stages
    decontaminate: bool = True  # drop training-side examples whose prompt equals or contains a test prompt (counted)
    prompt: PromptConfig = field(default_factory=PromptConfig)
    paths: PathsConfig = field(default_factory=PathsConfig)
    data: DataConfig = MISSING
    model: ModelConfig = MISSING
    kernel: KernelConfig = field(default_factory=KernelConfig)
    usecase: UsecaseConfig = field(default_factory=UsecaseConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    selector: Any = field(default_factory=open_node)  # a selector's Config (its _target_ names the class)
    judge: Any = field(default_factory=open_node)  # a judge backend's settings (judge.backend: hf | openai)
    evaluation: Any = field(default_factory=open_node)  # chosen protocols' Configs, by name
    metric_library: Dict[str, Any] = field(default_factory=dict)  # metrics.names' Configs (the loader reads them)
    # the model selection scores with: a conf/model/<name> (typed by the loader); empty or null = ``model``
    scorer: Any = field(default_factory=open_node)

    @property
    def scoring_model(self) -> ModelConfig:
        """The model every model-scored selector scores with: ``scorer`` when set, else ``model``."""
        return self.scorer if self.scorer is not None else self.model

    def problems(self) -> Problems:
        found: Problems = {}
        if not 0.0 < self.budget_fraction <= 1.0:
            found["budget_fraction"] = f"{self.budget_fraction!r}: must be in (0, 1]"
        at_least(found, "seed", self.seed, 0)
        if not str(self.name).strip():
            found["name"] = "empty: the experiment name names output folders"
        return found
