"""Gather the metrics.json of every job under a run or multirun folder into one table.

    python experiments/collect_metrics.py multirun/quickstart/<date> --out results/quickstart
writes results/quickstart.csv and results/quickstart.md and prints the markdown table.
"""

from __future__ import annotations

import argparse
import csv
import json
import re
from pathlib import Path

import yaml

DEFAULT_COLUMNS = ["*/rouge1", "*/rouge2", "*/rougeL", "*/bge", "subset/size", "pool/size", "time/selection_s",
                   "time/total_s"]  # "*/x" expands to every evaluation prefix present (qlora/x, lora/x...)


def collect(root: Path) -> list[dict]:
    """One row per job folder holding a metrics.json: its Hydra overrides plus its metrics."""
    rows = []
    def job_order(path: Path) -> list:  # "10_..." after "9_...": compare digit runs as numbers
        return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.parent.as_posix())]

    for metrics_path in sorted(root.rglob("metrics.json"), key=job_order):
        job = metrics_path.parent
        overrides_path = job / ".hydra" / "overrides.yaml"
        overrides = yaml.safe_load(overrides_path.read_text()) if overrides_path.exists() else []
        run_path = job / "run.json"
        caveats = json.loads(run_path.read_text()).get("caveats", []) if run_path.exists() else []
        rows.append({"job": job.relative_to(root).as_posix() or ".", "overrides": " ".join(overrides or []),
                     "caveats": "; ".join(caveats), **json.loads(metrics_path.read_text())})
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


def to_markdown(rows: list[dict], columns: list[str]) -> str:
    def cell(value) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    header = ["overrides", *columns]
    caveats = sorted({c for row in rows for c in row["caveats"].split("; ") if c})
    lines = [f"> caveat: {c}" for c in caveats] + ([""] if caveats else [])
    lines += ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(row.get(c, "")) for c in header) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a Hydra run or multirun folder")
    parser.add_argument("--out", type=Path, help="write <out>.csv and <out>.md")
    parser.add_argument("--columns", nargs="+", default=DEFAULT_COLUMNS)
    args = parser.parse_args()
    rows = collect(args.root)
    table = to_markdown(rows, expand_columns(args.columns, rows))
    print(table, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        fields = ["job", "overrides", "caveats", *sorted({k for row in rows for k in row} - {"job", "overrides", "caveats"})]
        with args.out.with_suffix(".csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
