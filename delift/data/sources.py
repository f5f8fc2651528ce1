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

The data config never interpolates a top-level key, so it works nested (``usecase.target``).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from delift.data.readers import HubSource, Source

log = logging.getLogger(__name__)

FIXTURES_DIR = Path(__file__).resolve().parent / "fixtures"
OFFLINE_ENV = ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
ROOTS = ("shared", "fixtures")
SHARED_ENV = "DELIFT_SHARED_DATASETS"


def cfg_get(cfg: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    """``cfg[key]`` or ``default``; works for dicts and DictConfigs alike."""
    value = cfg.get(key, default) if cfg is not None else default
    return default if value is None else value


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


def _local(data_cfg: Mapping[str, Any]) -> ResolvedSource:
    path = Path(str(cfg_get(data_cfg, "local_path"))).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"data.local_path does not exist: {path}")
    return ResolvedSource("local_path", (path,), fixture=_inside(path, FIXTURES_DIR))


def _offline(data_cfg: Mapping[str, Any], copy: Mapping[str, Any], shared_datasets: Any) -> ResolvedSource:
    name = cfg_get(data_cfg, "name", "?")
    root_kind = str(cfg_get(copy, "root", "shared"))
    files = cfg_get(copy, "files")
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
    return ResolvedSource("offline_copy", paths, fixture=root_kind == "fixtures", note=cfg_get(copy, "note"))


def _hub(data_cfg: Mapping[str, Any]) -> ResolvedSource:
    configs = cfg_get(data_cfg, "hub_config")
    if configs is None or isinstance(configs, str):
        configs = [configs]
    sources = tuple(HubSource(hub_id=str(cfg_get(data_cfg, "hub_id")), split=str(cfg_get(data_cfg, "hub_split", "train")),
                              config=None if c is None else str(c), revision=cfg_get(data_cfg, "revision"))
                    for c in configs)
    return ResolvedSource("hub", sources)


def resolve_source(data_cfg: Mapping[str, Any], shared_datasets: str | os.PathLike | None = None) -> ResolvedSource:
    """Which files or hub datasets ``data_cfg`` reads here (see the module docstring for the order)."""
    if cfg_get(data_cfg, "local_path") is not None:
        return _local(data_cfg)
    copy = cfg_get(data_cfg, "offline_copy")
    hub_id = cfg_get(data_cfg, "hub_id")
    if copy is not None and (hub_id is None or hub_offline()):
        return _offline(data_cfg, copy, shared_datasets)
    if hub_id is None:
        raise ValueError(f"data '{cfg_get(data_cfg, 'name', '?')}' sets none of data.local_path, "
                         "data.offline_copy, data.hub_id")
    return _hub(data_cfg)


def is_fixture(data_cfg: Mapping[str, Any], shared_datasets: str | os.PathLike | None = None) -> bool:
    """True when ``data_cfg`` would read a packaged FIXTURE here rather than the real dataset."""
    if cfg_get(data_cfg, "format") == "synthetic":
        return False
    return resolve_source(data_cfg, shared_datasets).fixture
