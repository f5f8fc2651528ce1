"""Run folders -> jobs -> groups: which jobs are seeds of one setting, and which settings differ.

A job is a folder holding ``metrics.json``, ``subset.json`` and ``run.json`` (a single run or one
job of a multirun). Jobs are grouped by every resolved config value (``run.json["config"]``,
flattened to dotted keys) that differs between them, except ``seed`` and the values that do not
change results (:data:`IGNORED`). Within a group jobs differ only in seed, so their scores may be
averaged. ``selector.*`` values belong to the method: they differ between selectors by construction,
so only those that differ between jobs of the *same* selector count (a method variant, e.g.
``selector.postprocess``). The scoring model is one setting, ``scorer``: its name, or null when the run's
model scored (also in run folders from before scorers existed); its other fields stay ``scorer.*`` keys.
"""

from __future__ import annotations

import fnmatch
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

IGNORED = ("seed", "paths.*", "*.local_path", "*.cache_dir", "*.shape", "*.shape.*", "progress", "logger.*",
           "kernel.workers", "kernel.block_size", "kernel.num_shards", "kernel.shard", "kernel.tokens_per_batch",
           "kernel.batch_size", "*.device", "selector.batch_size")  # fnmatch patterns of config keys that do not change results
MISSING = "–"  # the value of a key a job's config does not have


def number(value: Any) -> float | None:
    """A score as a float, or None: JSON null (a mean over nothing), NaN, inf and non-numbers are missing."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{"a.b.c": leaf}``; lists become their JSON text (hashable, comparable)."""
    if isinstance(tree, dict) and tree:
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(flatten(value, f"{prefix}{key}."))
        return out
    if isinstance(tree, (list, tuple)):
        tree = json.dumps(tree)
    return {prefix[:-1]: tree} if prefix else {}


def is_ignored(key: str, extra: tuple[str, ...] = ()) -> bool:
    """Whether ``key`` matches :data:`IGNORED` or one of ``extra`` (fnmatch patterns or exact keys)."""
    return any(fnmatch.fnmatchcase(key, pattern) for pattern in (*IGNORED, *extra))


@dataclass
class Job:
    """One run folder: its result files, read once; predictions on demand."""

    path: Path
    run: dict
    metrics: dict
    subset: dict
    config: dict[str, Any] = field(default_factory=dict)  # flattened resolved config
    _predictions: list[dict] | None = None

    @property
    def selector(self) -> str:
        return self.subset["selector"]

    @property
    def seed(self) -> Any:
        return self.config.get("seed")

    def score(self, key: str) -> float | None:
        return number(self.metrics.get(key))

    def predictions(self) -> list[dict]:
        """The rows of predictions.jsonl ([] when the file is absent); a bad line raises :class:`BadJob`."""
        if self._predictions is None:
            path = self.path / "predictions.jsonl"
            lines = read_text(path).splitlines() if path.exists() else []
            rows = []
            for number_, line in enumerate(lines, 1):
                if line.strip():
                    row = parse_json(path, line, f"line {number_}")
                    if not isinstance(row, dict):
                        raise BadJob(path, f"line {number_} is a JSON {type(row).__name__}, not an object")
                    rows.append(row)
            self._predictions = rows
        return self._predictions


