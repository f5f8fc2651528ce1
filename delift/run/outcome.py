"""What became of each job of a sweep, recorded in its folder, and the sweep's summary.

A job that fails records ``failed.json`` (``{"failed": true, "exit_code": 2, "error": ...}``: 2 for a user
error such as a :class:`~delift.config.checks.ConfigError`, 1 for a crash) and the sweep goes on to the next
job. A job folder that still holds its :mod:`delift.run.lock` after the sweep ended was killed mid-run (by the
launcher, a signal, the machine): it gets ``aborted.json``. The sweep then ends with one line per failed or
aborted job and a non-zero exit status (:func:`summarise`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from delift.fsutil import write_json
from delift.run.lock import LOCK_NAME, read_lock

FAILED_JSON = "failed.json"
ABORTED_JSON = "aborted.json"
USER_ERROR, CRASH = 2, 1


def clear(job_dir: str | Path) -> None:
    """Forget an earlier attempt's outcome: the job starts again in ``job_dir``."""
    for name in (FAILED_JSON, ABORTED_JSON):
        (Path(job_dir) / name).unlink(missing_ok=True)


def record_failure(job_dir: str | Path, error: BaseException, exit_code: int) -> None:
    write_json(Path(job_dir) / FAILED_JSON, {"failed": True, "exit_code": exit_code,
                                             "error": f"{type(error).__name__}: {error}"[:4000]})


def _job_dirs(sweep_dir: Path) -> list[Path]:
    return sorted((p for p in sweep_dir.iterdir() if (p / ".hydra").is_dir()), key=lambda p: p.name) \
        if sweep_dir.is_dir() else []


def outcomes(sweep_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """The failed and aborted jobs of a finished sweep, each with its record; a job folder whose lock outlived
    its job is marked aborted here (call it once every job has returned)."""
    found = []
    for job in _job_dirs(Path(sweep_dir)):
        owner = read_lock(job)
        if owner is not None:  # every job has returned: a lock left behind is a job that never finished
            write_json(job / ABORTED_JSON, {"aborted": True, "exit_code": None, "lock": owner,
                                            "error": "the job ended without finishing (killed by the launcher, "
                                                     "a signal or the machine)"})
            (job / LOCK_NAME).unlink(missing_ok=True)
        failed = job / FAILED_JSON
        aborted = job / ABORTED_JSON
        for path in (failed, aborted):
            if path.is_file():
                try:
                    found.append((job, json.loads(path.read_text())))
                except ValueError:
                    found.append((job, {"error": f"{path} is unreadable", "exit_code": CRASH}))
                break
    return found


def summarise(sweep_dir: str | Path, jobs: int | None = None) -> tuple[int, list[str]]:
    """The sweep's exit status (0: every job finished; 2: only user errors; 1: a crash or an abort) and its
    summary lines."""
    bad = outcomes(sweep_dir)
    if not bad:
        return 0, []
    total = f" of {jobs}" if jobs else ""
    lines = [f"delift: {len(bad)}{total} sweep jobs did not finish (the others did; details in each folder):"]
    for job, record in bad:
        state = "aborted" if record.get("aborted") else f"failed (exit {record.get('exit_code')})"
        text = " ".join(line.strip() for line in str(record.get("error", "?")).splitlines() if line.strip())
        name = ABORTED_JSON if record.get("aborted") else FAILED_JSON
        lines.append(f"  {job.name}: {state}: {text[:300]}{' ...' if len(text) > 300 else ''} ({job / name})")
    codes = {record.get("exit_code") for _, record in bad}
    return (USER_ERROR if codes == {USER_ERROR} else CRASH), lines
