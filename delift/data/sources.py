"""Where a data config's rows come from: an explicit local path, an offline copy, or the HF hub.

Resolution order (:func:`resolve_source`):

1. ``local_path`` set: that file or folder, as always.
2. the hub is offline (``HF_DATASETS_OFFLINE`` or ``HF_HUB_OFFLINE`` set to 1/true/yes/on) or the
   config has no ``hub_id``, and ``offline_copy`` is set: the offline copy's files. ``offline_copy``
   is ``{root, files, note}``: ``root: shared`` means ``files`` are relative to the shared-datasets
   folder (passed in as ``shared_datasets``, normally ``cfg.paths.shared_datasets``; else the
   ``DELIFT_SHARED_DATASETS`` environment variable), ``root: fixtures`` means they are relative to
   the packaged :data:`FIXTURES_DIR` (hand-written samples in the dataset's schema: FIXTURE data,
   not the real dataset). ``note`` says how the copy differs from the hub data (logged, recorded).
3. otherwise the hub: ``hub_id`` / ``hub_config`` (one name, or a list read one after the other) /
   ``hub_split`` / ``revision``.

The data config never interpolates a top-level key, so it works nested (``usecase.target``). Every
public function takes the typed :class:`~delift.data.config.DataConfig` the pipeline passes, or a
plain dict / ``DictConfig`` (tests, notebooks), converted once by :func:`data_config`.
"""

from __future__ import annotations

import difflib
import logging
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping, Union

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, MissingMandatoryValue, OmegaConfBaseException

from delift.data.config import DataConfig
from delift.data.readers import HubSource, Source, check_exists
from delift.data.records import generated_format

log = logging.getLogger(__name__)

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
ROOTS = ("shared", "fixtures")
SHARED_ENV = "DELIFT_SHARED_DATASETS"

DataConfigLike = Union[DataConfig, Mapping[str, Any]]
"""A typed data config, or a plain dict / ``DictConfig`` in its shape (``conf/data/*.yaml``)."""


def _config_problem(exc: OmegaConfBaseException) -> str:
    """One line naming the ``data.<key>`` at fault, from OmegaConf's multi-line message."""
    key = f"data.{exc.full_key}"
    if isinstance(exc, MissingMandatoryValue):
        return f"{key} is required"
    if isinstance(exc, ConfigKeyError) and exc.object_type is not None:
        known = [item.name for item in fields(exc.object_type)]
        close = difflib.get_close_matches(str(exc.key), known, n=1)
        return f"{key}: unknown key{f'; did you mean {close[0]!r}?' if close else ''} (known: {', '.join(known)})"
    return f"{key}: {str(exc.msg).splitlines()[0]}"


def data_config(cfg: DataConfigLike) -> DataConfig:
    """``cfg`` as a :class:`DataConfig` (returned as is when it already is one).

    A mapping is merged into the schema, so an unknown key or a value of the wrong type raises a
    ``ValueError`` naming ``data.<key>``; a mapping without ``name`` is named after its ``format``.
    """
    if isinstance(cfg, DataConfig):
        return cfg
    if not isinstance(cfg, Mapping):
        raise TypeError(f"a data config is a DataConfig, dict or DictConfig, got {type(cfg).__name__}")
    try:
        merged = OmegaConf.merge(OmegaConf.structured(DataConfig), cfg)
        if OmegaConf.is_missing(merged, "format"):
            raise ValueError("data.format is required (a formatter name or 'synthetic')")
        if OmegaConf.is_missing(merged, "name"):
            merged.name = merged.format
        return OmegaConf.to_object(merged)
    except OmegaConfBaseException as exc:
        raise ValueError(_config_problem(exc)) from None


