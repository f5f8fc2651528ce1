"""The config folders a ``delift`` command line makes Hydra search, for the did-you-mean check of group options
(:func:`delift.config.loader.check_group_choices`): the packaged ``conf/`` (or ``--config-path``), each
``--config-dir``/``-cd``, every ``hydra.searchpath=[...]`` entry on the command line and the primary config's
own ``hydra.searchpath``. Entries are ``file://<dir>``, ``pkg://<package>`` or a plain folder; one that names
nothing readable is left out (Hydra reports it)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Iterable

from omegaconf import OmegaConf


def _entry_dir(entry: str) -> Path | None:
    entry = str(entry).strip()
    if entry.startswith("pkg://"):
        name = entry[len("pkg://"):].strip("/").replace("/", ".")
        top, _, rest = name.partition(".")
        try:
            spec = importlib.util.find_spec(top)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        found = Path(list(spec.submodule_search_locations)[0]).joinpath(*[p for p in rest.split(".") if p])
    elif "://" in entry and not entry.startswith("file://"):
        return None  # structured:// and other sources are not folders
    else:
        found = Path(entry[len("file://"):] if entry.startswith("file://") else entry).expanduser()
    return found if found.is_dir() else None


def _searchpath_overrides(overrides: Iterable[str]) -> list[str]:
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser, found = OverridesParser.create(), []
    for argument in overrides:
        try:
            override = parser.parse_override(argument)
        except Exception:  # noqa: BLE001 - a syntax error: Hydra reports it
            continue
        if override.key_or_group == "hydra.searchpath" and not override.is_delete():
            value = override.value()
            found.extend(str(v) for v in (value if isinstance(value, list) else [value]))
    return found


def _primary_searchpath(dirs: list[Path], config_name: str) -> list[str]:
    for folder in dirs:
        path = folder / f"{config_name.removesuffix('.yaml')}.yaml"
        if path.is_file():
            try:
                entries = OmegaConf.select(OmegaConf.load(path), "hydra.searchpath", default=None)
                return [str(e) for e in OmegaConf.to_container(entries, resolve=True)] if entries else []
            except Exception:  # noqa: BLE001 - an interpolation or a broken file: Hydra reports it
                return []
    return []


def config_dirs(arguments: Iterable[str], packaged: str | Path) -> list[Path]:
    """The folders Hydra would search for group options, given ``delift``'s command-line ``arguments``."""
    from hydra._internal.utils import get_args_parser

    args, _ = get_args_parser().parse_known_args(list(arguments))
    primary = [Path(args.config_path).expanduser()] if args.config_path else [Path(packaged)]
    extra = [d for d in (_entry_dir(args.config_dir),) if d] if args.config_dir else []
    dirs = [d for d in primary if d.is_dir()] + extra
    entries = _searchpath_overrides(args.overrides or []) or _primary_searchpath(dirs, args.config_name or "config")
    dirs += [d for d in map(_entry_dir, entries) if d]
    return list(dict.fromkeys(d.resolve() for d in dirs))


def group_options(dirs: Iterable[Path], group: str) -> list[str] | None:
    """Every option of ``group`` (``<dir>/<group>/<option>.yaml``) in ``dirs``; None when no dir has the group."""
    folders = [d / group for d in dirs if (d / group).is_dir()]
    if not folders:
        return None
    return sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
