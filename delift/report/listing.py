"""One row per job: the Hydra overrides of every run under a folder and chosen metrics.json values.

Unlike the results table this never groups or averages; it is the raw listing behind it (and the
``jobs.csv`` a report writes). A folder with a metrics.json is a job; ``.hydra/overrides.yaml`` and
``run.json`` (caveats) are read when present.
"""

from __future__ import annotations

import csv
import logging
import re
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import yaml

from delift.report.jobs import BadJob, read_object

log = logging.getLogger(__name__)

DEFAULT_COLUMNS = ["*/rouge1", "*/rouge2", "*/rougeL", "*/bge", "subset/size", "pool/size", "time/selection_s",
                   "time/total_s"]  # "*/x" expands to every evaluation prefix present (qlora/x, lora/x...)


def job_order(path: Path) -> list:
    """Sort key of a job folder: "10_..." after "9_..." (digit runs compare as numbers)."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.as_posix())]


def collect(root: Path, skip: Collection[Path] = (), folders: list[Path] | None = None,
            jobs: Mapping[Path, Any] | None = None) -> list[dict]:
    """One row per job folder holding a metrics.json: its Hydra overrides plus its metrics. A folder whose
    metrics.json or run.json cannot be read is left out with a warning naming the file (silently when
    it is in ``skip``: resolved folders already reported). ``folders``: those holding a metrics.json (the
    report's one walk; default: found here); ``jobs``: resolved folder -> its loaded
    :class:`~delift.report.jobs.Job`, whose files are not read again."""
    rows, jobs = [], jobs or {}
    skip = {Path(p).resolve() for p in skip}
    found = [p.parent for p in Path(root).rglob("metrics.json")] if folders is None else folders
    for job in sorted(found, key=job_order):
        resolved = job.resolve()
        if resolved in skip:
            continue
        overrides_path = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.exists() else []
        run_path, loaded = job / "run.json", jobs.get(resolved)
        try:
            if loaded is not None:
                caveats, metrics = loaded.run.get("caveats", []), loaded.metrics
            else:
                caveats = read_object(run_path).get("caveats", []) if run_path.exists() else []
                metrics = read_object(job / "metrics.json")
        except BadJob as bad:
            log.warning("%s; job left out of the listing", bad)
            continue
        rows.append({"job": job.relative_to(root).as_posix() or ".", "overrides": " ".join(overrides or []),
                     "caveats": "; ".join(caveats), **metrics})
    if not rows:
        raise SystemExit(f"no metrics.json under {root}")
    return rows


def expand_columns(columns: list[str], rows: list[dict]) -> list[str]:
    """Replace each ``*/name`` by the ``<prefix>/name`` keys the rows have, in first-seen order."""
    keys = list(dict.fromkeys(k for row in rows for k in row))
    out: list[str] = []
    for column in columns:
        if column.startswith("*/"):
            out.extend(k for k in keys if k.endswith(column[1:]) and k.count("/") == 1)
        else:
            out.append(column)
    return out


def cell(value) -> str:
    """4 decimals for floats; a missing value (JSON null) is ``–``."""
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def to_markdown(rows: list[dict], columns: list[str]) -> str:
    """The caveats, then one table row per job (first column: its overrides)."""
    header = ["overrides", *columns]
    caveats = sorted({c for row in rows for c in row["caveats"].split("; ") if c})
    lines = [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> Path:
    """Every metrics.json key of every job (sorted after job, overrides, caveats); null stays empty."""
    fields = ["job", "overrides", "caveats", *sorted({k for row in rows for k in row} - {"job", "overrides", "caveats"})]
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    return path
