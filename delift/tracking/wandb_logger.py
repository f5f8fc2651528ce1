"""Weights & Biases logger whose failures never stop the run.

Run files are written inside the run's output folder (``wandb.init(dir=output_dir)`` creates
``<output_dir>/wandb/<mode>-run-*``). Every W&B call is guarded: an exception is reported with
``logging.warning`` (naming the call and the error) and swallowed. After a failed ``start`` the
logger is inactive and all later calls are no-ops; ``finish`` is idempotent.

Per-step curves (:meth:`WandbLogger.log_series`, e.g. ``qlora/train/loss``) get their own x-axis with
``define_metric``: ``<prefix>/step``, and the loss keeps its minimum and last value in the summary.
Stage metrics are logged without a step (W&B's ``_step`` counts calls), so curves and stages never
fight over a monotonic step. Only W&B API within the 0.19.10 floor is used, plus, where the installed
W&B has it, the transaction log's flush interval (``x_transaction_log_flush_interval``, wandb >= 0.2x):
W&B's service buffers the ``.wandb`` file and writes it every 15 s by default, so a kill -9 lost every
stage since; :meth:`WandbLogger.flush` (called after each stage) waits until the file has been written.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from delift.tracking.base import ExperimentLogger

log = logging.getLogger(__name__)

MODES = ("online", "offline", "disabled")
FLUSH_INTERVAL_S = 0.2  # how often W&B's service writes buffered records to the run's .wandb file
FLUSH_TIMEOUT_S = 2.0  # the longest a stage waits for that write (10 write intervals)
_ARTIFACT_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
_T = TypeVar("_T")


def sanitize_artifact_name(name: str) -> str:
    """W&B artifact names allow only letters, digits, ``-``, ``_`` and ``.``; replace the rest."""
    cleaned = _ARTIFACT_NAME_BAD.sub("-", name).strip("-")
    return cleaned or "artifact"


def _table_cell(value: Any) -> Any:
    """Keep scalars as they are; JSON-encode containers so W&B tables accept every column."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        return str(value)


def history_values(values: Mapping[str, Any]) -> dict[str, Any]:
    """The entries W&B can chart: numbers and booleans (None, strings and containers are left out)."""
    return {str(k): v for k, v in values.items() if isinstance(v, (bool, int, float))}


