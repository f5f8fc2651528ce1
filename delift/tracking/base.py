"""Experiment-logger interface and the do-nothing logger.

A run calls, in order: ``start(config, output_dir)``, any number of ``log_summary`` (a stage's
one-number values, when it ends), ``log_series`` (per-step curves such as the training loss),
``log_metrics`` (scalars into the history), ``log_table``,
``log_artifact`` and ``log_images`` and, after each stage, ``flush``; then ``finish(exit_code)``
(non-zero when the run crashed: 1 for an error, 143 when SIGTERM stopped it).
Implementations must never raise from these calls because of a tracking-backend failure: tracking
is auxiliary to the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from types import TracebackType
from typing import Any


class ExperimentLogger(ABC):
    """Where a run reports its config, scalar metrics, per-example tables and artifacts."""

    @abstractmethod
    def start(self, config: dict[str, Any], output_dir: str) -> None:
        """Begin a run with the resolved ``config``; backend files go inside ``output_dir``."""

    @abstractmethod
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """Record scalar ``metrics`` (optionally at ``step``)."""

    def log_series(self, prefix: str, step: int, values: Mapping[str, Any]) -> None:
        """One point of a per-step curve: ``<prefix>/<key>`` for each number in ``values``, against
        the x-axis ``<prefix>/step`` = ``step``. Default: not recorded."""
        return None

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """Set the run's final values (its summary). Default: not recorded."""
        return None

    def log_images(self, images: Mapping[str, Any]) -> None:
        """Record each image file (a PNG path) under its key. Default: not recorded."""
        return None

    @property
    def accepts_images(self) -> bool:
        """Whether :meth:`log_images` records anything (so a caller may skip drawing the figures)."""
        return False

    def flush(self) -> None:
        """Make what was logged so far survive a kill -9 of the process (called after each stage). Default: nothing."""
        return None

    @abstractmethod
    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Record per-example ``rows`` (one dict per example) as a table called ``name``."""

    @abstractmethod
    def log_artifact(self, name: str, type: str, files: list[str], metadata: dict[str, Any]) -> None:
        """Record ``files`` as a versioned artifact ``name`` of kind ``type`` with ``metadata``."""

    @abstractmethod
    def finish(self, exit_code: int = 0) -> None:
        """End the run (``exit_code`` non-zero: it failed); calling it again is a no-op."""

    def __enter__(self) -> ExperimentLogger:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish(exit_code=0 if exc_type is None else 1)


class NullLogger(ExperimentLogger):
    """Logger that records nothing (``logger=none``)."""

    def start(self, config: dict[str, Any], output_dir: str) -> None:
        return None

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        return None

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        return None

    def log_artifact(self, name: str, type: str, files: list[str], metadata: dict[str, Any]) -> None:
        return None

    def finish(self, exit_code: int = 0) -> None:
        return None
