"""What a run reports, as listeners on the pipeline's stage events.

:func:`delift.run.pipeline.run_experiment` runs the stages and tells every listener, in this order:
``on_start()``; ``on_data(data, metrics)``; then either ``on_shard(metrics)`` (sharded kernel mode, the
run stops there) or ``on_selection(selection, pool, metrics)``, for each protocol any number of
``on_train_step(evaluation, step, values)`` and one ``on_evaluation(protocol, metrics, rows, adapter)``,
and ``on_results(metrics, rows)``; last ``on_end()``. When a stage (or a listener) raises, the run
calls ``on_error(error)`` instead of the events still to come and re-raises.

Two listeners subscribe, in this order: :class:`ResultFiles` (the files in the output folder) and
:class:`Tracking` (the experiment logger, W&B or nothing). A new report is one more listener.

From ``on_start`` to ``on_end`` / ``on_error``, :class:`Listeners` turns SIGTERM (how Slurm and Kubernetes
stop a job) into a :class:`Terminated` exception, so a stopped run ends like a failed one (run.json with
the error, W&B finished with exit code 143 and everything logged kept) and the process exits with 143.
It does so only where SIGTERM still has its default action: a launcher's own handler (submitit's) stays.
"""

from __future__ import annotations

import logging
import signal
import tempfile
import threading
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from delift.config.schema import ExperimentConfig
from delift.data.records import Example
from delift.fsutil import write_json, write_jsonl
from delift.protocols import Protocol
from delift.run.provenance import run_record, scorer_record
from delift.run.usecases import UsecaseData, data_configs
from delift.selection.base import Selection
from delift.tracking import ExperimentLogger, LaunchInfo, artifact_name, make_logger, run_identity
from delift.tracking.wandb_logger import history_values

log = logging.getLogger(__name__)

RUN_JSON, SUBSET_JSON, METRICS_JSON, PREDICTIONS_JSONL = "run.json", "subset.json", "metrics.json", "predictions.jsonl"
SUBSET_EXAMPLES_JSONL = "subset_examples.jsonl"  # the picked examples' text, for the report's subset browser
KERNEL_FIGURE_MAX_BYTES = 256 << 20  # a bigger kernel file (about 8k x 8k) is not reloaded just for a W&B image
SIGTERM_EXIT_CODE = 128 + signal.SIGTERM  # 143: the shell's code for a process that SIGTERM ended


class Terminated(SystemExit):
    """SIGTERM, raised in the main thread: a SystemExit, so the process exits with 143 once the run has
    recorded it."""

    def __init__(self) -> None:
        super().__init__(SIGTERM_EXIT_CODE)

    def __str__(self) -> str:
        return f"terminated by SIGTERM (exit code {SIGTERM_EXIT_CODE})"


def exit_code_of(error: BaseException) -> int:
    """The exit code a failed run records: 143 for SIGTERM, 1 for anything else (an error, Ctrl-C)."""
    return SIGTERM_EXIT_CODE if isinstance(error, Terminated) else 1