def hub_offline() -> bool:
    """True when ``HF_DATASETS_OFFLINE`` or ``HF_HUB_OFFLINE`` is switched on."""
    return any(os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on") for name in OFFLINE_ENV)


@dataclass(frozen=True)
class ResolvedSource:
    """The sources one data config reads, in order, and what they are."""

    kind: str  # "local_path" | "offline_copy" | "hub"
    sources: tuple[Source, ...]
    fixture: bool = False
    note: str | None = None

    def describe(self) -> str:
        where = ", ".join(s.describe() if isinstance(s, HubSource) else str(s) for s in self.sources)
        return f"{self.kind} {where}" + (" [FIXTURE, not the real dataset]" if self.fixture else "")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready record for run.json / provenance."""
        return {"kind": self.kind, "fixture": self.fixture, "note": self.note,
                "sources": [s.describe() if isinstance(s, HubSource) else str(s) for s in self.sources]}


def _inside(path: Path, folder: Path) -> bool:
    try:
        path.resolve().relative_to(folder)
        return True
    except ValueError:
        return False


def _local(data_cfg: DataConfig) -> ResolvedSource:
    local = str(data_cfg.local_path)
    if not local.strip():  # Path("") is the working directory, never what was meant
        raise ValueError(f"data '{data_cfg.name}': data.local_path is empty; give a file or folder, "
                         "or null to use the hub / offline copy")
    path = Path(local).expanduser()
    check_exists(path, "data.local_path")
    return ResolvedSource("local_path", (path,), fixture=_inside(path, FIXTURES_DIR))


def _offline(data_cfg: DataConfig, shared_datasets: Any) -> ResolvedSource:
    name, copy = data_cfg.name, data_cfg.offline_copy
    root_kind, files = copy.root, copy.files
    if isinstance(files, str):
        files = [files]
    if root_kind not in ROOTS or not files:
        raise ValueError(f"data '{name}': offline_copy needs root in {ROOTS} and a non-empty files list, "
                         f"got root={root_kind!r} files={files!r}")
    if root_kind == "fixtures":
        root = FIXTURES_DIR
    else:
        shared = shared_datasets if shared_datasets is not None else os.environ.get(SHARED_ENV)
        if shared is None:
            raise ValueError(f"data '{name}': the hub is offline and offline_copy is under the shared datasets "
                             f"folder, but no folder was given: pass shared_datasets=cfg.paths.shared_datasets "
                             f"or set {SHARED_ENV}")
        root = Path(str(shared)).expanduser()
    paths = tuple(root / str(f) for f in files)
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FileNotFoundError(f"data '{name}': the hub is offline and the offline copy is missing: {missing}; "
                                f"set data.local_path=..., point paths.shared_datasets / {SHARED_ENV} at the "
                                "shared datasets, or unset HF_DATASETS_OFFLINE/HF_HUB_OFFLINE")
    return ResolvedSource("offline_copy", paths, fixture=root_kind == "fixtures", note=copy.note)


def _hub(data_cfg: DataConfig) -> ResolvedSource:
    configs = data_cfg.hub_config
    if configs is None or isinstance(configs, str):
        configs = [configs]
    split = "train" if data_cfg.hub_split is None else str(data_cfg.hub_split)
    sources = tuple(HubSource(hub_id=str(data_cfg.hub_id), split=split, config=None if c is None else str(c),
                              revision=data_cfg.revision)
                    for c in configs)
    return ResolvedSource("hub", sources)


def resolve_source(data_cfg: DataConfigLike, shared_datasets: str | os.PathLike | None = None) -> ResolvedSource:
    """Which files or hub datasets ``data_cfg`` reads here (see the module docstring for the order)."""
    data_cfg = data_config(data_cfg)
    if data_cfg.local_path is not None:
        return _local(data_cfg)
    if data_cfg.offline_copy is not None and (data_cfg.hub_id is None or hub_offline()):
        return _offline(data_cfg, shared_datasets)
    if data_cfg.hub_id is None:
        raise ValueError(f"data '{data_cfg.name}' sets none of data.local_path, data.offline_copy, data.hub_id")
    return _hub(data_cfg)


def is_fixture(data_cfg: DataConfigLike, shared_datasets: str | os.PathLike | None = None) -> bool:
    """True when ``data_cfg`` would read a packaged FIXTURE here rather than the real dataset."""
    data_cfg = data_config(data_cfg)
    if generated_format(data_cfg.format) is not None:
        return False
    return resolve_source(data_cfg, shared_datasets).fixture
