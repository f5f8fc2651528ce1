"""Experiment-logger interface and the do-nothing logger.

A pipeline stage calls, in order: ``start(config, output_dir)``, any number of ``log_metrics``,
``log_table`` and ``log_artifact``, then ``finish()``. Implementations must never raise from
these calls because of a tracking-backend failure: tracking is auxiliary to the run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
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

    @abstractmethod
    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Record per-example ``rows`` (one dict per example) as a table called ``name``."""

    @abstractmethod
    def log_artifact(self, name: str, type: str, files: list[str], metadata: dict[str, Any]) -> None:
        """Record ``files`` as a versioned artifact ``name`` of kind ``type`` with ``metadata``."""

    @abstractmethod
    def finish(self) -> None:
        """End the run; calling it again is a no-op."""

    def __enter__(self) -> "ExperimentLogger":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.finish()


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

    def finish(self) -> None:
        return None
