"""The report folder, written atomically: built in a hidden sibling, renamed into place at the end.

A report killed half way (kill -9, a crash) leaves no half report under the output name: the previous
report stays whole, or no folder appears. Hidden siblings left by a killed writer are removed by the
next report of the same name once their process is gone.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

from delift.fsutil import pid_alive

REPORT_FILES = ("report.md", "table.md")  # a folder holding one of these is a report, replaced as a whole


def slug(text: str) -> str:
    """``text`` as one safe path component: letters, digits, ``_.-`` (``=`` as ``-``), never ``.`` or ``..``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text.replace("=", "-")).strip("._-") or "all"


    return True


def remove_stale(out: Path) -> None:
    """Hidden siblings of ``out`` left by a report whose process no longer runs."""
    for path in out.parent.glob(f".{out.name}.*-*-*"):
        found = re.fullmatch(rf"\.{re.escape(out.name)}\.(partial|old)-(\d+)-.*", path.name)
        if found and path.is_dir() and not pid_alive(int(found.group(2))):
            shutil.rmtree(path, ignore_errors=True)


def start(out: Path) -> Path:
    """Check ``out`` and make the hidden sibling the report is built in; one clean error for an ``out``
    that is a file, or a folder holding something other than a report (it would be replaced)."""
    out = Path(out).resolve()
    if out.exists() and not out.is_dir():
        raise SystemExit(f"--out {out}: a file, not a folder; choose a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not any((out / name).exists() for name in REPORT_FILES):
        raise SystemExit(f"--out {out}: a folder that is not a delift-report folder (no report.md); the report "
                         "replaces its folder as a whole, so choose a new folder or a report folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale(out)
    building = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-{os.getpid()}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    building.chmod(0o777 & ~umask)  # mkdtemp makes it 0700; the report folder follows the umask like its files
    return building


def finish(building: Path, out: Path) -> None:
    """Put the finished report in place of ``out`` (the previous report, if any, is removed)."""
    out = Path(out).resolve()
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-{os.getpid()}-", dir=out.parent))
        os.replace(out, old / "report")
    os.replace(building, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def abandon(building: Path) -> None:
    shutil.rmtree(building, ignore_errors=True)
