"""The Hydra callback every ``delift`` launch installs (:func:`delift.run.entry.with_guard`): output folders are
locked before Hydra writes into them, and a sweep ends with the summary of its failed and aborted jobs.

- a single run locks ``hydra.run.dir`` before Hydra writes ``.hydra/`` or the log (exit 2 naming the owner pid
  when a live run holds it); a sweep locks ``hydra.sweep.dir`` and each job its own folder while it runs;
- at the end of a sweep, each job folder's outcome (:mod:`delift.run.outcome`) is summarised; the sweep exits
  0 when every job finished, else 2 (only user errors) or 1 (a crash or an aborted job).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import OmegaConf

from delift.run import lock, outcome

log = logging.getLogger("delift")
GUARD_KEY = "delift_guard"  # hydra.callbacks.<it>
GUARD_TARGET = "delift.run.guard.RunGuard"


def _refuse(error: lock.FolderInUse) -> None:
    print(f"delift: {error}", file=sys.stderr)
    sys.exit(2)


def _is_multirun(config: Any) -> bool:
    return OmegaConf.select(config, "hydra.mode") == RunMode.MULTIRUN


class RunGuard(Callback):
    """Locks a run's, a sweep's and each sweep job's folder while in use; a sweep's end summarises its jobs."""

    def on_run_start(self, config: Any, **kwargs: Any) -> None:
        self._take(str(OmegaConf.select(config, "hydra.run.dir")))

    def on_run_end(self, config: Any, **kwargs: Any) -> None:
        lock.release(str(OmegaConf.select(config, "hydra.run.dir")))

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self._take(str(OmegaConf.select(config, "hydra.sweep.dir")))

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        if _is_multirun(config):  # a single run's folder is locked since on_run_start
            job_dir = config.hydra.runtime.output_dir
            self._take(job_dir)
            outcome.clear(job_dir)

    def on_job_end(self, config: Any, job_return: Any = None, **kwargs: Any) -> None:
        if _is_multirun(config):
            lock.release(config.hydra.runtime.output_dir)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = str(OmegaConf.select(config, "hydra.sweep.dir"))
        lock.release(sweep_dir)
        code, lines = outcome.summarise(Path(sweep_dir))
        if code:
            print("\n".join(lines), file=sys.stderr)
            sys.exit(code)

    @staticmethod
    def _take(folder: str) -> None:
        try:
            lock.acquire(folder)
        except lock.FolderInUse as error:
            _refuse(error)
