"""One bad job does not end a sweep (issue 31 defect 2): its config error is recorded in its folder
(failed.json, exit code 2), the other jobs run, and the sweep ends with a summary and a non-zero exit status;
a job whose lock outlives it (killed by the launcher) is recorded as aborted."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from delift.run import outcome
from delift.run.lock import LOCK_NAME

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def job_dir(sweep: Path, name: str, *, lock: dict | None = None, failed: dict | None = None) -> Path:
    folder = sweep / name
    (folder / ".hydra").mkdir(parents=True)
    if lock is not None:
        (folder / LOCK_NAME).write_text(json.dumps(lock))
    if failed is not None:
        (folder / outcome.FAILED_JSON).write_text(json.dumps(failed))
    return folder


def test_the_summary_names_failed_and_aborted_jobs_and_picks_the_exit_status(tmp_path):
    job_dir(tmp_path, "0_seed=0")
    assert outcome.summarise(tmp_path) == (0, [])
    job_dir(tmp_path, "1_seed=1", failed={"failed": True, "exit_code": 2,
                                          "error": "ConfigError: invalid config value:\n  seed: -1: must be >= 0"})
    code, lines = outcome.summarise(tmp_path)
    assert code == 2 and lines[0].startswith("delift: 1 sweep jobs did not finish")
    assert lines[1] == (f"  1_seed=1: failed (exit 2): ConfigError: invalid config value: seed: -1: must be >= 0 "
                        f"({tmp_path / '1_seed=1' / 'failed.json'})")
    killed = job_dir(tmp_path, "2_seed=2", lock={"pid": 999999, "host": socket.gethostname(), "started": "t"})
    code, lines = outcome.summarise(tmp_path)
    assert code == 1 and len(lines) == 3 and lines[2].startswith("  2_seed=2: aborted: the job ended without finishing")
    record = json.loads((killed / outcome.ABORTED_JSON).read_text())
    assert record["aborted"] is True and record["lock"]["pid"] == 999999 and not (killed / LOCK_NAME).exists()
    outcome.clear(killed)  # a rerun of the job starts clean
    assert not (killed / outcome.ABORTED_JSON).exists()


def sweep(tmp_path: Path, *arguments: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "delift", "-m", "experiment=smoke", "selector=random",
                           "progress=false", *arguments, f"hydra.sweep.dir={tmp_path / 'sweep'}",
                           f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=900)


def check_one_bad_job(tmp_path: Path, done: subprocess.CompletedProcess, bad: str, good: str) -> None:
    assert done.returncode == 2, done.stderr[-3000:]
    folders = {p.name.split(",")[0]: p for p in (tmp_path / "sweep").iterdir() if p.is_dir()}  # job number, sweep
    failed = json.loads((folders[bad] / "failed.json").read_text())
    assert failed["exit_code"] == 2 and "budget_fraction" in failed["error"]
    assert (folders[good] / "metrics.json").is_file() and not (folders[good] / "failed.json").exists()
    assert not any((p / LOCK_NAME).exists() for p in folders.values()) and not (tmp_path / "sweep" / LOCK_NAME).exists()
    lines = done.stderr.strip().splitlines()
    assert lines[-2] == "delift: 1 sweep jobs did not finish (the others did; details in each folder):"
    assert lines[-1].startswith(f"  {folders[bad].name}: failed (exit 2): ConfigError:") and "Traceback" not in done.stderr


@pytest.mark.slow
def test_basic_launcher_a_first_bad_job_does_not_stop_the_second(tmp_path):
    done = sweep(tmp_path, "budget_fraction=2.0,0.3")
    check_one_bad_job(tmp_path, done, "0_budget_fraction=2.0", "1_budget_fraction=0.3")


@pytest.mark.slow
def test_joblib_launcher_a_bad_job_does_not_kill_the_good_one(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    done = sweep(tmp_path, "hydra/launcher=joblib_2jobs", "budget_fraction=0.3,2.0")
    check_one_bad_job(tmp_path, done, "1_budget_fraction=2.0", "0_budget_fraction=0.3")
