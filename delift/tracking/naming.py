"""Names made from Hydra overrides: sweep job folders and W&B run names.

A job folder is ``<job number>_<key=value,...>``: the job's overrides, those of the keys the sweep
varies (``hydra.sweeper.params`` and command-line sweeps, see ``delift.run.sweep.swept_keys``) first and
the rest sorted, without the path-valued ones
(see :func:`is_path_override`), any ``/`` left in a value replaced by ``_`` so a name never nests
folders, and never longer than a file name may be (255 bytes on common file systems). A name over
the limit keeps its start (the job number and the swept values) and ends with ``~`` and 10 hex
digits of the SHA-256 of the whole name, so two long names that share a start still differ.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

NAME_MAX_BYTES = 255  # NAME_MAX of ext4, xfs, btrfs, tmpfs, APFS, NTFS (in UTF-16 units there)
HASH_CHARS = 10
_PATH_KEY_SUFFIXES = ("local_path", "_path", "_dir", "_file")
_PATH_VALUE_PREFIXES = ("/", "./", "../", "~", "\\")


def override_key(override: str) -> str:
    """The config key of a command-line override: ``+a.b=1`` -> ``a.b``, ``data@usecase.target=x`` -> the package."""
    key = override.split("=", 1)[0].lstrip("+~").strip()
    return key.split("@", 1)[1] if "@" in key else key


def is_path_override(override: str) -> bool:
    """True for overrides whose value is a file-system path: keys ``*local_path``, ``*_path``, ``*_dir``,
    ``*_file``, ``paths.*``, ``hydra.*`` (run/sweep dirs), or a value that starts like a path
    (``/``, ``./``, ``../``, ``~``). A path makes a poor folder name and may not fit in one."""
    key = override_key(override)
    last = key.rsplit(".", 1)[-1]
    if key.startswith(("paths.", "hydra.")) or key in ("paths", "hydra") or last.endswith(_PATH_KEY_SUFFIXES):
        return True
    value = override.split("=", 1)[1].strip().strip("'\"") if "=" in override else ""
    return value.startswith(_PATH_VALUE_PREFIXES)


def override_label(overrides: Iterable[str], first: Iterable[str] = ()) -> str:
    """``key=value`` pairs joined by ``,``: the keys in ``first`` in that order, then the rest sorted;
    path-valued overrides left out, ``/`` made ``_``."""
    order = {key: rank for rank, key in enumerate(dict.fromkeys(str(k) for k in first))}
    kept = [str(o).strip() for o in overrides if str(o).strip() and not is_path_override(str(o))]
    kept.sort(key=lambda o: (order.get(override_key(o), len(order)), o))
    return ",".join(o.replace("/", "_").replace("\\", "_").replace("\0", "") for o in kept)


def fit_bytes(name: str, max_bytes: int = NAME_MAX_BYTES) -> str:
    """``name`` if it fits in ``max_bytes`` of UTF-8; else its start + ``~`` + a hash of all of it."""
    encoded = name.encode("utf-8")
    if len(encoded) <= max_bytes:
        return name
    if max_bytes < HASH_CHARS + 1:
        raise ValueError(f"max_bytes={max_bytes}: too small for a shortened name")
    digest = hashlib.sha256(encoded).hexdigest()[:HASH_CHARS]
    head = encoded[:max_bytes - HASH_CHARS - 1].decode("utf-8", errors="ignore")  # never half a character
    return f"{head}~{digest}"


def job_dirname(num: int | str, overrides: Iterable[str], first: Iterable[str] = (),
                max_bytes: int = NAME_MAX_BYTES) -> str:
    """The sweep sub-folder of job ``num``: ``<num>_<override label>`` (``<num>`` alone without overrides);
    ``first``: the swept keys, whose values lead the name."""
    label = override_label(overrides, first)
    name = f"{num}_{label}" if label else str(num)
    if len(str(num).encode("utf-8")) + HASH_CHARS + 2 > max_bytes:
        raise ValueError(f"job number {num!r} does not fit a {max_bytes}-byte name")
    return fit_bytes(name, max_bytes)


def run_label(overrides: Iterable[str], fallback: str, max_bytes: int = 128, first: Iterable[str] = ()) -> str:
    """A W&B run name: the override label (``fallback`` when there is none), at most ``max_bytes``."""
    return fit_bytes(override_label(overrides, first) or fallback, max_bytes)
