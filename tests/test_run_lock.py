"""One live run per output folder (issue 31 defect 3): ``run.lock`` names its owner; a second run into the
folder exits 2 naming the folder and the owner's pid; a dead owner's lock is taken over with a warning."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delift.run import lock

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid  # exited and reaped: no process has it (pids are not reused this fast)


def test_the_lock_names_its_owner_and_is_released(tmp_path):
    path = lock.acquire(tmp_path / "run")
    owner = json.loads(path.read_text())
    assert owner["pid"] == os.getpid() and owner["host"] == socket.gethostname() and owner["started"]
    assert lock.acquire(tmp_path / "run") == path  # the owner may take it again
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["run.lock"]  # no draft left behind
    lock.release(tmp_path / "run")
    assert not path.exists()


def test_a_live_owner_is_refused_and_a_dead_one_taken_over(tmp_path, caplog):
    folder = tmp_path / "run"
    folder.mkdir()
    live = {"pid": os.getppid(), "host": socket.gethostname(), "started": "2026-01-01T00:00:00"}
    (folder / "run.lock").write_text(json.dumps(live))
    with pytest.raises(lock.FolderInUse, match=f"output folder {folder} is in use by a running delift "
                                               f"\\(pid {os.getppid()}, started 2026-01-01T00:00:00\\)"):
        lock.acquire(folder)
    (folder / "run.lock").write_text(json.dumps({**live, "pid": dead_pid()}))
    with caplog.at_level("WARNING"):
        lock.acquire(folder)
    assert "taking over the stale lock" in caplog.text
    assert json.loads((folder / "run.lock").read_text())["pid"] == os.getpid()
    lock.release(folder)


def test_a_second_delift_into_a_folder_in_use_exits_2_naming_the_owner(tmp_path):
    folder = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", f"from delift.run import lock; lock.acquire({str(folder)!r}); "
                               "print('locked', flush=True); import time; time.sleep(120)"],
                              env=ENV, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        done = subprocess.run([sys.executable, "-m", "delift", "experiment=smoke", f"hydra.run.dir={folder}",
                               f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env=ENV,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 2, done.stderr[-2000:]
        assert done.stderr.strip() == (f"delift: output folder {folder} is in use by a running delift (pid "
                                       f"{holder.pid}, started {json.loads((folder / 'run.lock').read_text())['started']}"
                                       "); wait for it or choose another hydra.run.dir")
        assert sorted(p.name for p in folder.iterdir()) == ["run.lock"]  # the second run wrote nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_dead_runs_lock_is_taken_over_with_a_warning_and_released_at_exit(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.lock").write_text(json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "t"}))
    done = subprocess.run([sys.executable, "-m", "delift", "experiment=smoke", "seed=-1", f"hydra.run.dir={folder}",
                           f"paths.cache_dir={tmp_path / 'cache'}"], cwd=tmp_path, env=ENV, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 2 and "seed: -1: must be >= 0" in done.stdout + done.stderr, done.stderr[-2000:]
    assert "taking over the stale lock" in done.stdout + done.stderr
    assert not (folder / "run.lock").exists()  # a config error (exit 2) releases it too


def run_smoke(tmp_path: Path, folder: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "delift", "experiment=smoke", "selector=random", "progress=false",
                             f"hydra.run.dir={folder}", f"paths.cache_dir={tmp_path / 'cache'}", *extra],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 240) -> None:
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.2)


@pytest.mark.slow
def test_two_runs_into_one_folder_the_second_is_refused_and_the_first_finishes(tmp_path):
    folder = tmp_path / "run"
    first = run_smoke(tmp_path, folder, "seed=0")
    wait_for(folder / "run.lock", first)
    second = run_smoke(tmp_path, folder, "seed=1")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and f"in use by a running delift (pid {first.pid}" in err, err[-2000:]
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err[-2000:]
    assert json.loads((folder / "run.json").read_text())["config"]["seed"] == 0
    assert not (folder / "run.lock").exists()


@pytest.mark.slow
def test_ctrl_c_prints_one_line_and_exits_130(tmp_path):
    folder = tmp_path / "run"
    run = run_smoke(tmp_path, folder, "selector=delift", "data.synthetic.n=100", "data.sizes.train=60",
                    "kernel.block_size=8")  # 64 kernel blocks: Ctrl-C comes while they are computed
    wait_for(folder / "cli.log", run)
    deadline = time.time() + 240
    while "stage selection ..." not in (folder / "cli.log").read_text():
        assert run.poll() is None and time.time() < deadline, run.communicate()[1][-2000:]
        time.sleep(0.2)
    time.sleep(2.0)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=300)
    assert run.returncode == 130, err[-2000:]
    assert "Traceback" not in err
    blocks = len(list((tmp_path / "cache" / "kernels").rglob("*.npz")))  # a fresh cache: all of them this run's
    last = err.strip().splitlines()[-1]
    assert last == (f"delift: interrupted; rerun the same command to resume ({blocks} kernel block"
                    f"{'' if blocks == 1 else 's'} computed by this run cached in {tmp_path / 'cache' / 'kernels'})")
    assert 0 < blocks < 64 and not (folder / "metrics.json").exists()
    assert not (folder / "run.lock").exists()  # released: the rerun may start at once
