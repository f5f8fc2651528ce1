"""A paper-style table from run or multirun folders (a thin wrapper around ``delift.report``).

    delift -m experiment=uc1_dolly selector=initial,random,delift_se,delift,full seed=0,1,2
    python experiments/make_table.py multirun/uc1_dolly/<date>

writes results/<name>.md and results/<name>.csv (name = the experiment's ``name``) and prints the
markdown. Rows = methods (x every config value that differs between the jobs, never averaged
over), columns = every evaluation protocol x metric that ran; a cell is the seed mean ± sample std
(ddof = 1) [95 % t-interval], with ``†`` when the paired bootstrap interval of the per-example
difference to Random excludes 0. ``--split existing`` tabulates P's test split (use case 3).
``delift-report`` writes the same table together with the survey metrics, figures and a report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from delift.report.cli import caveats_of, experiment_name
from delift.report.folder import slug
from delift.report.frame import build_frame, columns
from delift.report.jobs import display_keys, group_jobs, load_jobs
from delift.report.tables import to_markdown, write_csv


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("roots", nargs="+", type=Path, help="Hydra run or multirun folders (any folders of delift runs)")
    parser.add_argument("--out-dir", type=Path, default=Path("results"))
    parser.add_argument("--name", help="file name stem (default: the experiment name)")
    parser.add_argument("--split", default="", help="'' = the headline test split; 'existing' = P's (use case 3)")
    parser.add_argument("--baseline", action="append", default=[], help="another reference selector beside random")
    args = parser.parse_args(argv)
    jobs = load_jobs(args.roots)
    stem = slug(experiment_name(jobs, args.name)) + (f"_{args.split}" if args.split else "")
    baselines = tuple(dict.fromkeys(("random", *args.baseline)))
    keys, groups = group_jobs(jobs)
    cols = [c for c in columns(jobs) if c[1] == args.split]
    frame = build_frame(groups, keys, cols, baselines)
    shown = display_keys(groups, keys)  # the keys that tell the settings apart
    table = to_markdown(frame, shown, baselines, experiment_name(jobs, args.name), caveats_of(jobs), args.split)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / f"{stem}.md").write_text(table)
    write_csv(frame, shown, baselines, args.out_dir / f"{stem}.csv")
    print(table, end="")
    return args.out_dir / f"{stem}.md"


if __name__ == "__main__":
    main()