class BadJob(Exception):
    """A job folder whose result file cannot be read; names the file."""

    def __init__(self, path: Path, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path


def parse_json(path: Path, text: str, where: str = "") -> Any:
    """``text`` (of ``path``) as JSON; :class:`BadJob` naming the file (and ``where``) when it is not."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        at = f"{where}: " if where else ""
        raise BadJob(path, f"{at}not valid JSON ({'empty' if not text.strip() else err})") from None


def read_text(path: Path) -> str:
    try:
        return path.read_text()
    except UnicodeDecodeError as err:
        raise BadJob(path, f"not UTF-8 text ({err.reason} at byte {err.start})") from None


def read_object(path: Path) -> dict:
    """A result file holding one JSON object (metrics.json, subset.json, run.json)."""
    found = parse_json(path, read_text(path))
    if not isinstance(found, dict):
        raise BadJob(path, f"a JSON {type(found).__name__}, not an object")
    return found


def cache_reads(info: Any, name: str = "") -> list[str]:
    """What a selection read from a cache instead of computing, found anywhere in subset.json's ``info``
    (``name``: the key ``info`` sits under): ``kernels.<role>.cached`` (DELIFT: the kernels front sets a
    kernel's ``meta["cached"]`` when it is loaded, not computed) or ``kernel_cached`` (Nuggets), ``sample_cached``
    (a learned kernel's sample), ``cache_hits`` > 0 (per-example scores or gradient features: IFD, SelectIT,
    LoBaSS, LESS)."""
    found: list[str] = []
    if isinstance(info, dict):
        if info.get("cached") is True:
            found.append(f"{name} kernel" if name else "kernel")
        if info.get("kernel_cached") is True and not isinstance(info.get("kernels"), dict):
            found.append("kernel")
        if info.get("sample_cached") is True:
            found.append("kernel sample")
        hits = number(info.get("cache_hits"))
        if hits:
            done = number(info.get("scored", info.get("computed")))
            found.append(f"{hits:g} of {hits + done:g} scores" if done is not None else f"{hits:g} scores")
        for key, value in info.items():
            if key != "scores":  # id -> score, no cache flags inside
                found += cache_reads(value, str(key))
    elif isinstance(info, list):
        for value in info:
            found += cache_reads(value, name)
    return found


def job_config(resolved: dict[str, Any]) -> dict[str, Any]:
    """A run's resolved config flattened, with the scorer as one readable key: ``scorer`` = its name
    (``scorer=smollm2-135m-instruct`` in labels), null when the run's model scored or the run predates scorers."""
    config = flatten(resolved)
    config["scorer"] = config.pop("scorer.name", config.get("scorer"))
    return config


def read_job(folder: Path) -> Job:
    """The job in ``folder`` (it holds metrics.json), every result file read and checked; :class:`BadJob`
    names the file that cannot be read, SystemExit a folder that is not a delift run."""
    subset_path, run_path = folder / "subset.json", folder / "run.json"
    if not subset_path.exists() or not run_path.exists():
        raise SystemExit(f"{folder}: metrics.json without subset.json/run.json; not a delift run folder")
    run, subset = read_object(run_path), read_object(subset_path)
    if not isinstance(subset.get("selector"), str):
        raise BadJob(subset_path, "no selector name")
    if not isinstance(run.get("config") or {}, dict):
        raise BadJob(run_path, "config is not an object")
    job = Job(path=folder, run=run, metrics=read_object(folder / "metrics.json"), subset=subset,
              config=job_config(run.get("config") or {}))
    job.predictions()  # a truncated predictions.jsonl is found now, not in the middle of the report
    return job


def result_folders(roots: list[Path]) -> dict[Path, list[Path]]:
    """Per root, every folder below it holding a metrics.json (one walk of each tree; the report's job
    list and its jobs.csv listing both come from it)."""
    found: dict[Path, list[Path]] = {}
    for root in roots:
        if not Path(root).exists():
            raise SystemExit(f"{root}: no such folder")
        found[Path(root)] = [p.parent for p in Path(root).rglob("metrics.json")]
    return found


def load_jobs(roots: list[Path], strict: bool = False, skipped: list[BadJob] | None = None,
              found: dict[Path, list[Path]] | None = None) -> list[Job]:
    """Every job under the given run or multirun folders, in path order (no duplicates). A metrics.json
    without a run.json beside it (not written by delift) or inside another job's folder is skipped. A job
    with an unreadable result file is skipped with a warning naming the file (appended to ``skipped``),
    or, ``strict``, stops everything with that message. ``found``: :func:`result_folders` of ``roots``,
    when the caller walked them already."""
    found = result_folders(roots) if found is None else found
    folders: dict[Path, None] = {}
    for root in roots:
        for metrics_folder in sorted(found[Path(root)], key=lambda p: (len(p.parts), p)):
            folder = metrics_folder.resolve()  # outer folders first, so a nested one is seen inside them
            if not (folder / "run.json").exists():
                log.warning("%s: metrics.json without run.json, not a delift run folder; skipped", folder)
            elif not any(parent in folders for parent in folder.parents):
                folders[folder] = None
    if not folders:
        raise SystemExit(f"no delift run folder (metrics.json with run.json) under {', '.join(map(str, roots))}")
    jobs = []
    for folder in sorted(folders):
        try:
            jobs.append(read_job(folder))
        except BadJob as bad:
            if strict:
                raise SystemExit(f"{bad} (--strict: a bad job stops the report)") from None
            log.warning("%s; job skipped", bad)
            if skipped is not None:
                skipped.append(bad)
    if not jobs:
        raise SystemExit(f"every job under {', '.join(map(str, roots))} was skipped: no readable result files")
    return jobs


def varying_keys(jobs: list[Job], ignore: tuple[str, ...] = ()) -> list[str]:
    """Config keys (outside ``selector.*``) whose value differs between jobs, in first-seen order."""
    keys = dict.fromkeys(k for job in jobs for k in job.config if not k.startswith("selector."))
    return [k for k in keys if not is_ignored(k, ignore)
            and len({json.dumps(job.config.get(k, MISSING)) for job in jobs}) > 1]


def variant_keys(jobs: list[Job], ignore: tuple[str, ...] = ()) -> dict[str, list[str]]:
    """Per selector, the ``selector.*`` keys whose value differs between that selector's jobs."""
    by_selector: dict[str, list[Job]] = {}
    for job in jobs:
        by_selector.setdefault(job.selector, []).append(job)
    out = {}
    for selector, group in by_selector.items():
        keys = dict.fromkeys(k for job in group for k in job.config if k.startswith("selector."))
        out[selector] = [k for k in keys if not is_ignored(k, ignore)
                         and len({json.dumps(job.config.get(k, MISSING)) for job in group}) > 1]
    return out


@dataclass
class Group:
    """The jobs of one setting and one method (variant): seeds of the same experiment."""

    setting: dict[str, Any]  # varying key -> value (shared by every method of a table row block)
    selector: str
    variant: dict[str, Any]  # varying selector.* key -> value
    jobs: list[Job]
    duplicates: list[Path] = field(default_factory=list)  # jobs dropped: the same seed ran twice

    @property
    def seeds(self) -> list:
        return [job.seed for job in self.jobs]

    def values(self, key: str) -> list[float]:
        """The non-missing values of a metrics.json key over the group's seeds."""
        return [v for v in (job.score(key) for job in self.jobs) if v is not None]

    def mean(self, key: str) -> float | None:
        values = self.values(key)
        return math.fsum(values) / len(values) if values else None


def group_jobs(jobs: list[Job], ignore: tuple[str, ...] = ()) -> tuple[list[str], list[Group]]:
    """The varying keys and one group per (setting, selector, variant); a seed that ran twice is kept once."""
    keys = varying_keys(jobs, ignore)
    variants = variant_keys(jobs, ignore)
    groups: dict[str, Group] = {}
    for job in jobs:
        setting = {k: job.config.get(k, MISSING) for k in keys}
        variant = {k: job.config.get(k, MISSING) for k in variants[job.selector]}
        ident = json.dumps([setting, job.selector, variant], sort_keys=True, default=str)
        group = groups.setdefault(ident, Group(setting, job.selector, variant, []))
        if any(json.dumps(other.seed) == json.dumps(job.seed) for other in group.jobs):
            group.duplicates.append(job.path)
            continue
        group.jobs.append(job)
    for group in groups.values():
        group.jobs.sort(key=lambda job: (str(type(job.seed)), job.seed if job.seed is not None else 0))
    return keys, list(groups.values())


def display_keys(groups: list[Group], keys: list[str]) -> list[str]:
    """The fewest varying keys that still tell every setting apart, for labels and table columns (grouping
    always uses every key). Tried in order: ``budget_fraction``, ``name``, ``*.name`` (shortest first), the rest.
    Switching the use case, say, changes dozens of nested keys; its name alone tells the settings apart."""
    def signature(chosen: list[str], group: Group) -> str:
        return json.dumps([group.setting.get(k, MISSING) for k in chosen], default=str)

    target = len({signature(keys, g) for g in groups})
    priority = sorted(keys, key=lambda k: (k != "budget_fraction", k != "name",
                                           not k.endswith(".name"), k.count("."), keys.index(k)))
    chosen: list[str] = []
    for key in priority:
        if len({signature(chosen, g) for g in groups}) == target:
            break
        if len({signature([*chosen, key], g) for g in groups}) > len({signature(chosen, g) for g in groups}):
            chosen.append(key)
    return [k for k in keys if k in chosen]
