"""How ``delift`` runs its Hydra task: the guard callback added to the command line (:mod:`delift.run.guard`),
Hydra's errors said as delift's (:mod:`delift.run.hydra_errors`, exit 2), Ctrl-C as one line (exit 130), and
each job's errors (:func:`job`): a user error exits 2 (a sweep job records it and the sweep goes on)."""

from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from delift.run import outcome
from delift.run.guard import GUARD_KEY, GUARD_TARGET

log = logging.getLogger("delift")
INTERRUPTED = 130


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run; its message is the one line ``delift`` prints."""


def with_guard(arguments: list[str]) -> list[str]:
    """``arguments`` with the guard callback's override after the user's own overrides (argparse wants them
    together)."""
    from hydra._internal.utils import get_args_parser

    if any(a in ("--shell-completion", "-sc") for a in arguments):
        return arguments
    try:
        overrides = get_args_parser().parse_known_args(arguments)[0].overrides or []
    except SystemExit:  # bad flags: Hydra says so
        return arguments
    guard = f"++hydra.callbacks.{GUARD_KEY}={{_target_:{GUARD_TARGET}}}"
    at = max((i for i, a in enumerate(arguments) if overrides and a == overrides[-1]), default=len(arguments) - 1)
    return [*arguments[:at + 1], guard, *arguments[at + 1:]]


def _print_from_task(error: BaseException) -> None:
    """The traceback from the task function down (Hydra's own frames left out), as Hydra prints it."""
    tb = error.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_name != "run_job":
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb.tb_next if tb is not None else error.__traceback__)


def launch(task: Callable[[], Any], arguments: list[str]) -> Any:
    """Run the Hydra-decorated ``task`` on ``arguments`` (``sys.argv[1:]``)."""
    from delift.run.hydra_errors import translate

    full_error = bool(os.environ.get("HYDRA_FULL_ERROR"))
    os.environ["HYDRA_FULL_ERROR"] = "1"  # Hydra raises instead of printing: its errors are said here
    sys.argv = [sys.argv[0], *with_guard(arguments)]
    try:
        return task()
    except KeyboardInterrupt as stop:
        if full_error:
            raise
        print(f"delift: {stop if isinstance(stop, Interrupted) else 'interrupted'}", file=sys.stderr)
        sys.exit(INTERRUPTED)
    except Exception as error:
        message = None if full_error else translate(error, arguments)
        if message is None:
            if full_error:
                raise
            _print_from_task(error)
            print("Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", file=sys.stderr)
            sys.exit(1)
        print(f"delift: {message}", file=sys.stderr)
        sys.exit(2)


def cached_blocks(cache_dir: str | Path, since: float) -> int:
    """Kernel blocks written to ``<cache_dir>/kernels`` since ``since`` (a run's own progress)."""
    root = Path(cache_dir) / "kernels"
    try:
        return sum(1 for p in root.rglob("*.npz") if p.stat().st_mtime >= since)
    except OSError:
        return 0


def job(body: Callable[[], Any], output_dir: str, multirun: bool, cache_dir: Callable[[], str | None]) -> Any:
    """``body()`` (one run) with its errors mapped: a user error (:class:`~delift.config.checks.ConfigError`, a
    bad data file) exits 2, a crash raises; in a sweep both are recorded in the job's folder and the sweep goes
    on (:mod:`delift.run.outcome`); Ctrl-C raises :class:`Interrupted` with the resume line."""
    from delift.config.checks import ConfigError
    from delift.data.records import DataFileError, DataFormatError

    started = time.time()
    try:
        return body()
    except (ConfigError, DataFileError, DataFormatError) as error:  # named with its key or file: no traceback
        log.error("%s", error)
        if not multirun:
            sys.exit(2)
        outcome.record_failure(output_dir, error, outcome.USER_ERROR)
    except KeyboardInterrupt:
        folder = cache_dir()
        blocks = cached_blocks(folder, started) if folder else 0
        where = f" in {Path(folder) / 'kernels'}" if folder else ""
        raise Interrupted(f"interrupted; rerun the same command to resume ({blocks} kernel block"
                          f"{'' if blocks == 1 else 's'} computed by this run cached{where})") from None
    except Exception as error:
        if not multirun:
            raise
        log.exception("this sweep job failed; the sweep goes on")
        outcome.record_failure(output_dir, error, outcome.CRASH)
    return None
