"""Gather the metrics.json of every job under a run or multirun folder into one table (one row per job).

    python experiments/collect_metrics.py multirun/quickstart/<date> --out results/quickstart
writes results/quickstart.csv and results/quickstart.md and prints the markdown table. A thin wrapper
around ``delift.report.listing``; ``delift-report`` groups the jobs into the paper's table instead.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from delift.report.listing import DEFAULT_COLUMNS, collect, expand_columns, to_markdown, write_csv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", type=Path, help="a Hydra run or multirun folder")
    parser.add_argument("--out", type=Path, help="write <out>.csv and <out>.md")
    parser.add_argument("--columns", nargs="+", default=DEFAULT_COLUMNS)
    args = parser.parse_args(argv)
    rows = collect(args.root)
    table = to_markdown(rows, expand_columns(args.columns, rows))
    print(table, end="")
    if args.out:
        write_csv(rows, args.out.with_suffix(".csv"))
        args.out.with_suffix(".md").write_text(table)


if __name__ == "__main__":
    main()
