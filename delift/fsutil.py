"""Small filesystem and environment helpers shared by every layer (imports nothing from delift)."""

from __future__ import annotations

import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, IO


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary sibling of ``path``, fsync it, then rename it into place.

    Readers see the old file or the complete new one, never half a file; a failure leaves nothing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_folder(target: Path, build: Callable[[Path], None]) -> Path:
    """Build a folder in a temporary sibling and rename it to ``target`` unless it already exists.

    Two processes may race to build the same folder (sweep jobs converting one model); the loser
    discards its copy and uses the winner's.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        build(tmp)
        try:
            os.replace(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def distribution_version(name: str | None) -> str | None:
    """Installed version of a distribution, given its name or its import name; None when absent."""
    if not name:
        return None
    for candidate in (name, name.replace("_", "-")):
        try:
            return version(candidate)
        except PackageNotFoundError:
            continue
    return None