def _raise_terminated(signum: int, frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not interrupt the clean-up
    raise Terminated()


def raise_on_sigterm() -> Any:
    """Make SIGTERM raise :class:`Terminated` when it still has its default action and this is the main
    thread; returns the handler to restore (None: nothing was changed)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not signal.SIG_DFL:
        return None
    signal.signal(signal.SIGTERM, _raise_terminated)
    return previous


@dataclass
class RunInfo:
    """What every listener knows from the start: the config and where the run writes."""

    cfg: ExperimentConfig
    output_dir: Path
    resolved: dict[str, Any]  # asdict(cfg): what run.json and the tracker record as the config


class RunListener:
    """One subscriber to a run's stage events (see the module docstring for their order); each default does nothing."""

    def on_start(self) -> None:
        """The run begins: every part is built, nothing is loaded yet."""

    def on_data(self, data: UsecaseData, metrics: dict[str, Any]) -> None:
        """The data stage ended: ``metrics`` are its sizes and counts and the stage times so far."""

    def on_shard(self, metrics: dict[str, Any]) -> None:
        """Sharded kernel mode: this shard's blocks are on disk (``shard.json``); nothing else runs."""

    def on_selection(self, selection: Selection, pool: Sequence[Example], metrics: dict[str, Any]) -> None:
        """The subset is chosen from ``pool``: ``metrics`` are its size, budget, time and ``selection/*`` info."""

    def on_train_step(self, evaluation: str, step: int, values: Mapping[str, Any]) -> None:
        """One logged optimiser step of protocol ``evaluation``'s fine-tuning (loss, learning rate, ...)."""

    def on_evaluation(self, protocol: Protocol, metrics: dict[str, Any], rows: list[dict],
                      adapter: Path | None) -> None:
        """``protocol`` ran: its metrics (with its stage times), prediction rows and trained adapter folder (or None)."""

    def on_results(self, metrics: dict[str, Any], rows: list[dict]) -> None:
        """Every protocol ran: ``metrics`` is what metrics.json holds, ``rows`` every prediction."""

    def on_end(self) -> None:
        """The run succeeded."""

    def on_error(self, error: BaseException) -> None:
        """The run failed with ``error`` (re-raised after every listener has heard it)."""


class Listeners(RunListener):
    """Tells each listener in turn; on an error every listener hears it, even when one of them fails."""

    def __init__(self, listeners: Sequence[RunListener]):
        self.listeners = list(listeners)
        self._sigterm: Any = None  # the SIGTERM handler to put back when the run ends

    def _tell(self, event: str, *args: Any) -> None:
        for listener in self.listeners:
            getattr(listener, event)(*args)

    def _restore_sigterm(self) -> None:
        previous, self._sigterm = self._sigterm, None
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

    def on_start(self) -> None:
        self._sigterm = raise_on_sigterm()
        self._tell("on_start")

    def on_data(self, data: UsecaseData, metrics: dict[str, Any]) -> None:
        self._tell("on_data", data, metrics)

    def on_shard(self, metrics: dict[str, Any]) -> None:
        self._tell("on_shard", metrics)

    def on_selection(self, selection: Selection, pool: Sequence[Example], metrics: dict[str, Any]) -> None:
        self._tell("on_selection", selection, pool, metrics)

    def on_train_step(self, evaluation: str, step: int, values: Mapping[str, Any]) -> None:
        self._tell("on_train_step", evaluation, step, values)

    def on_evaluation(self, protocol: Protocol, metrics: dict[str, Any], rows: list[dict],
                      adapter: Path | None) -> None:
        self._tell("on_evaluation", protocol, metrics, rows, adapter)

    def on_results(self, metrics: dict[str, Any], rows: list[dict]) -> None:
        self._tell("on_results", metrics, rows)

    def on_end(self) -> None:
        try:
            self._tell("on_end")
        finally:
            self._restore_sigterm()

    def on_error(self, error: BaseException) -> None:
        try:
            for listener in self.listeners:
                try:
                    listener.on_error(error)
                except Exception:  # noqa: BLE001 - the run's own error is the one to raise
                    log.exception("%s.on_error failed", type(listener).__name__)
        finally:
            self._restore_sigterm()


def subset_record(cfg: ExperimentConfig, selection: Selection, pool: Sequence[Example],
                  scorer: dict[str, Any] | None = None) -> dict[str, Any]:
    """The content of subset.json; ``scorer`` (:func:`~delift.run.provenance.scorer_record`) is written only when
    a scorer is set, so a run scored by its own model writes the file it wrote before scorers existed."""
    record = {"selector": selection.selector, "selector_config": asdict(cfg.selector), "usecase": cfg.usecase.name}
    if scorer is not None:
        record["scorer"] = scorer
    return {**record, "budget": selection.budget, "pool_size": len(pool), "kernel_hash": selection.info.get("kernel_key"),
            "selected_ids": selection.ids(pool), "gains": selection.gains, "info": selection.info}


def subset_rows(selection: Selection, pool: Sequence[Example]) -> list[dict[str, Any]]:
    """The subset as a table: pick order (1 = first pick), id, instruction, input, gain (or score)."""
    return [{"pick": rank, "id": pool[i].id, "instruction": pool[i].instruction, "input": pool[i].input, "gain": gain}
            for rank, (i, gain) in enumerate(zip(selection.indices, selection.gains), start=1)]


def subset_examples(selection: Selection, pool: Sequence[Example]) -> list[dict[str, Any]]:
    """The picked examples with their text, one row per pick in pick order: pick (1 = first), id, instruction,
    input, output (the reference response) and gain (or score): subset_examples.jsonl, beside subset.json."""
    return [{"pick": rank, "id": pool[i].id, "instruction": pool[i].instruction, "input": pool[i].input,
             "output": pool[i].output, "gain": gain}
            for rank, (i, gain) in enumerate(zip(selection.indices, selection.gains), start=1)]


class ResultFiles(RunListener):
    """The run's files in ``output_dir``: subset.json and subset_examples.jsonl (the picks' text) right after
    selection (a crash in training keeps them),
    predictions.jsonl and metrics.json when every protocol ran, and run.json once, when the run ends or
    fails (so a crashed run still leaves it, with ``error``). run.json holds the name, caveats (also
    logged as warnings when the run starts), model, scorer (null: the model scored) and embedder identity,
    judge, library versions, the resolved config, the data sources once the data is loaded, and the error
    of a failed run."""

    def __init__(self, run: RunInfo):
        self.run = run
        self.record: dict[str, Any] | None = None

    def on_start(self) -> None:
        cfg = self.run.cfg
        self.record = run_record(cfg.name, cfg.model, data_configs(cfg.data, cfg.usecase), cfg.metrics, cfg.metric_library,
                                 cfg.paths.shared_datasets, self.run.resolved, cfg.scorer)
        for caveat in self.record["caveats"]:
            log.warning("results caveat: %s", caveat)

    def on_data(self, data: UsecaseData, metrics: dict[str, Any]) -> None:
        if self.record is not None:
            self.record["data_sources"] = dict(data.sources)

    def on_selection(self, selection: Selection, pool: Sequence[Example], metrics: dict[str, Any]) -> None:
        scorer = self.record["scorer"] if self.record is not None else scorer_record(self.run.cfg.scorer)
        write_json(self.run.output_dir / SUBSET_JSON, subset_record(self.run.cfg, selection, pool, scorer))
        write_jsonl(self.run.output_dir / SUBSET_EXAMPLES_JSONL, subset_examples(selection, pool))

    def on_results(self, metrics: dict[str, Any], rows: list[dict]) -> None:
        write_jsonl(self.run.output_dir / PREDICTIONS_JSONL, rows)
        write_json(self.run.output_dir / METRICS_JSON, metrics)

    def on_end(self) -> None:
        if self.record is not None:
            write_json(self.run.output_dir / RUN_JSON, self.record)

    def on_error(self, error: BaseException) -> None:
        if self.record is not None:  # None: the record itself could not be made
            write_json(self.run.output_dir / RUN_JSON, {**self.record, "error": _error_text(error)})


def _error_text(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}"[:2000]


class Tracking(RunListener):
    """Adapts an :class:`~delift.tracking.ExperimentLogger` (W&B or nothing) to the run's events: each stage's
    numbers (sizes, counts, times, scores: one value per run) go to the summary when the stage ends, the
    fine-tuning loss per step to the history, the subset and predictions as tables, the kernel heatmap and
    greedy gain curve (when the run has them) as images, the subset (and with ``logger.log_adapter`` each
    trained adapter) as artifacts; after each stage the logger flushes, so a kill -9 keeps the finished
    stages. A failed run logs its error and finishes with exit code 1 (143 when SIGTERM stopped it)."""

    def __init__(self, run: RunInfo, logger: ExperimentLogger, launch: LaunchInfo | None = None):
        self.run, self.logger, self.launch = run, logger, launch
        self.selection: Selection | None = None

    @classmethod
    def for_run(cls, run: RunInfo, selector_name: str, launch: LaunchInfo | None = None) -> Tracking:
        """The logger ``logger`` configures, named, grouped and tagged by :func:`~delift.tracking.run_identity`."""
        identity = run_identity(run.cfg, selector_name, launch)
        logger = make_logger(replace(run.cfg.logger, run_name=identity.name, group=identity.group,
                                     job_type=identity.job_type, tags=list(identity.tags)))
        return cls(run, logger, launch)

    def _artifact(self, kind: str, selection: Selection) -> str:
        return artifact_name(kind, self.run.cfg, selection.selector, selection.budget, self.run.resolved)

    def _stage_numbers(self, metrics: Mapping[str, Any]) -> None:
        self.logger.log_summary(history_values(metrics))

    def on_start(self) -> None:
        resolved = self.run.resolved
        config = {**resolved, "hydra": self.launch.as_config()} if self.launch is not None else resolved
        self.logger.start(config, str(self.run.output_dir))

    def on_data(self, data: UsecaseData, metrics: dict[str, Any]) -> None:
        self._stage_numbers(metrics)
        self.logger.flush()

    def on_shard(self, metrics: dict[str, Any]) -> None:
        self._stage_numbers(metrics)  # on_end follows at once: its finish() writes them

    def on_selection(self, selection: Selection, pool: Sequence[Example], metrics: dict[str, Any]) -> None:
        cfg, self.selection = self.run.cfg, selection
        self._stage_numbers(metrics)
        self.logger.log_table("subset", subset_rows(selection, pool))
        self.logger.log_artifact(self._artifact("subset", selection), "subset", [str(self.run.output_dir / SUBSET_JSON)],
                                 {"selector": selection.selector, "budget": selection.budget,
                                  "budget_fraction": cfg.budget_fraction, "usecase": cfg.usecase.name,
                                  "seed": cfg.seed, "kernel_hash": selection.info.get("kernel_key"),
                                  **({"scorer": cfg.scorer.name} if cfg.scorer is not None else {})})
        if self.logger.accepts_images:
            with tempfile.TemporaryDirectory(prefix="delift-figures-") as folder:
                self.logger.log_images(selection_figures(self.run, Path(folder)))
        self.logger.flush()

    def on_train_step(self, evaluation: str, step: int, values: Mapping[str, Any]) -> None:
        self.logger.log_series(f"{evaluation}/train", step, values)

    def on_evaluation(self, protocol: Protocol, metrics: dict[str, Any], rows: list[dict],
                      adapter: Path | None) -> None:
        self._stage_numbers(metrics)
        self.logger.log_table(f"{protocol.name}/predictions", rows)
        selection = self.selection
        if self.run.cfg.logger.log_adapter and adapter is not None and selection is not None:
            self.logger.log_artifact(self._artifact(f"adapter-{protocol.name}", selection), "model", [str(adapter)],
                                     {"evaluation": protocol.name, "base_model": self.run.cfg.model.name,
                                      "selector": selection.selector, "budget": selection.budget,
                                      "seed": self.run.cfg.seed})
        self.logger.flush()

    def on_results(self, metrics: dict[str, Any], rows: list[dict]) -> None:
        self.logger.log_summary(metrics)  # on_end's finish() writes it: no flush to wait for

    def on_end(self) -> None:
        self.logger.finish()

    def on_error(self, error: BaseException) -> None:
        self.logger.log_summary({"error": _error_text(error)})
        self.logger.finish(exit_code=exit_code_of(error))


def selection_figures(run: RunInfo, folder: Path) -> dict[str, Path]:
    """The run's kernel heatmap (when its kernel file is at most :data:`KERNEL_FIGURE_MAX_BYTES`) and greedy
    gain curve (when it has gains) as PNGs in ``folder``, by W&B key: the report's own figures
    (:mod:`delift.report.kernel_figures`), drawn from subset.json and the kernel cache. A figure that fails
    is left out with a warning: figures never stop a run."""
    from delift.report import kernel_figures

    def kernel_heatmap(path: Path) -> Any:
        kernel = kernel_figures.kernel_path(run.output_dir, run.cfg.paths.cache_dir)
        if kernel is None or kernel.stat().st_size > KERNEL_FIGURE_MAX_BYTES:  # the figure loads the whole file
            return None
        return kernel_figures.kernel_heatmap(run.output_dir, path, run.cfg.paths.cache_dir, seed=run.cfg.seed)

    found: dict[str, Path] = {}  # run.json is written when the run ends: the seed comes from the config
    makers = {"figures/kernel": kernel_heatmap,
              "figures/greedy_gains": lambda path: kernel_figures.gain_curve(run.output_dir, path, seed=run.cfg.seed)}
    for key, make in makers.items():
        path = folder / f"{key.rsplit('/', 1)[-1]}.png"
        try:
            if make(path) is not None and path.is_file():
                found[key] = path
        except Exception as exc:  # noqa: BLE001 - a figure is auxiliary to the run
            log.warning("W&B figure %s not drawn: %s: %s", key, type(exc).__name__, exc)
    return found
