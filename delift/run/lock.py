"""One live run per output folder: ``<folder>/run.lock`` names its owner (pid, host, start time, command).

The lock is created atomically (its content is written to a private file first, then hard-linked into place,
which fails when a lock exists), so a second run into the same folder sees either no lock or a complete one.
A lock left by a dead process of this host is stale: it is taken over with a warning. The lock is removed when
its run ends (:func:`release`, also at interpreter exit); a lock that outlives its run (kill -9, a launcher
killing its job) is how a sweep tells an aborted job (:mod:`delift.run.outcome`).
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from delift.fsutil import pid_alive

LOCK_NAME = "run.lock"
log = logging.getLogger(__name__)


class FolderInUse(RuntimeError):
    """The output folder is locked by a live run: ``owner`` is its lock's content."""

    def __init__(self, folder: Path, owner: dict[str, Any]):
        self.folder, self.owner = folder, owner
        where = "" if owner.get("host") == socket.gethostname() else f" on host {owner.get('host')}"
        super().__init__(f"output folder {folder} is in use by a running delift (pid {owner.get('pid')}{where}, "
                         f"started {owner.get('started')}); wait for it or choose another hydra.run.dir")


def read_lock(folder: str | Path) -> dict[str, Any] | None:
    """The lock's content; None without a lock; ``{}`` for one that cannot be read."""
    path = Path(folder) / LOCK_NAME
    try:
        owner = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {}
    return owner if isinstance(owner, dict) else {}


def is_alive(owner: dict[str, Any]) -> bool:
    """Whether the lock's owner may still run: its pid lives (on this host); another host's lock counts as live."""
    if owner.get("host") != socket.gethostname():
        return True
    try:
        pid = int(owner["pid"])
    except (KeyError, TypeError, ValueError):
        return False
    return pid == os.getpid() or pid_alive(pid)


def _content() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "command": sys.argv}


def acquire(folder: str | Path) -> Path:
    """Lock ``folder`` (created if missing) for this process; raises :class:`FolderInUse` when a live run holds
    it. Idempotent for the owner; released at interpreter exit if :func:`release` is not called first."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_NAME
    draft = folder / f".{LOCK_NAME}.{os.getpid()}"
    draft.write_text(json.dumps(_content()) + "\n")
    try:
        for _ in range(3):  # a stale lock removed by us or by another taker: try again
            try:
                os.link(draft, path)
                break
            except FileExistsError:
                owner = read_lock(folder)
                if owner is None:
                    continue
                if owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
                    return path  # ours already
                if is_alive(owner) and owner:
                    raise FolderInUse(folder, owner) from None
                log.warning("taking over the stale lock %s of pid %s (started %s), which no longer runs", path,
                            owner.get("pid", "?"), owner.get("started", "?"))
                path.unlink(missing_ok=True)
        else:
            raise FolderInUse(folder, read_lock(folder) or {})
    finally:
        draft.unlink(missing_ok=True)
    atexit.register(release, folder)
    return path


def release(folder: str | Path) -> None:
    """Remove ``folder``'s lock when this process holds it (a no-op otherwise)."""
    owner = read_lock(folder)
    if owner and owner.get("pid") == os.getpid() and owner.get("host") == socket.gethostname():
        (Path(folder) / LOCK_NAME).unlink(missing_ok=True)