def rows_to_columns(rows: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns (keys in first-seen order over all rows) and data rows (missing keys -> None)."""
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(str(key))
    data = [[_table_cell(row.get(col)) for col in columns] for row in rows]
    return columns, data


class WandbLogger(ExperimentLogger):
    """Log a run to W&B (``mode``: ``online``, ``offline`` or ``disabled``).

    ``group`` usually names the experiment and ``job_type`` the pipeline stage; ``name`` is the
    W&B run name (W&B picks one when ``None``).
    """

    def __init__(
        self,
        project: str,
        mode: str,
        group: str | None,
        job_type: str | None,
        entity: str | None = None,
        tags: list[str] | None = None,
        name: str | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"logger.mode must be one of {', '.join(MODES)}; got {mode!r}")
        if not project:
            raise ValueError("logger.project must be a non-empty string")
        self.project = project
        self.mode = mode
        self.group = group
        self.job_type = job_type
        self.entity = entity
        self.tags = list(tags) if tags else []
        self.name = name
        self._run: Any = None
        self._series: set[str] = set()  # prefixes whose step axis is defined
        self._flushed_size = 0  # the .wandb file's size when flush() last returned

    @property
    def active(self) -> bool:
        """True between a successful ``start`` and ``finish``."""
        return self._run is not None

    def _guard(self, call: str, fn: Callable[[], _T]) -> _T | None:
        try:
            return fn()
        except Exception as exc:  # noqa: BLE001 - tracking must never kill the run
            log.warning("W&B %s failed (tracking continues without it): %s: %s",
                        call, type(exc).__name__, exc)
            return None

    def start(self, config: dict[str, Any], output_dir: str) -> None:
        """``wandb.init`` with the resolved config; run files go to ``<output_dir>/wandb``."""
        if self._run is not None:
            log.warning("W&B start called on an active run; finishing the previous run first")
            self.finish()

        def _init() -> Any:
            import wandb

            os.makedirs(output_dir, exist_ok=True)
            return wandb.init(
                project=self.project,
                entity=self.entity,
                mode=self.mode,
                group=self.group,
                job_type=self.job_type,
                tags=self.tags or None,
                name=self.name,
                config=dict(config),
                dir=output_dir,
                reinit="create_new",
                **_flush_settings(wandb),
            )

        self._series = set()
        self._flushed_size = 0
        self._run = self._guard("init", _init)
        if self._run is None:
            log.warning("W&B logging is disabled for this run after the failed init")

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        """``run.log`` of the numbers in ``metrics`` (``step`` only when given)."""
        if self._run is None:
            return
        run, values = self._run, history_values(metrics)
        if values:
            self._guard("log (metrics)", lambda: run.log(values) if step is None else run.log(values, step=step))

    def log_series(self, prefix: str, step: int, values: Mapping[str, Any]) -> None:
        """``<prefix>/<key>`` against ``<prefix>/step``; the first call defines the axis and the loss summary."""
        if self._run is None:
            return
        run, prefix = self._run, prefix.rstrip("/")
        axis = f"{prefix}/step"

        def _define() -> None:
            run.define_metric(axis)
            run.define_metric(f"{prefix}/*", step_metric=axis)
            run.define_metric(f"{prefix}/loss", step_metric=axis, summary="min,last")

        if prefix not in self._series:
            self._series.add(prefix)
            self._guard(f"define_metric ({prefix})", _define)
        point = {f"{prefix}/{key}": value for key, value in history_values(values).items() if key != "step"}
        if point:
            self._guard(f"log ({prefix})", lambda: run.log({axis: int(step), **point}))

    def log_summary(self, values: Mapping[str, Any]) -> None:
        """``run.summary.update(values)`` (JSON scalars; containers as JSON text)."""
        if self._run is None:
            return
        run = self._run
        cleaned = {str(k): _table_cell(v) for k, v in values.items()}
        self._guard("summary", lambda: run.summary.update(cleaned))

    def log_table(self, name: str, rows: list[dict[str, Any]]) -> None:
        """Log ``rows`` as a ``wandb.Table`` under key ``name``."""
        if self._run is None:
            return
        run = self._run

        def _log() -> None:
            import wandb

            columns, data = rows_to_columns(rows)
            run.log({name: wandb.Table(columns=columns, data=data)})

        self._guard(f"log_table ({name})", _log)

    def log_artifact(self, name: str, type: str, files: list[str], metadata: dict[str, Any]) -> None:
        """Log ``files`` (files or folders) as a ``wandb.Artifact`` (name sanitised for W&B) with ``metadata``."""
        if self._run is None:
            return
        run = self._run

        def _log() -> None:
            import wandb

            artifact = wandb.Artifact(sanitize_artifact_name(name), type=type, metadata=dict(metadata))
            for path in files:
                if Path(path).is_dir():
                    artifact.add_dir(str(path), name=Path(path).name)
                else:
                    artifact.add_file(str(path))
            run.log_artifact(artifact)

        self._guard(f"log_artifact ({name})", _log)

    def log_images(self, images: Mapping[str, str | Path]) -> None:
        """``run.log`` of each PNG as a ``wandb.Image`` under its key (e.g. ``figures/kernel``)."""
        if self._run is None or not images:
            return
        run = self._run

        def _log() -> None:
            import wandb

            run.log({str(key): wandb.Image(str(path)) for key, path in images.items()})

        self._guard(f"log_images ({', '.join(map(str, images))})", _log)

    @property
    def accepts_images(self) -> bool:
        return self._run is not None

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> None:
        """Wait until W&B's service has written what was logged so far to the run's ``.wandb`` file: the file
        has grown since the last flush and then stayed the same for longer than the service's write interval.
        Without that interval setting (older W&B), or when the run has no such file, this returns at once."""
        if self._run is None or self.mode == "disabled" or not _flush_settings_supported():
            return
        run = self._run
        path = self._guard("flush (sync file)", lambda: Path(run.settings.sync_file))
        if path is None:
            return
        self._flushed_size = _wait_for_writes(path, self._flushed_size, FLUSH_INTERVAL_S, timeout_s)

    def finish(self, exit_code: int = 0) -> None:
        """``run.finish(exit_code=...)`` once (non-zero marks the run failed); later calls do nothing."""
        run, self._run = self._run, None
        if run is not None:
            self._guard("finish", lambda: run.finish(exit_code=int(exit_code)))


def _flush_settings_supported() -> bool:
    import wandb

    return "x_transaction_log_flush_interval" in getattr(wandb.Settings, "model_fields", {})


def _flush_settings(wandb: Any) -> dict[str, Any]:
    """``settings=`` for ``wandb.init`` that make the service write the transaction log every
    :data:`FLUSH_INTERVAL_S` (nothing on a W&B without the setting)."""
    if not _flush_settings_supported():
        return {}
    return {"settings": wandb.Settings(x_transaction_log_flush_interval=FLUSH_INTERVAL_S)}


def _wait_for_writes(path: Path, flushed: int, interval_s: float, timeout_s: float) -> int:
    """The file's size once it exceeds ``flushed`` and then holds still for 1.5 write intervals (or at the
    timeout): a still file after a write interval means nothing logged before this call is still buffered."""
    def size() -> int:
        try:
            return path.stat().st_size
        except OSError:
            return 0

    start = last_change = time.monotonic()
    last = size()
    grown = last > flushed
    while time.monotonic() - start < timeout_s:
        time.sleep(interval_s / 4)
        now = size()
        if now != last:
            last, last_change, grown = now, time.monotonic(), grown or now > flushed
        elif grown and time.monotonic() - last_change > 1.5 * interval_s:
            break
    return last
