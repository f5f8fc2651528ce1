"""File helpers shared by every layer (imports nothing from delift): atomic files and folders, strict JSON,
the umask, installed package versions."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import threading
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import IO, Any, Callable, Iterable

_UMASK_LOCK = threading.Lock()
_PROC_STATUS = Path("/proc/self/status")  # Linux >= 4.7 shows the umask there


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux: /proc/self/status).

    Elsewhere it is read with ``os.umask(0)`` and restored at once, under a lock so that two
    threads of this module never see each other's temporary 0.
    """
    try:
        for line in _PROC_STATUS.read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    with _UMASK_LOCK:
        mask = os.umask(0)
        os.umask(mask)
    return mask


def _default_mode(base: int) -> int:
    """``base`` (0o666 for files, 0o777 for folders) less the umask: what ``open``/``mkdir`` give."""
    return base & ~current_umask()


def follow_umask(folder: Path) -> None:
    """Give every file and folder under ``folder`` the mode ``open``/``mkdir`` would (0o666 / 0o777 less the umask).

    Writers such as safetensors create their files 0600 whatever the umask; a group-shared cache must not.
    """
    mask = current_umask()  # read once, not per file
    for path in Path(folder).rglob("*"):
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


def atomic_write(path: Path, write: Callable[[IO[bytes]], None]) -> Path:
    """Call ``write`` on a temporary sibling of ``path``, fsync it, then rename it into place.

    Readers see the old file or the complete new one, never half a file; a failure leaves nothing.
    The file gets the mode a plain ``open`` would give (0o666 less the umask), not mkstemp's 0600,
    so a cache shared by a group stays readable to it.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _default_mode(0o666))
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
    discards its copy and uses the winner's. The folder gets the mode a plain ``mkdir`` would give
    (0o777 less the umask), not mkdtemp's 0700, and so does everything ``build`` writes into it.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        os.chmod(tmp, _default_mode(0o777))
        build(tmp)
        follow_umask(tmp)
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


def discard_folder(folder: Path) -> None:
    """Remove ``folder``: renamed away first (one atomic step), so no reader meets it half deleted.

    A folder that is already gone (another process discarded it first) is not an error.
    """
    folder = Path(folder)
    graveyard = Path(tempfile.mkdtemp(prefix=folder.name + ".discard-", dir=folder.parent))
    try:
        os.replace(folder, graveyard / folder.name)
    except FileNotFoundError:
        pass
    finally:
        shutil.rmtree(graveyard, ignore_errors=True)


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


def write_atomic(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(Path(path), lambda handle: handle.write(text.encode("utf-8")))


def json_safe(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None: strict JSON has no NaN."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(item) for item in value]
    return value


def write_json(path: Path, data: Any) -> Path:
    """Strict JSON (NaN and inf become null), indented."""
    return write_atomic(path, json.dumps(json_safe(data), indent=2, sort_keys=False, default=str,
                                         allow_nan=False) + "\n")


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> Path:
    """One strict-JSON object per line (NaN and inf become null)."""
    return write_atomic(path, "".join(json.dumps(json_safe(row), ensure_ascii=False, default=str, allow_nan=False)
                                      + "\n" for row in rows))


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (another user's live process counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
