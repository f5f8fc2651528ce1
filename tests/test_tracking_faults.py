"""A W&B run survives the ways a job is stopped: SIGTERM (Slurm, Kubernetes) and kill -9.

Each test runs ``run_experiment`` on the smoke config in a child process whose evaluation stage is replaced
by three loss points and a wait, stops the child, then decodes its offline ``.wandb`` file.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from delift.tracking.offline import offline_runs

ROOT = Path(__file__).resolve().parents[1]
LOSSES = [2.5, 2.25, 2.0]

CHILD = """
import sys, time
import delift.run.pipeline as pipeline
from delift.config.loader import compose_config

def waiting_evaluation(protocols, ctx, train_set, tests, events):
    for step, loss in enumerate({losses}, start=1):
        events.on_train_step("qlora", step, {{"loss": loss}})
    print("READY", flush=True)
    time.sleep(300)

pipeline._evaluate = waiting_evaluation
cfg = compose_config(["experiment=smoke", "selector=random", "logger=wandb", "logger.mode=offline",
                      "progress=false", "paths.cache_dir=" + sys.argv[2]])
pipeline.run_experiment(cfg, sys.argv[1])
"""


def wandb_environment(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    home = tmp_path / "wandb_home"
    env.update(WANDB_SILENT="true", WANDB_CONSOLE="off", WANDB_DISABLE_GIT="true", WANDB_DISABLE_CODE="true",
               PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    for var in ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR"):
        env[var] = str(home / var.lower())
    return env


def stopped_run(tmp_path: Path, how: int) -> tuple[int, Path]:
    """Start the child, wait for its READY (every stage before the evaluation has ended), send ``how``."""
    out = tmp_path / "run"
    child = subprocess.Popen([sys.executable, "-c", CHILD.format(losses=LOSSES), str(out), str(tmp_path / "cache")],
                             cwd=tmp_path, env=wandb_environment(tmp_path), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        deadline = time.monotonic() + 240
        for line in child.stdout:  # type: ignore[union-attr]
            seen.append(line)
            if line.strip() == "READY" or time.monotonic() > deadline:
                break
        assert seen and seen[-1].strip() == "READY", "".join(seen[-30:])
        child.send_signal(how)
        code = child.wait(timeout=120)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return code, out


@pytest.mark.slow
def test_sigterm_records_exit_code_143_and_every_loss_point(tmp_path: Path) -> None:
    code, out = stopped_run(tmp_path, signal.SIGTERM)
    assert code == 143  # the shell's code for SIGTERM: the run ended itself after recording it
    (run,) = offline_runs(out, wait_s=30)
    assert run.exit_code == 143
    assert run.series("qlora/train/loss") == LOSSES and run.series("qlora/train/step") == [1, 2, 3]
    assert run.summary["error"] == "Terminated: terminated by SIGTERM (exit code 143)"
    assert run.summary["pool/size"] == 16 and run.summary["subset/size"] == 4
    assert "terminated by SIGTERM" in (out / "run.json").read_text()


@pytest.mark.slow
def test_kill_9_keeps_the_finished_stages(tmp_path: Path) -> None:
    code, out = stopped_run(tmp_path, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (wandb_file,) = (out / "wandb").glob("offline-run-*/*.wandb")
    assert wandb_file.stat().st_size > 7  # it used to be the 7-byte header alone
    (run,) = offline_runs(out)
    assert run.exit_code is None  # never finished
    assert run.name == "smoke" and run.job_type == "instruction_tuning" and run.config["selector"]["_target_"]
    # the data and selection stages ended before the kill: their numbers and the subset table are there
    assert run.summary["pool/size"] == 16 and run.summary["subset/size"] == 4 and run.summary["subset/budget"] == 4
    assert run.series("subset")[0]["nrows"] == 4
